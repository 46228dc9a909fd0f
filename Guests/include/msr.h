/* Guests: MSR indices used by the MSR conformance and probe guests.
   Names follow the Linux kernel's msr-index.h. */
#ifndef DEFLECT_GUEST_MSR_H
#define DEFLECT_GUEST_MSR_H

/* Architectural */
#define MSR_IA32_TSC                0x00000010
#define MSR_IA32_APICBASE           0x0000001b
#define MSR_IA32_FLUSH_CMD          0x0000010b  /* write-only: 1 = L1D flush; reads #GP */
#define MSR_IA32_SYSENTER_CS        0x00000174
#define MSR_IA32_SYSENTER_ESP       0x00000175
#define MSR_IA32_XSS                0x00000da0
#define MSR_EFER                    0xc0000080
#define MSR_SYSCALL_MASK            0xc0000084
#define MSR_FS_BASE                 0xc0000100
#define MSR_GS_BASE                 0xc0000101

/* Model-specific (Intel) */
#define MSR_CORE_THREAD_COUNT       0x00000035
#define MSR_PLATFORM_INFO           0x000000ce
#define MSR_MISC_FEATURE_ENABLES    0x00000140
#define MSR_IA32_TEMPERATURE_TARGET 0x000001a2
#define MSR_IA32_POWER_CTL          0x000001fc
#define MSR_RAPL_POWER_UNIT         0x00000606
#define MSR_PKG_ENERGY_STATUS       0x00000611

/* Made-up indices nobody implements */
#define MSR_NON_EXISTENT            0x474f4f00  /* userspace_msr_exit_test.c's fabricated MSR */
#define MSR_UNKNOWN_LOW             0x00002474
#define MSR_UNKNOWN_HYPERVISOR      0x40000123
#define MSR_UNKNOWN_AMD_RANGE       0xc0011234
#define MSR_DEADBEEF                0xdeadbeef  /* the selftest's "invalid MSR" (UNKNOWN exit) */

#endif
