/* Flat long-mode guest for live-migration tests: a ticker that keeps
   writing memory. Every TICK_CYCLES of the TSC (10 ms at 2.3 GHz; the
   work of a tick takes longer on this host) it writes one quadword into
   each of the 256 pages at 0x400000 (1 MiB of pages dirtied per tick: the quadword of page
   p at slot t % 512 holds t << 32 | p), then prints "TICK <t>". After 300
   ticks it reads every slot it wrote back and compares it with the value
   the last write to it must have left: "CHECK ok" and debug-exit 0x11
   (status 35), or "CHECK bad <address>" and 0x12 (status 37). A migration
   that loses or reorders a page write shows as a bad check; one that loses
   or repeats guest time shows as a gap or repeat in the TICK lines.
   "MAXGAP <cycles>" reports the largest TSC gap between two ticks. */
#include "deflect.h"
#define BUFFER      0x400000
#define PAGES       256
#define TICKS       300
#define TICK_CYCLES 23000000        /* 10 ms at 2.3 GHz */
    .code64
    .globl _start
_start:
    call runtime_init
    xor %r12, %r12                  /* tick */
    xor %r14, %r14                  /* largest gap between ticks */
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r13                  /* last tick's TSC */
tick:
    /* write slot (t % 512) of every page: t << 32 | p */
    mov %r12, %rax
    and $511, %rax
    lea BUFFER(,%rax,8), %rdi
    mov %r12, %rbx
    shl $32, %rbx
    xor %rcx, %rcx
1:  lea (%rbx,%rcx), %rax
    mov %rax, (%rdi)
    add $4096, %rdi
    inc %rcx
    cmp $PAGES, %rcx
    jb 1b
    lea tick_label(%rip), %rsi
    call puts
    mov %r12, %rax
    call putdec
    mov $'\n', %al
    call putc
    inc %r12
    cmp $TICKS, %r12
    jae verify
    /* wait until TICK_CYCLES after the previous tick */
2:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %rax
    sub %r13, %rax
    cmp $TICK_CYCLES, %rax
    jb 2b
    cmp %r14, %rax
    jbe 3f
    mov %rax, %r14
3:  mov %rdx, %r13
    jmp tick

verify:
    /* for each slot s < min(TICKS, 512): the last tick t with t % 512 == s */
    xor %r8, %r8                    /* slot */
4:  mov $TICKS - 1, %rax
    sub %r8, %rax
    and $~511, %rax
    add %r8, %rax                   /* t = s + 512 * floor((TICKS-1-s)/512) */
    mov %rax, %rbx
    shl $32, %rbx
    lea BUFFER(,%r8,8), %rdi
    xor %rcx, %rcx
5:  lea (%rbx,%rcx), %rax
    cmp %rax, (%rdi)
    jne bad
    add $4096, %rdi
    inc %rcx
    cmp $PAGES, %rcx
    jb 5b
    inc %r8
    cmp $TICKS, %r8
    jae good
    cmp $512, %r8
    jb 4b
good:
    lea maxgap_label(%rip), %rsi
    call puts
    mov %r14, %rax
    call putdec
    mov $'\n', %al
    call putc
    lea ok_label(%rip), %rsi
    call puts
    mov $0x11, %al
    out %al, $DEBUG_EXIT
    hlt
bad:
    lea bad_label(%rip), %rsi
    call puts
    mov %rdi, %rax
    call puthex
    mov $'\n', %al
    call putc
    mov $0x12, %al
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
tick_label:    .asciz "TICK "
maxgap_label:  .asciz "MAXGAP "
ok_label:      .asciz "CHECK ok\n"
bad_label:     .asciz "CHECK bad "
