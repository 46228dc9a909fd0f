/* Flat long-mode guest for RAM above 4 GiB (run with --memory 4096: RAM
   below 3 GiB, then [4 GiB, 5 GiB)). It maps [4 GiB, 5 GiB) with 2 MiB
   pages (PDPT entry 4 -> a page directory at 0x21000, beside the runtime's
   IDT), writes a pattern quadword (address ^ PATTERN) every 16 MiB of it
   (64 places: RAM is backed as it is touched, 2 MiB at a time with huge
   pages) and into the last quadword of RAM, reads them back and prints
   "WRITTEN". Then every TICK_CYCLES of the TSC (10 ms at 2.3 GHz) it
   checks every pattern and every place's tick quadword (at +8: the last
   tick's t << 32 | p), writes the new tick there (64 pages dirtied per
   tick) and prints "TICK <t>". After TICKS ticks: "CHECK ok"
   and debug-exit 0x11 (status 35). A quadword that is not what was written
   last: "CHECK bad <address>" and 0x12 (status 37) at once. A snapshot or
   migration that loses RAM above 4 GiB, or one of its writes, shows as a
   bad check; a gap or repeat in the TICK lines shows lost or repeated time. */
#include "deflect.h"
#define HIGH_RAM       0x100000000
#define HIGH_PAGES     512              /* 2 MiB pages: 1 GiB */
#define PLACES         64
#define PLACE_STEP     0x1000000        /* 16 MiB */
#define LAST_QUAD      0x13ffffff8      /* the last quadword of RAM */
#define PAGE_DIRECTORY 0x21000
#define PDPT_ENTRY_4   0x3020           /* BootLayout: the PDPT is at 0x3000 */
#define PATTERN        0x5a5a5a5a00000000
#define TICKS          400
#define TICK_CYCLES    23000000
    .code64
    .globl _start
_start:
    call runtime_init
    /* the page directory: entry i maps HIGH_RAM + i * 2 MiB (present, writable, 2 MiB page) */
    mov $PAGE_DIRECTORY, %rdi
    mov $HIGH_RAM, %rax
    or $0x83, %rax
    xor %rcx, %rcx
1:  mov %rax, (%rdi,%rcx,8)
    add $0x200000, %rax
    inc %rcx
    cmp $HIGH_PAGES, %rcx
    jb 1b
    mov $PDPT_ENTRY_4, %rdi
    movq $(PAGE_DIRECTORY | 3), (%rdi)
    mov %cr3, %rax
    mov %rax, %cr3                      /* flush the TLB */

    /* patterns and the tick quadwords (tick 0) */
    mov $HIGH_RAM, %rdi
    xor %rcx, %rcx
2:  mov $PATTERN, %rax
    xor %rdi, %rax
    mov %rax, (%rdi)
    mov %rcx, 8(%rdi)                   /* 0 << 32 | p */
    add $PLACE_STEP, %rdi
    inc %rcx
    cmp $PLACES, %rcx
    jb 2b
    mov $LAST_QUAD, %rdi
    mov $PATTERN, %rax
    xor %rdi, %rax
    mov %rax, (%rdi)
    xor %r12, %r12                      /* the tick the quadwords hold */
    call check
    lea written_label(%rip), %rsi
    call puts
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r13                      /* last tick's TSC */

tick:
    /* wait until TICK_CYCLES after the previous tick */
3:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %rax
    sub %r13, %rax
    cmp $TICK_CYCLES, %rax
    jb 3b
    mov %rdx, %r13
    call check
    inc %r12
    /* every place's tick quadword: t << 32 | p */
    mov $HIGH_RAM, %rdi
    mov %r12, %rbx
    shl $32, %rbx
    xor %rcx, %rcx
4:  lea (%rbx,%rcx), %rax
    mov %rax, 8(%rdi)
    add $PLACE_STEP, %rdi
    inc %rcx
    cmp $PLACES, %rcx
    jb 4b
    lea tick_label(%rip), %rsi
    call puts
    mov %r12, %rax
    call putdec
    mov $'\n', %al
    call putc
    cmp $TICKS, %r12
    jb tick
    call check
    lea ok_label(%rip), %rsi
    call puts
    mov $0x11, %al
    out %al, $DEBUG_EXIT
    hlt

/* Checks every pattern and tick quadword against tick R12; returns only if all match. */
check:
    mov $HIGH_RAM, %rdi
    mov %r12, %rbx
    shl $32, %rbx
    xor %rcx, %rcx
5:  mov $PATTERN, %rax
    xor %rdi, %rax
    cmp %rax, (%rdi)
    jne bad
    lea (%rbx,%rcx), %rax
    cmp %rax, 8(%rdi)
    jne bad_tick
    add $PLACE_STEP, %rdi
    inc %rcx
    cmp $PLACES, %rcx
    jb 5b
    mov $LAST_QUAD, %rdi
    mov $PATTERN, %rax
    xor %rdi, %rax
    cmp %rax, (%rdi)
    jne bad
    ret
bad_tick:
    add $8, %rdi
bad:
    mov %rdi, %rbx
    lea bad_label(%rip), %rsi
    call puts
    mov %rbx, %rax
    call puthex
    mov $'\n', %al
    call putc
    mov $0x12, %al
    out %al, $DEBUG_EXIT
    hlt

#include "runtime64.inc"
written_label:
    .asciz "WRITTEN\n"
tick_label:
    .asciz "TICK "
ok_label:
    .asciz "CHECK ok\n"
bad_label:
    .asciz "CHECK bad "
