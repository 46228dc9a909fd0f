/* Flat long-mode guest: the MSR demo probe. Touches architectural,
   model-specific and unknown MSRs, one report line each, so a run shows what
   the VMM's MSR policy (or, without one, KVM's defaults) does with each kind.
   One vCPU.

   Line format (see runtime64.inc): one "MSR <rd|wr> 0x<index> <ok|gp> 0x<value>"
   line per access, then "SUMMARY accesses=17 gp=G", "DONE", and the
   debug-exit value G = number of #GPs (status 2G+1).

   Accesses, in order:
     architectural   rd 0x10 IA32_TSC, rd 0x1b IA32_APIC_BASE, rd 0xc0000080 EFER
     model-specific  rd 0xce PLATFORM_INFO, rd 0x35 CORE_THREAD_COUNT,
                     rd 0x1a2 TEMPERATURE_TARGET, rd 0x606 RAPL_POWER_UNIT,
                     rd 0x611 PKG_ENERGY_STATUS, (delay: DELAY_LOOPS iterations of
                     dec/jnz), rd 0x611 PKG_ENERGY_STATUS again,
                     rd 0x140 MISC_FEATURE_ENABLES, wr 0x140 = 0, rd 0x140
     unknown         rd 0x2474, rd 0x40000123, rd 0xc0011234, wr 0x2474 = 0x1234
     architectural   rd 0x10 IA32_TSC again (shows time passed during the probe) */
#include "deflect.h"
#include "msr.h"
#include "msr_macros.inc"
#define DELAY_LOOPS 200000        /* ~0.1–0.2 s on the nested test host, where this code runs through KVM's emulator */
    .code64
    .globl _start
_start:
    call runtime_init
    MSR_RD MSR_IA32_TSC
    MSR_RD MSR_IA32_APICBASE
    MSR_RD MSR_EFER
    MSR_RD MSR_PLATFORM_INFO
    MSR_RD MSR_CORE_THREAD_COUNT
    MSR_RD MSR_IA32_TEMPERATURE_TARGET
    MSR_RD MSR_RAPL_POWER_UNIT
    MSR_RD MSR_PKG_ENERGY_STATUS
    mov $DELAY_LOOPS, %ebx
1:  dec %ebx
    jnz 1b
    MSR_RD MSR_PKG_ENERGY_STATUS
    MSR_RD MSR_MISC_FEATURE_ENABLES
    MSR_WR MSR_MISC_FEATURE_ENABLES, 0
    MSR_RD MSR_MISC_FEATURE_ENABLES
    MSR_RD MSR_UNKNOWN_LOW
    MSR_RD MSR_UNKNOWN_HYPERVISOR
    MSR_RD MSR_UNKNOWN_AMD_RANGE
    MSR_WR MSR_UNKNOWN_LOW, 0x1234
    MSR_RD MSR_IA32_TSC
    call report_done
#include "runtime64.inc"
