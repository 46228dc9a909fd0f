/* Real-mode guest whose vCPUs all halt: the run ends with status 0. */
    .code16
    .globl _start
_start:
    cli
    hlt
    jmp _start
