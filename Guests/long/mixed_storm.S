/* Flat long-mode guest for the control-API and pause/resume benchmarks
   (deflect-bench --control): every vCPU starts here with RDI = its index.
   vCPU 0 loops on RDMSR of MSR 0x2474 (nothing implements it: the benchmark's
   policy emulates it, so every read is a user-space MSR exit), vCPU 1 loops
   on OUT to the POST code port 0x80 (a port exit answered by a device that
   only remembers the value), every other vCPU spins on PAUSE without leaving
   the guest. No IDT and no stack: nothing here can fault while the policy
   emulates 0x2474. It never ends by itself: the benchmark stops the run. */
#include "deflect.h"
#include "msr.h"
    .code64
    .globl _start
_start:
    test %rdi, %rdi
    jz msr_storm
    cmp $1, %rdi
    je port_storm
spin:
    pause
    jmp spin
msr_storm:
    mov $MSR_UNKNOWN_LOW, %ecx
1:  rdmsr
    jmp 1b
port_storm:
    xor %eax, %eax
2:  out %al, $POST_CODE
    inc %al
    jmp 2b
