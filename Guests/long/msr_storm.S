/* Flat long-mode guest: storms the VMM with RDMSR/WRMSR of pseudo-random MSR
   indices (xorshift32, fixed seed) from two call sites, 20,000 accesses in
   all. Every #GP is caught by the runtime. The VMM must keep running with
   bounded memory and rate-limited events; the guest prints
   "STORM accesses=N gp=G" and exits with value 0x33 (status 103). */
#include "deflect.h"
    .code64
    .globl _start
_start:
    call runtime_init
    mov $0x2545f491, %ebx        /* xorshift32 state */
    mov $10000, %r12d            /* rounds: one read and one write each */
1:  mov %ebx, %eax               /* x ^= x << 13; x ^= x >> 17; x ^= x << 5 */
    shl $13, %eax
    xor %eax, %ebx
    mov %ebx, %eax
    shr $17, %eax
    xor %eax, %ebx
    mov %ebx, %eax
    shl $5, %eax
    xor %eax, %ebx
    mov %ebx, %ecx
    call rdmsr_checked
    mov %ebx, %ecx
    xor $0x5a5a, %ecx
    mov %ebx, %eax
    xor %edx, %edx
    call wrmsr_checked
    dec %r12d
    jnz 1b
    mov $storm_label, %rsi
    call puts
    mov $20000, %rax
    call putdec
    mov $gp_label, %rsi
    call puts
    mov gp_count(%rip), %rax
    call putdec
    mov $'\n', %al
    call putc
    mov $0x33, %al
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
storm_label: .asciz "STORM accesses="
gp_label:    .asciz " gp="
