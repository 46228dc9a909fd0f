/* Real-mode guest that asks the i8042 for a reset (status 2). */
#include "deflect.h"
    .code16
    .globl _start
_start:
    mov $0xfe, %al
    out %al, $I8042_CMD
    hlt
