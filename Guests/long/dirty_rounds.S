/* Flat long-mode guest for the diff-snapshot benchmark: prints "READY", then
   for every byte it receives on COM1 dirties the same PAGES pages (one
   8-byte increment each, from 8 MiB up) and prints "DIRTIED <round>". The
   host sets PAGES by patching the parameter block after the "DFLDIRTY"
   marker in the image (deflect-bench sets 1% of the guest's RAM). Between
   rounds it polls the UART's line status (port exits, no memory writes
   beyond the stack page the routines use). */
#include "deflect.h"
    .code64
    .globl _start
_start:
    call runtime_init
    lea ready_label(%rip), %rsi
    call puts
    xor %r13, %r13                  /* round */
wait_for_byte:
    mov $COM1_LSR, %dx
    in %dx, %al
    test $0x01, %al                 /* data ready */
    jz wait_for_byte
    mov $COM1, %dx
    in %dx, %al                     /* consume it */
    mov dirty_pages(%rip), %rcx
    mov $0x800000, %rdi
1:  test %rcx, %rcx
    jz 2f
    incq (%rdi)
    add $4096, %rdi
    dec %rcx
    jmp 1b
2:  inc %r13
    lea dirtied_label(%rip), %rsi
    call puts
    mov %r13, %rax
    call putdec
    mov $'\n', %al
    call putc
    jmp wait_for_byte
#include "runtime64.inc"
ready_label:
    .asciz "READY\n"
dirtied_label:
    .asciz "DIRTIED "
    .balign 8
    .ascii "DFLDIRTY"
dirty_pages:
    .quad 16
