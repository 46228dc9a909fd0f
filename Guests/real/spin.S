/* Real-mode guest that never ends: for the timeout and kick paths. */
    .code16
    .globl _start
_start:
    jmp _start
