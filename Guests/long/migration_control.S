/* Flat long-mode guest: the guest side of migration-control negotiation.
   Prints the KVM paravirtual features it is offered (CPUID 0x40000001 EAX:
   bit 16 KVM_FEATURE_HC_MAP_GPA_RANGE, bit 17 KVM_FEATURE_MIGRATION_CONTROL),
   then reads MSR_KVM_MIGRATION_CONTROL, writes 1 (KVM_MIGRATION_READY: "the
   guest agrees to be migrated"), reads it back and writes 2 (a reserved bit).
   Line format: "FEATURES 0x<16 hex>", then runtime64.inc's MSR report lines,
   "SUMMARY ...", "DONE"; debug-exit value = number of #GPs. */
#include "deflect.h"
#include "msr.h"
#include "msr_macros.inc"
    .code64
    .globl _start
_start:
    call runtime_init
    mov $0x40000001, %eax
    xor %ecx, %ecx
    cpuid
    mov %rax, %rbx
    mov $features, %rsi
    call puts
    mov %rbx, %rax
    call puthex
    mov $'\n', %al
    call putc
    MSR_RD 0x4b564d08
    MSR_WR 0x4b564d08, 1
    MSR_RD 0x4b564d08
    MSR_WR 0x4b564d08, 2
    call report_done
#include "runtime64.inc"
features: .asciz "FEATURES 0x"
