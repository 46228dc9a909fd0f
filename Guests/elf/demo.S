/* The demo guest (ELF64, long mode): greets through COM1, shows what CPUID
   says about the virtual CPU, counts its vCPUs and exits through the
   debug-exit port with value 0x10 (process status 33). */
#include "deflect.h"
    .code64
    .globl _start
_start:
    mov %rsi, %r12              /* vCPU count */
    test %rdi, %rdi
    jnz parked                  /* only vCPU 0 talks */

    mov $greeting, %rsi
    call puts

    xor %eax, %eax              /* CPUID leaf 0: vendor string in EBX, EDX, ECX */
    cpuid
    mov %ebx, vendor(%rip)
    mov %edx, vendor+4(%rip)
    mov %ecx, vendor+8(%rip)
    mov $vendor_label, %rsi
    call puts
    mov $vendor, %rsi
    call puts

    mov $0x40000000, %eax       /* hypervisor leaf: "KVMKVMKVM" under KVM */
    cpuid
    mov %ebx, hypervisor(%rip)
    mov %ecx, hypervisor+4(%rip)
    mov %edx, hypervisor+8(%rip)
    mov $hypervisor_label, %rsi
    call puts
    mov $hypervisor, %rsi
    call puts

    mov $vcpus_label, %rsi
    call puts
    mov %r12, %rax
    call puthex
    mov $bye, %rsi
    call puts

    mov $0x10, %al
    out %al, $DEBUG_EXIT
parked:
    hlt
    jmp parked

#include "serial64.inc"

greeting:         .asciz "Hello from a Deflect guest running in 64-bit long mode.\n"
vendor_label:     .asciz "CPU vendor:  "
hypervisor_label: .asciz "\nhypervisor:  "
vcpus_label:      .asciz "\nvCPUs:       0x"
bye:              .asciz "\nGoodbye: exiting through the debug-exit port with value 0x10.\n"
    .data
vendor:           .fill 13, 1, 0
hypervisor:       .fill 13, 1, 0
