/* Real-mode guest: reads and writes COM2 (0x2f8), which nobody owns. The read
   must return all ones; exits with value 1 if so, 0 if not. */
#include "deflect.h"
    .code16
    .globl _start
_start:
    mov $0x2f8, %dx
    in %dx, %al
    mov %al, %bl
    mov $0x55, %al
    out %al, %dx
    xor %al, %al
    cmp $0xff, %bl
    jne 1f
    mov $1, %al
1:  out %al, $DEBUG_EXIT
    hlt
