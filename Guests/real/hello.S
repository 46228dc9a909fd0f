/* Real-mode guest: prints a line on COM1 and exits with value 0x2a (status 85). */
#include "deflect.h"
    .code16
    .globl _start
_start:
    mov $message, %si
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %bl
    mov $COM1_LSR, %dx
2:  in %dx, %al                 /* wait until the transmitter is empty */
    test $0x20, %al
    jz 2b
    mov $COM1, %dx
    mov %bl, %al
    out %al, %dx
    jmp 1b
3:  mov $0x2a, %al
    out %al, $DEBUG_EXIT
    hlt
message:
    .asciz "hello from real mode\n"
