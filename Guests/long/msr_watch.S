/* Flat long-mode guest: watches MSR 0x2474 (which nothing implements) for a
   policy change. Reads it in a loop and prints "VALUE 0x<16 hex digits>"
   each time the value (or the #GP state, printed as "VALUE gp") changes,
   starting with the first read. Ends through the debug-exit port with the
   value 0x21 (status 67) when it reads 2, so a test knows the guest itself
   observed a policy that answers 2. Used by the SIGHUP reload test. */
#include "deflect.h"
#include "msr.h"
    .code64
    .globl _start
_start:
    call runtime_init
    mov $-1, %r12                   /* last value seen: none yet */
    mov $-1, %r13                   /* last fault state: none yet */
watch:
    mov $MSR_UNKNOWN_LOW, %ecx
    xor %eax, %eax
    xor %edx, %edx
    call rdmsr_checked
    setc %bl
    movzbq %bl, %rbx                /* 1 = #GP */
    shl $32, %rdx
    mov %eax, %eax
    or %rdx, %rax
    cmp %rbx, %r13
    jne changed
    cmp %rax, %r12
    je watch
changed:
    mov %rax, %r12
    mov %rbx, %r13
    lea value_label(%rip), %rsi
    call puts
    test %rbx, %rbx
    jz 1f
    lea gp_label(%rip), %rsi
    call puts
    jmp 2f
1:  lea hex_prefix(%rip), %rsi
    call puts
    mov %r12, %rax
    mov $16, %ecx
    call puthexn
2:  mov $'\n', %al
    call putc
    test %r13, %r13
    jnz watch
    cmp $2, %r12
    jne watch
    mov $0x21, %al
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
value_label:
    .asciz "VALUE "
gp_label:
    .asciz "gp"
hex_prefix:
    .asciz "0x"
