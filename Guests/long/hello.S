/* Flat long-mode guest: checks it really runs with paging in 64-bit mode,
   prints a line and exits with value 0x2b (status 87); value 0x2c if the
   mode is wrong. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    mov %cr0, %rax
    bt $31, %rax                /* CR0.PG */
    jnc wrong_mode
    mov $message, %rsi
    call puts
    mov $0x2b, %al
    out %al, $DEBUG_EXIT
    hlt
wrong_mode:
    mov $0x2c, %al
    out %al, $DEBUG_EXIT
    hlt
#include "serial64.inc"
message:
    .asciz "hello from long mode\n"
