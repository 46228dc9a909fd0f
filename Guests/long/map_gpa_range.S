/* Flat long-mode guest: converts memory with the KVM_HC_MAP_GPA_RANGE
   hypercall, as a confidential guest tells its host which pages are shared.
   Needs a VMM that enables the hypercall exit (deflect run --map-gpa-range).

     1. 2 MiB at 0x200000 -> shared   (a2 = 1: 2M pages, not encrypted)  expect 0
     2. 4 KiB at 0x201000 -> private  (a2 = 0x10: 4K pages, encrypted)   expect 0
     3. reserved attribute bit 5 set                                      expect -KVM_EINVAL
     4. 2M page size, misaligned GPA 0x201000                             expect -KVM_EINVAL
   Prints "HC n ret 0x<16 hex>" per call and "HC pass" or "HC fail"; exits with
   value 0x40 (status 129) on pass, 0x41 on fail. On hosts where VMCALL never
   returns from KVM_RUN it never gets there (the VMM's timeout ends it). */
#include "deflect.h"
#define KVM_HC_MAP_GPA_RANGE 12
#define KVM_EINVAL 22
    .code64
    .globl _start
_start:
    call runtime_init
    xor %r12, %r12                  /* mismatches */

    mov $0x200000, %rbx
    mov $512, %rcx
    mov $0x1, %rdx
    xor %r13, %r13                  /* expected */
    mov $1, %r14
    call hypercall

    mov $0x201000, %rbx
    mov $1, %rcx
    mov $0x10, %rdx
    xor %r13, %r13
    mov $2, %r14
    call hypercall

    mov $0x200000, %rbx
    mov $1, %rcx
    mov $0x20, %rdx
    mov $-KVM_EINVAL, %r13
    mov $3, %r14
    call hypercall

    mov $0x201000, %rbx
    mov $512, %rcx
    mov $0x1, %rdx
    mov $-KVM_EINVAL, %r13
    mov $4, %r14
    call hypercall

    test %r12, %r12
    jnz 1f
    mov $pass, %rsi
    call puts
    mov $0x40, %al
    out %al, $DEBUG_EXIT
    hlt
1:  mov $fail, %rsi
    call puts
    mov $0x41, %al
    out %al, $DEBUG_EXIT
    hlt

/* RBX, RCX, RDX = a0..a2, R13 = expected return, R14 = call number. */
hypercall:
    mov $KVM_HC_MAP_GPA_RANGE, %eax
    vmcall
    mov %rax, %r15
    mov $label, %rsi
    call puts
    mov %r14, %rax
    call putdec
    mov $ret_label, %rsi
    call puts
    mov %r15, %rax
    call puthex
    mov $'\n', %al
    call putc
    cmp %r13, %r15
    je 2f
    inc %r12
2:  ret

#include "runtime64.inc"
label:     .asciz "HC "
ret_label: .asciz " ret 0x"
pass:      .asciz "HC pass\n"
fail:      .asciz "HC fail\n"
