/* Real-mode guest for --platform pc: enters ACPI S5 (soft off) the way an OS
   does with the DSDT's \_S5 = SLP_TYP 0: writes SLP_TYP 0 | SLP_EN to
   PM1a_CNT (0x604). QEMU exits with status 0. */
#include "deflect.h"
#define PM1A_CNT 0x604
#define SLP_EN   (1 << 13)
    .code16
    .globl _start
_start:
    mov $PM1A_CNT, %dx
    mov $SLP_EN, %ax
    out %ax, %dx
    /* Not reached when S5 works: exit with value 0x7f instead. */
    mov $0x7f, %al
    out %al, $DEBUG_EXIT
    hlt
