/* Flat long-mode guest for the migration benchmark: dirties memory at a
   set rate until it is stopped. The host writes the rate before the run: a
   little-endian u64 at 0x3FF000, pages to write per tick of 23 M TSC cycles
   (10 ms at 2.3 GHz). Each tick increments one quadword in that many pages,
   taken round-robin from the 48 MiB at 0x800000 (so it needs at least
   64 MiB of RAM). Prints "DIRTY\n" once when it starts. */
#include "deflect.h"
#define RATE_PARAMETER 0x3FF000
#define REGION         0x800000
#define REGION_PAGES   12288
#define TICK_CYCLES    23000000
    .code64
    .globl _start
_start:
    call runtime_init
    lea started(%rip), %rsi
    call puts
    mov RATE_PARAMETER, %r15
    xor %r12, %r12                  /* next page */
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r13                  /* this tick's start */
tick:
    mov %r15, %rcx
    test %rcx, %rcx
    jz wait
1:  mov %r12, %rax
    shl $12, %rax
    incq REGION(%rax)
    inc %r12
    cmp $REGION_PAGES, %r12
    jb 2f
    xor %r12, %r12
2:  dec %rcx
    jnz 1b
wait:
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %rax
    sub %r13, %rax
    cmp $TICK_CYCLES, %rax
    jb wait
    mov %rdx, %r13
    jmp tick
#include "runtime64.inc"
started: .asciz "DIRTY\n"
