/* Flat long-mode guest: MSRs that KVM lets the host access but refuses (or
   treats differently) when the guest itself accesses them. The output must be
   the same under `deflect run` with no policy (KVM decides everything) and
   under `deflect trace`: trace must never serve a guest's access with a
   host-initiated KVM_GET_MSRS / KVM_SET_MSRS.

   One "MSR <rd|wr> 0x<index> <ok|gp> 0x<value>" line per access (see
   runtime64.inc), then "SUMMARY accesses=N gp=G", "DONE"; debug-exit value G.
   Accesses, in order:
     IA32_UCODE_REV 0x8b       rd, wr 0x1234_5678_0000_0000, rd
     IA32_PERF_CAPABILITIES    rd, wr 0x2000, rd
     IA32_FEAT_CTL 0x3a        rd, wr 0x5 (lock | VMX outside SMX), rd, wr 0
     IA32_ARCH_CAPABILITIES    rd, wr 0x1, rd
     MSR_IA32_SMBASE 0x9e      rd
     IA32_VMX_BASIC 0x480      rd, wr 0x1, rd
   Each is done twice (a trace sees the first access per MSR and direction;
   the second must behave the same as the first would under KVM). */
#include "deflect.h"
#include "msr.h"
#include "msr_macros.inc"
#define MSR_IA32_UCODE_REV          0x0000008b
#define MSR_IA32_SMBASE             0x0000009e
#define MSR_IA32_FEAT_CTL           0x0000003a
#define MSR_IA32_ARCH_CAPABILITIES  0x0000010a
#define MSR_IA32_PERF_CAPABILITIES  0x00000345
#define MSR_IA32_VMX_BASIC          0x00000480
    .code64
    .globl _start
_start:
    call runtime_init
    mov $2, %r12
round:
    MSR_RD MSR_IA32_UCODE_REV
    MSR_WR MSR_IA32_UCODE_REV, 0x1234567800000000
    MSR_RD MSR_IA32_UCODE_REV
    MSR_RD MSR_IA32_PERF_CAPABILITIES
    MSR_WR MSR_IA32_PERF_CAPABILITIES, 0x2000
    MSR_RD MSR_IA32_PERF_CAPABILITIES
    MSR_RD MSR_IA32_FEAT_CTL
    MSR_WR MSR_IA32_FEAT_CTL, 0x5
    MSR_RD MSR_IA32_FEAT_CTL
    MSR_WR MSR_IA32_FEAT_CTL, 0
    MSR_RD MSR_IA32_ARCH_CAPABILITIES
    MSR_WR MSR_IA32_ARCH_CAPABILITIES, 0x1
    MSR_RD MSR_IA32_ARCH_CAPABILITIES
    MSR_RD MSR_IA32_SMBASE
    MSR_RD MSR_IA32_VMX_BASIC
    MSR_WR MSR_IA32_VMX_BASIC, 0x1
    MSR_RD MSR_IA32_VMX_BASIC
    dec %r12
    jnz round
    call report_done
#include "runtime64.inc"
