/* Flat long-mode guest: the guest side of the kernel selftest
   userspace_msr_exit_test.c, test_msr_permission_bitmap
   (guest_code_permission_bitmap). One vCPU.

   Line format (see runtime64.inc): one "MSR <rd|wr> 0x<index> <ok|gp> 0x<value>"
   line per access; between the phases "SYNC 0" on COM1 followed by an 8-bit
   OUT of 0 to SYNC_PORT (0x500): the VMM swaps the filter there, while the
   vCPU is stopped in that I/O exit. Ends with "SUMMARY accesses=4 gp=G",
   "DONE", debug-exit value G (number of #GPs).

      phase 0: rd MSR_FS_BASE (0xc0000100), rd MSR_GS_BASE (0xc0000101)
      SYNC 0
      phase 1: rd MSR_FS_BASE, rd MSR_GS_BASE

   Expected with the selftest's VMM (KVM_MSR_EXIT_REASON_FILTER; phase 0
   filter_fs = default allow + deny read of FS_BASE, phase 1 filter_gs = the
   same for GS_BASE; user space answers data = index):
      MSR rd 0xc0000100 ok 0x00000000c0000100   (user space)
      MSR rd 0xc0000101 ok 0x0000000000000000   (KVM: GS base is 0)
      SYNC 0
      MSR rd 0xc0000100 ok 0x0000000000000000   (KVM: FS base is 0)
      MSR rd 0xc0000101 ok 0x00000000c0000101   (user space)
      SUMMARY accesses=4 gp=0
      DONE                                      (value 0, status 1) */
#include "deflect.h"
#include "msr.h"
#include "msr_macros.inc"
    .code64
    .globl _start
_start:
    call runtime_init
    MSR_RD MSR_FS_BASE
    MSR_RD MSR_GS_BASE
    SYNC 0
    MSR_RD MSR_FS_BASE
    MSR_RD MSR_GS_BASE
    call report_done
#include "runtime64.inc"
