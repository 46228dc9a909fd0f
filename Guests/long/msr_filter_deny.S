/* Flat long-mode guest: the guest side of the kernel selftest
   userspace_msr_exit_test.c, test_msr_filter_deny (guest_code_filter_deny /
   guest_msr_calls). One vCPU.

   Line format (see runtime64.inc): one "MSR <rd|wr> 0x<index> <ok|gp> 0x<value>"
   line per access; between the two rounds "SYNC 0" on COM1 followed by an
   8-bit OUT of 0 to SYNC_PORT (0x500) — the VMM removes the filter there
   (selftest: no_filter_deny = default allow, no ranges). Ends with
   "SUMMARY accesses=14 gp=G", "DONE", debug-exit value G (number of #GPs).

   Each round (guest_msr_calls):
      wr MSR_SYSCALL_MASK (0xc0000084) = 0     in-kernel
      rd MSR_SYSCALL_MASK                      round 0: user space (filter), round 1: kernel
      rd MSR_GS_BASE (0xc0000101)              round 0: user space (filter), round 1: kernel
      wr MSR_IA32_POWER_CTL (0x1fc) = 0x1234   round 0: user space (filter), round 1: kernel
      rd MSR_IA32_POWER_CTL                    in-kernel
      rd 0xdeadbeef                            user space (KVM_MSR_EXIT_REASON_UNKNOWN)
      wr 0xdeadbeef = 0x1234                   user space (KVM_MSR_EXIT_REASON_UNKNOWN)

   Expected with the selftest's VMM (exit reasons INVAL|UNKNOWN|FILTER,
   filter_deny; user space answers every read with data = index, ignores writes):
      round 0: SYSCALL_MASK rd 0xc0000084, GS_BASE rd 0xc0000101,
               POWER_CTL rd = KVM's value (0: the 0x1234 write went to user space),
               0xdeadbeef rd 0xdeadbeef
      round 1: SYSCALL_MASK rd 0, GS_BASE rd 0, POWER_CTL rd 0x1234, 0xdeadbeef rd 0xdeadbeef
      no #GP (DONE, value 0, status 1); user-space exits: 4 RDMSR, 3 WRMSR. */
#include "deflect.h"
#include "msr.h"
#include "msr_macros.inc"
    .code64
    .globl _start
_start:
    call runtime_init
    call guest_msr_calls
    SYNC 0
    call guest_msr_calls
    call report_done

guest_msr_calls:
    MSR_WR MSR_SYSCALL_MASK, 0
    MSR_RD MSR_SYSCALL_MASK
    MSR_RD MSR_GS_BASE
    MSR_WR MSR_IA32_POWER_CTL, 0x1234
    MSR_RD MSR_IA32_POWER_CTL
    MSR_RD MSR_DEADBEEF
    MSR_WR MSR_DEADBEEF, 0x1234
    ret
#include "runtime64.inc"
