/* Flat long-mode guest: writes 1 ... 30000 to MSR 0x2474 (emulated by the
   test's policy) and reads each value back. Prints "MISMATCH <i>" and exits
   with 0x13 (status 39) if a read differs from the write before it;
   otherwise prints "COUNT 30000" and exits with 0x12 (status 37). A test
   that pauses and resumes the VM meanwhile checks that no MSR write is lost
   or repeated across a pause (the final emulated value is 30000). */
#include "deflect.h"
#include "msr.h"
    .code64
    .globl _start
_start:
    call runtime_init
    mov $1, %r12
1:  mov $MSR_UNKNOWN_LOW, %ecx
    mov %r12, %rax
    xor %edx, %edx
    wrmsr
    xor %eax, %eax
    rdmsr
    cmp %r12, %rax
    jne mismatch
    inc %r12
    cmp $30000, %r12
    jbe 1b
    lea count_label(%rip), %rsi
    call puts
    mov $30000, %rax
    call putdec
    mov $'\n', %al
    call putc
    mov $0x12, %al
    out %al, $DEBUG_EXIT
    hlt
mismatch:
    lea mismatch_label(%rip), %rsi
    call puts
    mov %r12, %rax
    call putdec
    mov $'\n', %al
    call putc
    mov $0x13, %al
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
count_label:
    .asciz "COUNT "
mismatch_label:
    .asciz "MISMATCH "
