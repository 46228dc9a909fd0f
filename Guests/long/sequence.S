/* Flat long-mode guest: prints "SEQ <n>" for n = 0 ... 1999, one line each
   through the UART (every byte is a port exit), then "END" and exits
   through the debug-exit port with 0x11 (status 35). A test that pauses and
   resumes the VM while it prints checks that no line is lost or repeated. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    call runtime_init
    xor %r12, %r12
1:  lea seq_label(%rip), %rsi
    call puts
    mov %r12, %rax
    call putdec
    mov $'\n', %al
    call putc
    inc %r12
    cmp $2000, %r12
    jb 1b
    lea end_label(%rip), %rsi
    call puts
    mov $0x11, %al
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
seq_label:
    .asciz "SEQ "
end_label:
    .asciz "END\n"
