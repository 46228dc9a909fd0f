/* Flat long-mode SMP guest: every vCPU (RDI = index, RSI = count) checks in
   with a locked increment, then waits until all have. vCPU 0 prints the count
   and exits with value = count; the others halt. The wait proves the vCPUs
   run at the same time, each on its own host thread. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    mov %rsi, %rbx              /* vCPU count */
    lock incq checked_in(%rip)
1:  pause
    cmp checked_in(%rip), %rbx
    jne 1b
    test %rdi, %rdi
    jnz parked
    mov $message, %rsi
    call puts
    mov %rbx, %rax
    call puthex
    mov $'\n', %al
    call putc
    mov %bl, %al
    out %al, $DEBUG_EXIT
parked:
    hlt
    jmp parked
#include "serial64.inc"
message:
    .asciz "vCPUs checked in: "
    .balign 8
checked_in:
    .quad 0
