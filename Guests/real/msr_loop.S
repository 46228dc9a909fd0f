/* Real-mode guest: the MSR exit-path benchmark loop, shared by Deflect's
   benchmark and Benchmarks/reference/msr_loop.c so both run identical code.

   Parameter block (little-endian 32-bit words at fixed image offsets; the
   host patches them in the loaded image before the first KVM_RUN):
     offset 4   iterations   number of RDMSR/WRMSR instructions (0 = none)
     offset 8   msr index    ECX for every access
     offset 12  operation    0 = RDMSR, 1 = WRMSR (of EDX:EAX = 0); anything else = RDMSR
   The defaults in the image (1000 RDMSR of MSR_IA32_SYSENTER_CS 0x174, which
   KVM handles in the kernel) let it run unpatched under any VMM.

   When the loop is done it writes 0x4d ('M') to the debug-exit port
   (status 0x9b) and halts. Every access must be answered (no #GP): the real-
   mode IVT is empty here. */
#include "deflect.h"
    .code16
    .globl _start
_start:
    jmp start                       /* 2 bytes (EB xx) */
    .balign 4
iterations: .long 1000              /* offset 4 */
msr_index:  .long 0x174             /* offset 8 */
operation:  .long 0                 /* offset 12 */
start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov iterations, %ebx
    mov msr_index, %ecx
    test %ebx, %ebx
    jz done
    cmpl $1, operation
    je write_loop
read_loop:
    rdmsr
    dec %ebx
    jnz read_loop
    jmp done
write_loop:
    xor %eax, %eax
    xor %edx, %edx
1:  wrmsr
    dec %ebx
    jnz 1b
done:
    mov $0x4d, %al
    out %al, $DEBUG_EXIT
2:  hlt
    jmp 2b
