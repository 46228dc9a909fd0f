/* Flat long-mode guest: the guest side of the kernel selftest
   userspace_msr_exit_test.c, test_msr_filter_allow (guest_code_filter_allow),
   without the forced-emulation (KVM_FEP) half. One vCPU.

   It only reports what it observes; the VMM side decides what should happen.
   Line format (see runtime64.inc): one "MSR <rd|wr> 0x<index> <ok|gp> 0x<value>"
   line per access, then "SUMMARY accesses=N gp=G", "DONE", and the debug-exit
   value G (number of #GPs).

   Accesses, in order (1–8 are the selftest's; 9–12 are extra and go through
   the filter's default-allow to KVM):
      1 rd MSR_IA32_XSS (0xda0)                 5 wr MSR_IA32_FLUSH_CMD (0x10b) = 0
      2 wr MSR_IA32_XSS = 0                     6 wr MSR_IA32_FLUSH_CMD = 1
      3 wr MSR_IA32_XSS = 1                     7 wr MSR_NON_EXISTENT (0x474f4f00) = 2
      4 rd MSR_IA32_FLUSH_CMD                   8 rd MSR_NON_EXISTENT
      9 rd MSR_FS_BASE  10 wr MSR_FS_BASE = 0  11 rd MSR_GS_BASE  12 wr MSR_GS_BASE = 0

   Expected transcript with the selftest's VMM (KVM_MSR_EXIT_REASON_FILTER,
   filter_allow = default allow + deny rd/wr of 0xda0, 0x10b, 0x474f4f00; user
   space: XSS reads 0 and accepts only 0, FLUSH_CMD read → #GP and accepts only
   1, NON_EXISTENT stores what is written):
      MSR rd 0x00000da0 ok 0x0000000000000000
      MSR wr 0x00000da0 ok 0x0000000000000000
      MSR wr 0x00000da0 gp 0x0000000000000001
      MSR rd 0x0000010b gp 0x0000000000000000
      MSR wr 0x0000010b gp 0x0000000000000000
      MSR wr 0x0000010b ok 0x0000000000000001
      MSR wr 0x474f4f00 ok 0x0000000000000002
      MSR rd 0x474f4f00 ok 0x0000000000000002
      MSR rd 0xc0000100 ok 0x0000000000000000
      MSR wr 0xc0000100 ok 0x0000000000000000
      MSR rd 0xc0000101 ok 0x0000000000000000
      MSR wr 0xc0000101 ok 0x0000000000000000
      SUMMARY accesses=12 gp=3
      DONE                                      (debug-exit value 3, status 7)
   User-space exits expected: 3 RDMSR (0xda0, 0x10b, 0x474f4f00) and
   5 WRMSR (0xda0 ×2, 0x10b ×2, 0x474f4f00). */
#include "deflect.h"
#include "msr.h"
#include "msr_macros.inc"
    .code64
    .globl _start
_start:
    call runtime_init
    MSR_RD MSR_IA32_XSS
    MSR_WR MSR_IA32_XSS, 0
    MSR_WR MSR_IA32_XSS, 1
    MSR_RD MSR_IA32_FLUSH_CMD
    MSR_WR MSR_IA32_FLUSH_CMD, 0
    MSR_WR MSR_IA32_FLUSH_CMD, 1
    MSR_WR MSR_NON_EXISTENT, 2
    MSR_RD MSR_NON_EXISTENT
    MSR_RD MSR_FS_BASE
    MSR_WR MSR_FS_BASE, 0
    MSR_RD MSR_GS_BASE
    MSR_WR MSR_GS_BASE, 0
    call report_done
#include "runtime64.inc"
