/* Real-mode guest: waits for one byte on COM1, echoes it, and exits with the
   byte's value, proving the UART's receive path. */
#include "deflect.h"
    .code16
    .globl _start
_start:
    mov $COM1_LSR, %dx
1:  in %dx, %al
    test $0x01, %al             /* data ready */
    jz 1b
    mov $COM1, %dx
    in %dx, %al
    out %al, %dx                /* echo */
    out %al, $DEBUG_EXIT
    hlt
