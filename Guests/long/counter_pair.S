/* Flat long-mode guest for consistent-snapshot tests: one counter kept twice,
   in RBX and in RAM (`counter`), each loop incrementing both and checking
   they agree. A snapshot of one moment restores a guest in which they agree
   (or RBX is one ahead, between the two increments, which the next increment
   of RAM settles); a snapshot whose registers and RAM come from different
   moments restores a guest in which they differ for good: it exits with
   value 0x3d (status 123) at its next check. Prints "COUNTING" once it
   checked that both start at 0; never ends on its own otherwise. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    xor %ebx, %ebx
    cmpq %rbx, counter(%rip)
    jne torn
    mov $message, %rsi
    call puts
1:  inc %rbx
    incq counter(%rip)
    cmpq %rbx, counter(%rip)
    jne torn
    jmp 1b
torn:
    mov $0x3d, %al
    out %al, $DEBUG_EXIT
    hlt
    jmp torn
#include "serial64.inc"
message:
    .asciz "COUNTING\n"
    .balign 8
    .globl counter
counter:
    .quad 0
