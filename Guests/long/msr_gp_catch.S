/* Flat long-mode guest: self-test of runtime64.inc. Reads and writes MSR
   0xdeadbeef, which nothing implements, expecting each access to raise #GP
   that the runtime's handler catches and skips. Prints the two report lines,
   then "CHECK pass" (exit value 0x2d) if gp_count == 2, RDMSR returned 0 and
   gp_last_rip points at the WRMSR instruction; otherwise "CHECK fail" (0x2e).
   If a VMM policy answers 0xdeadbeef instead, the check fails on purpose. */
#include "deflect.h"
#include "msr.h"
    .code64
    .globl _start
_start:
    call runtime_init
    mov $MSR_DEADBEEF, %ecx
    mov $0x1111111122222222, %rax   /* must read back as 0 after #GP */
    mov %rax, %rdx
    call rdmsr_checked
    jnc fail                        /* CF must report the fault */
    or %edx, %eax
    jnz fail
    mov $MSR_DEADBEEF, %ecx
    mov $0x5678, %eax
    xor %edx, %edx
    mov gp_count(%rip), %rbx
    wrmsr                           /* unchecked: exercise the handler directly */
wrmsr_site_end:
    mov gp_count(%rip), %rbx
    cmp $2, %rbx
    jne fail
    lea wrmsr_site_end(%rip), %rax
    sub $2, %rax
    cmp gp_last_rip(%rip), %rax
    jne fail
    /* the reporting path */
    mov $MSR_DEADBEEF, %ecx
    call report_rdmsr
    mov $0x5678, %eax
    call report_wrmsr
    lea pass_message(%rip), %rsi
    call puts
    mov $0x2d, %al
    out %al, $DEBUG_EXIT
    hlt
fail:
    lea fail_message(%rip), %rsi
    call puts
    mov $0x2e, %al
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
pass_message:
    .asciz "CHECK pass\n"
fail_message:
    .asciz "CHECK fail\n"
