// MSRCatalogue: Deflect's table of known MSRs (index, name, one-line summary,
// family). Policy files name MSRs from it, events and traces print its names.
// The table is data, sorted by index, one comment-like summary per entry
// (in the style of Firecracker's arch/x86_64/msr.rs); lookups are predicates
// over it. Names follow Linux's arch/x86/include/asm/msr-index.h where it has
// one, so they can be grepped in the kernel; SDM/APM spellings are aliases.
import KVMABI

/// Who defines an MSR.
public enum MSRFamily: String, Sendable, Hashable, CaseIterable {
    /// Architectural (IA32_*) or common to Intel and AMD (the syscall MSRs).
    case architectural
    /// Intel model-specific (SDM Vol. 4, per-microarchitecture tables).
    case intel
    /// AMD model-specific (APM Vol. 2 and the family BKDGs/PPRs).
    case amd
    /// KVM paravirtual MSRs (Documentation/virt/kvm/x86/msr.rst).
    case kvm
    /// Hyper-V synthetic MSRs (Hyper-V TLFS).
    case hyperv
}

/// One catalogue entry.
public struct MSRInfo: Sendable, Hashable {
    public var index: UInt32
    public var name: String
    public var summary: String
    public var family: MSRFamily

    public init(index: UInt32, name: String, summary: String, family: MSRFamily) {
        self.index = index; self.name = name; self.summary = summary; self.family = family
    }
}

/// The MSR catalogue and its lookups.
///
/// Name lookup (`index(named:)`) is case-insensitive and ignores a leading
/// `MSR_` and then a leading `IA32_`, so `MSR_IA32_TSC`, `IA32_TSC`,
/// `msr_tsc` and `tsc` all find 0x10. Hyper-V names (`HV_X64_MSR_…`) must be
/// written in full. SDM/APM spellings that differ from Linux's are accepted
/// as aliases (see `aliases`).
public enum MSRCatalogue {
    /// KVM never filters x2APIC MSRs 0x800–0x8ff: they are handled by the
    /// in-kernel local APIC whatever the filter says, so the catalogue lists
    /// no individual entries there and policies cannot take them.
    public static var x2APICRange: ClosedRange<UInt32> { MSRFilter.unfilteredRange }

    /// Sorted by index; no duplicate indices or names (tested).
    public static let entries: [MSRInfo] = [
        e(0x0000_0000, "MSR_IA32_P5_MC_ADDR", .architectural, "Pentium machine-check address (legacy, aliases MC0_ADDR on some parts)"),
        e(0x0000_0001, "MSR_IA32_P5_MC_TYPE", .architectural, "Pentium machine-check type (legacy)"),
        e(0x0000_0010, "MSR_IA32_TSC", .architectural, "Time-stamp counter; KVM keeps a per-vCPU offset"),
        e(0x0000_0011, "MSR_KVM_WALL_CLOCK", .kvm, "Old KVM wall-clock page GPA (superseded by 0x4b564d00)"),
        e(0x0000_0012, "MSR_KVM_SYSTEM_TIME", .kvm, "Old KVM pvclock area GPA + enable (superseded by 0x4b564d01)"),
        e(0x0000_0017, "MSR_IA32_PLATFORM_ID", .architectural, "Platform ID bits 52:50, selects the microcode update"),
        e(0x0000_001b, "MSR_IA32_APICBASE", .architectural, "Local APIC base, BSP flag, xAPIC/x2APIC enable"),
        e(0x0000_0034, "MSR_SMI_COUNT", .intel, "Number of SMIs since reset (read-only, Nehalem+)"),
        e(0x0000_0035, "MSR_CORE_THREAD_COUNT", .intel, "Cores 31:16 and threads 15:0 in the package (read-only)"),
        e(0x0000_003a, "MSR_IA32_FEAT_CTL", .architectural, "Feature control: lock, VMX inside/outside SMX, SGX, LMCE"),
        e(0x0000_003b, "MSR_IA32_TSC_ADJUST", .architectural, "Per-thread TSC adjustment added to the TSC"),
        e(0x0000_0048, "MSR_IA32_SPEC_CTRL", .architectural, "Speculation control: IBRS, STIBP, SSBD"),
        e(0x0000_0049, "MSR_IA32_PRED_CMD", .architectural, "Prediction command, write-only: IBPB"),
        e(0x0000_008b, "MSR_IA32_UCODE_REV", .architectural, "Microcode revision (Intel IA32_BIOS_SIGN_ID, AMD PATCH_LEVEL)"),
        e(0x0000_009e, "MSR_IA32_SMBASE", .architectural, "SMRAM base, readable only in SMM"),
        e(0x0000_00c1, "MSR_IA32_PERFCTR0", .architectural, "General-purpose performance counter 0 (IA32_PMC0)"),
        e(0x0000_00c2, "MSR_IA32_PERFCTR1", .architectural, "General-purpose performance counter 1 (IA32_PMC1)"),
        e(0x0000_00cd, "MSR_FSB_FREQ", .intel, "Scalable bus speed (Core/Atom, read-only)"),
        e(0x0000_00ce, "MSR_PLATFORM_INFO", .intel, "Max non-turbo ratio 15:8, programmable ratio/TDP/CPUID-faulting bits, min ratio 47:40"),
        e(0x0000_00e1, "MSR_IA32_UMWAIT_CONTROL", .architectural, "UMWAIT/TPAUSE maximum time and C0.2 disable"),
        e(0x0000_00e2, "MSR_PKG_CST_CONFIG_CONTROL", .intel, "Package C-state limit, I/O MWAIT redirection, CFG lock"),
        e(0x0000_00e4, "MSR_PMG_IO_CAPTURE_BASE", .intel, "I/O-port base for C-state entry redirection"),
        e(0x0000_00e7, "MSR_IA32_MPERF", .architectural, "Maximum-performance frequency clock count (TSC rate while in C0)"),
        e(0x0000_00e8, "MSR_IA32_APERF", .architectural, "Actual-performance frequency clock count"),
        e(0x0000_00fe, "MSR_MTRRCAP", .architectural, "MTRR capabilities: variable count, fixed, WC, SMRR (read-only)"),
        e(0x0000_010a, "MSR_IA32_ARCH_CAPABILITIES", .architectural, "Enumerates hardware mitigations (RDCL_NO, MDS_NO, ...), read-only"),
        e(0x0000_010b, "MSR_IA32_FLUSH_CMD", .architectural, "Flush command, write-only: L1D_FLUSH"),
        e(0x0000_0122, "MSR_IA32_TSX_CTRL", .architectural, "TSX control: RTM disable, TSX CPUID clear"),
        e(0x0000_0140, "MSR_MISC_FEATURE_ENABLES", .intel, "CPUID faulting (bit 0) and ring-3 MWAIT (Linux: MSR_MISC_FEATURES_ENABLES)"),
        e(0x0000_0174, "MSR_IA32_SYSENTER_CS", .architectural, "SYSENTER target code segment"),
        e(0x0000_0175, "MSR_IA32_SYSENTER_ESP", .architectural, "SYSENTER target stack pointer"),
        e(0x0000_0176, "MSR_IA32_SYSENTER_EIP", .architectural, "SYSENTER target instruction pointer"),
        e(0x0000_0179, "MSR_IA32_MCG_CAP", .architectural, "Machine-check global capabilities: bank count, CTL_P, LMCE_P (read-only)"),
        e(0x0000_017a, "MSR_IA32_MCG_STATUS", .architectural, "Machine-check global status: RIPV, EIPV, MCIP"),
        e(0x0000_017b, "MSR_IA32_MCG_CTL", .architectural, "Machine-check global control (present when MCG_CAP.CTL_P)"),
        e(0x0000_0186, "MSR_ARCH_PERFMON_EVENTSEL0", .architectural, "Performance event select 0 (IA32_PERFEVTSEL0)"),
        e(0x0000_0187, "MSR_ARCH_PERFMON_EVENTSEL1", .architectural, "Performance event select 1 (IA32_PERFEVTSEL1)"),
        e(0x0000_0198, "MSR_IA32_PERF_STATUS", .architectural, "Current performance state (P-state ratio), read-only"),
        e(0x0000_0199, "MSR_IA32_PERF_CTL", .architectural, "Requested performance state (P-state ratio)"),
        e(0x0000_019a, "MSR_IA32_THERM_CONTROL", .architectural, "Software clock modulation (SDM: IA32_CLOCK_MODULATION)"),
        e(0x0000_019b, "MSR_IA32_THERM_INTERRUPT", .architectural, "Thermal interrupt enables and thresholds"),
        e(0x0000_019c, "MSR_IA32_THERM_STATUS", .architectural, "Thermal status: digital readout 22:16, valid bit 31, log bits"),
        e(0x0000_01a0, "MSR_IA32_MISC_ENABLE", .architectural, "Misc enables: fast strings, thermal monitor, EIST, MONITOR, limit CPUID, XD disable"),
        e(0x0000_01a2, "MSR_IA32_TEMPERATURE_TARGET", .intel, "TCC activation temperature 23:16 (Tjmax) and offset"),
        e(0x0000_01a6, "MSR_OFFCORE_RSP_0", .intel, "Off-core response event 0 qualifier"),
        e(0x0000_01a7, "MSR_OFFCORE_RSP_1", .intel, "Off-core response event 1 qualifier"),
        e(0x0000_01ad, "MSR_TURBO_RATIO_LIMIT", .intel, "Maximum turbo ratio per active-core count"),
        e(0x0000_01ae, "MSR_TURBO_RATIO_LIMIT1", .intel, "Turbo ratio limits, more core counts (or core-group sizes)"),
        e(0x0000_01af, "MSR_TURBO_RATIO_LIMIT2", .intel, "Turbo ratio limits, more core counts"),
        e(0x0000_01b0, "MSR_IA32_ENERGY_PERF_BIAS", .architectural, "Energy/performance hint 3:0"),
        e(0x0000_01b1, "MSR_IA32_PACKAGE_THERM_STATUS", .intel, "Package thermal status: digital readout, log bits"),
        e(0x0000_01b2, "MSR_IA32_PACKAGE_THERM_INTERRUPT", .intel, "Package thermal interrupt enables and thresholds"),
        e(0x0000_01c4, "MSR_IA32_XFD", .architectural, "Extended feature disable (AMX tile data first-use trap)"),
        e(0x0000_01c5, "MSR_IA32_XFD_ERR", .architectural, "XFD error: which feature faulted"),
        e(0x0000_01c8, "MSR_LBR_SELECT", .intel, "Last-branch-record filtering"),
        e(0x0000_01c9, "MSR_LBR_TOS", .intel, "Last-branch-record top-of-stack index"),
        e(0x0000_01d9, "MSR_IA32_DEBUGCTLMSR", .architectural, "Debug control: LBR, BTF, TR, freeze on PMI (SDM: IA32_DEBUGCTL)"),
        e(0x0000_01fc, "MSR_IA32_POWER_CTL", .intel, "Power control: C1E enable and related package knobs"),
        e(0x0000_0200, "MSR_MTRRPHYSBASE0", .architectural, "Variable-range MTRR 0 base and type"),
        e(0x0000_0201, "MSR_MTRRPHYSMASK0", .architectural, "Variable-range MTRR 0 mask and valid bit"),
        e(0x0000_0202, "MSR_MTRRPHYSBASE1", .architectural, "Variable-range MTRR 1 base and type"),
        e(0x0000_0203, "MSR_MTRRPHYSMASK1", .architectural, "Variable-range MTRR 1 mask and valid bit"),
        e(0x0000_0204, "MSR_MTRRPHYSBASE2", .architectural, "Variable-range MTRR 2 base and type"),
        e(0x0000_0205, "MSR_MTRRPHYSMASK2", .architectural, "Variable-range MTRR 2 mask and valid bit"),
        e(0x0000_0206, "MSR_MTRRPHYSBASE3", .architectural, "Variable-range MTRR 3 base and type"),
        e(0x0000_0207, "MSR_MTRRPHYSMASK3", .architectural, "Variable-range MTRR 3 mask and valid bit"),
        e(0x0000_0208, "MSR_MTRRPHYSBASE4", .architectural, "Variable-range MTRR 4 base and type"),
        e(0x0000_0209, "MSR_MTRRPHYSMASK4", .architectural, "Variable-range MTRR 4 mask and valid bit"),
        e(0x0000_020a, "MSR_MTRRPHYSBASE5", .architectural, "Variable-range MTRR 5 base and type"),
        e(0x0000_020b, "MSR_MTRRPHYSMASK5", .architectural, "Variable-range MTRR 5 mask and valid bit"),
        e(0x0000_020c, "MSR_MTRRPHYSBASE6", .architectural, "Variable-range MTRR 6 base and type"),
        e(0x0000_020d, "MSR_MTRRPHYSMASK6", .architectural, "Variable-range MTRR 6 mask and valid bit"),
        e(0x0000_020e, "MSR_MTRRPHYSBASE7", .architectural, "Variable-range MTRR 7 base and type"),
        e(0x0000_020f, "MSR_MTRRPHYSMASK7", .architectural, "Variable-range MTRR 7 mask and valid bit"),
        e(0x0000_0250, "MSR_MTRRFIX64K_00000", .architectural, "Fixed-range MTRR, 0x00000–0x7ffff in 64 KiB pieces"),
        e(0x0000_0258, "MSR_MTRRFIX16K_80000", .architectural, "Fixed-range MTRR, 0x80000–0x9ffff in 16 KiB pieces"),
        e(0x0000_0259, "MSR_MTRRFIX16K_A0000", .architectural, "Fixed-range MTRR, 0xa0000–0xbffff in 16 KiB pieces"),
        e(0x0000_0268, "MSR_MTRRFIX4K_C0000", .architectural, "Fixed-range MTRR, 0xc0000–0xc7fff in 4 KiB pieces"),
        e(0x0000_0269, "MSR_MTRRFIX4K_C8000", .architectural, "Fixed-range MTRR, 0xc8000–0xcffff"),
        e(0x0000_026a, "MSR_MTRRFIX4K_D0000", .architectural, "Fixed-range MTRR, 0xd0000–0xd7fff"),
        e(0x0000_026b, "MSR_MTRRFIX4K_D8000", .architectural, "Fixed-range MTRR, 0xd8000–0xdffff"),
        e(0x0000_026c, "MSR_MTRRFIX4K_E0000", .architectural, "Fixed-range MTRR, 0xe0000–0xe7fff"),
        e(0x0000_026d, "MSR_MTRRFIX4K_E8000", .architectural, "Fixed-range MTRR, 0xe8000–0xeffff"),
        e(0x0000_026e, "MSR_MTRRFIX4K_F0000", .architectural, "Fixed-range MTRR, 0xf0000–0xf7fff"),
        e(0x0000_026f, "MSR_MTRRFIX4K_F8000", .architectural, "Fixed-range MTRR, 0xf8000–0xfffff"),
        e(0x0000_0277, "MSR_IA32_CR_PAT", .architectural, "Page-attribute table (SDM: IA32_PAT)"),
        e(0x0000_02ff, "MSR_MTRRDEFTYPE", .architectural, "MTRR default type, fixed-range enable, MTRR enable"),
        e(0x0000_0309, "MSR_CORE_PERF_FIXED_CTR0", .architectural, "Fixed counter 0: instructions retired"),
        e(0x0000_030a, "MSR_CORE_PERF_FIXED_CTR1", .architectural, "Fixed counter 1: core cycles"),
        e(0x0000_030b, "MSR_CORE_PERF_FIXED_CTR2", .architectural, "Fixed counter 2: reference cycles"),
        e(0x0000_0345, "MSR_IA32_PERF_CAPABILITIES", .architectural, "PMU capabilities: LBR format, full-width writes (read-only)"),
        e(0x0000_038d, "MSR_CORE_PERF_FIXED_CTR_CTRL", .architectural, "Fixed counter enables"),
        e(0x0000_038e, "MSR_CORE_PERF_GLOBAL_STATUS", .architectural, "PMU global overflow status"),
        e(0x0000_038f, "MSR_CORE_PERF_GLOBAL_CTRL", .architectural, "PMU global counter enables"),
        e(0x0000_0390, "MSR_CORE_PERF_GLOBAL_OVF_CTRL", .architectural, "PMU global overflow reset"),
        e(0x0000_03f8, "MSR_PKG_C3_RESIDENCY", .intel, "Package C3 residency counter"),
        e(0x0000_03f9, "MSR_PKG_C6_RESIDENCY", .intel, "Package C6 residency counter"),
        e(0x0000_03fa, "MSR_PKG_C7_RESIDENCY", .intel, "Package C7 residency counter"),
        e(0x0000_03fc, "MSR_CORE_C3_RESIDENCY", .intel, "Core C3 residency counter"),
        e(0x0000_03fd, "MSR_CORE_C6_RESIDENCY", .intel, "Core C6 residency counter"),
        e(0x0000_03fe, "MSR_CORE_C7_RESIDENCY", .intel, "Core C7 residency counter"),
        e(0x0000_0400, "MSR_IA32_MC0_CTL", .architectural, "Machine-check bank 0 control (banks continue in fours)"),
        e(0x0000_0401, "MSR_IA32_MC0_STATUS", .architectural, "Machine-check bank 0 status"),
        e(0x0000_0402, "MSR_IA32_MC0_ADDR", .architectural, "Machine-check bank 0 address"),
        e(0x0000_0403, "MSR_IA32_MC0_MISC", .architectural, "Machine-check bank 0 miscellaneous"),
        e(0x0000_0480, "MSR_IA32_VMX_BASIC", .architectural, "VMX capability: VMCS revision and size (first of the VMX capability MSRs)"),
        e(0x0000_04c1, "MSR_IA32_PMC0", .architectural, "Full-width alias of performance counter 0"),
        e(0x0000_04d0, "MSR_IA32_MCG_EXT_CTL", .architectural, "Local machine-check exception enable"),
        e(0x0000_0606, "MSR_RAPL_POWER_UNIT", .intel, "RAPL units: power 3:0, energy 12:8, time 19:16"),
        e(0x0000_060a, "MSR_PKGC3_IRTL", .intel, "Package C3 interrupt-response time limit"),
        e(0x0000_060d, "MSR_PKG_C2_RESIDENCY", .intel, "Package C2 residency counter"),
        e(0x0000_0610, "MSR_PKG_POWER_LIMIT", .intel, "RAPL package power limits PL1/PL2 with time windows and lock"),
        e(0x0000_0611, "MSR_PKG_ENERGY_STATUS", .intel, "RAPL package energy consumed, 32-bit wrapping counter in energy units"),
        e(0x0000_0613, "MSR_PKG_PERF_STATUS", .intel, "RAPL package throttled time"),
        e(0x0000_0614, "MSR_PKG_POWER_INFO", .intel, "RAPL package TDP, min/max power, max time window"),
        e(0x0000_0618, "MSR_DRAM_POWER_LIMIT", .intel, "RAPL DRAM power limit"),
        e(0x0000_0619, "MSR_DRAM_ENERGY_STATUS", .intel, "RAPL DRAM energy consumed"),
        e(0x0000_061b, "MSR_DRAM_PERF_STATUS", .intel, "RAPL DRAM throttled time"),
        e(0x0000_061c, "MSR_DRAM_POWER_INFO", .intel, "RAPL DRAM power range"),
        e(0x0000_0620, "MSR_UNCORE_RATIO_LIMIT", .intel, "Uncore min/max ratio"),
        e(0x0000_0638, "MSR_PP0_POWER_LIMIT", .intel, "RAPL power-plane 0 (cores) power limit"),
        e(0x0000_0639, "MSR_PP0_ENERGY_STATUS", .intel, "RAPL power-plane 0 (cores) energy consumed"),
        e(0x0000_063a, "MSR_PP0_POLICY", .intel, "RAPL power-plane 0 balance policy"),
        e(0x0000_0640, "MSR_PP1_POWER_LIMIT", .intel, "RAPL power-plane 1 (graphics) power limit"),
        e(0x0000_0641, "MSR_PP1_ENERGY_STATUS", .intel, "RAPL power-plane 1 (graphics) energy consumed"),
        e(0x0000_0642, "MSR_PP1_POLICY", .intel, "RAPL power-plane 1 balance policy"),
        e(0x0000_0648, "MSR_CONFIG_TDP_NOMINAL", .intel, "Configurable TDP: nominal ratio"),
        e(0x0000_0649, "MSR_CONFIG_TDP_LEVEL_1", .intel, "Configurable TDP level 1"),
        e(0x0000_064a, "MSR_CONFIG_TDP_LEVEL_2", .intel, "Configurable TDP level 2"),
        e(0x0000_064b, "MSR_CONFIG_TDP_CONTROL", .intel, "Configurable TDP level select and lock"),
        e(0x0000_064c, "MSR_TURBO_ACTIVATION_RATIO", .intel, "Ratio above which turbo is activated"),
        e(0x0000_064d, "MSR_PLATFORM_ENERGY_STATUS", .intel, "RAPL platform (PSys) energy consumed"),
        e(0x0000_064e, "MSR_PPERF", .intel, "Productive performance count"),
        e(0x0000_064f, "MSR_CORE_PERF_LIMIT_REASONS", .intel, "Why the core frequency is limited (thermal, power, ...)"),
        e(0x0000_06a0, "MSR_IA32_U_CET", .architectural, "User-mode CET: shadow stack and IBT enables"),
        e(0x0000_06a2, "MSR_IA32_S_CET", .architectural, "Supervisor-mode CET: shadow stack and IBT enables"),
        e(0x0000_06a4, "MSR_IA32_PL0_SSP", .architectural, "Ring-0 shadow-stack pointer"),
        e(0x0000_06a5, "MSR_IA32_PL1_SSP", .architectural, "Ring-1 shadow-stack pointer"),
        e(0x0000_06a6, "MSR_IA32_PL2_SSP", .architectural, "Ring-2 shadow-stack pointer"),
        e(0x0000_06a7, "MSR_IA32_PL3_SSP", .architectural, "Ring-3 shadow-stack pointer"),
        e(0x0000_06a8, "MSR_IA32_INT_SSP_TAB", .architectural, "Interrupt shadow-stack table address"),
        e(0x0000_06e0, "MSR_IA32_TSC_DEADLINE", .architectural, "Local APIC TSC-deadline timer target"),
        e(0x0000_06e1, "MSR_IA32_PKRS", .architectural, "Supervisor protection-key rights"),
        e(0x0000_0770, "MSR_IA32_PM_ENABLE", .architectural, "HWP enable"),
        e(0x0000_0771, "MSR_IA32_HWP_CAPABILITIES", .architectural, "HWP highest/guaranteed/efficient/lowest performance"),
        e(0x0000_0774, "MSR_IA32_HWP_REQUEST", .architectural, "HWP min/max/desired performance and EPP"),
        // 0x800–0x8ff: x2APIC registers, never filtered by KVM (see x2APICRange).
        e(0x0000_0d90, "MSR_IA32_BNDCFGS", .architectural, "MPX supervisor bounds configuration"),
        e(0x0000_0da0, "MSR_IA32_XSS", .architectural, "XSAVES/XRSTORS supervisor state-component bitmap"),
        e(0x4000_0000, "HV_X64_MSR_GUEST_OS_ID", .hyperv, "Hyper-V: guest OS identity, written before the hypercall page"),
        e(0x4000_0001, "HV_X64_MSR_HYPERCALL", .hyperv, "Hyper-V: hypercall page GPA and enable"),
        e(0x4000_0002, "HV_X64_MSR_VP_INDEX", .hyperv, "Hyper-V: virtual processor index (read-only)"),
        e(0x4000_0003, "HV_X64_MSR_RESET", .hyperv, "Hyper-V: write 1 to reset the partition"),
        e(0x4000_0010, "HV_X64_MSR_VP_RUNTIME", .hyperv, "Hyper-V: virtual processor run time in 100 ns units"),
        e(0x4000_0020, "HV_X64_MSR_TIME_REF_COUNT", .hyperv, "Hyper-V: partition reference counter, 100 ns units"),
        e(0x4000_0021, "HV_X64_MSR_REFERENCE_TSC", .hyperv, "Hyper-V: reference TSC page GPA and enable"),
        e(0x4000_0022, "HV_X64_MSR_TSC_FREQUENCY", .hyperv, "Hyper-V: TSC frequency in Hz (read-only)"),
        e(0x4000_0023, "HV_X64_MSR_APIC_FREQUENCY", .hyperv, "Hyper-V: APIC timer frequency in Hz (read-only)"),
        e(0x4000_0070, "HV_X64_MSR_EOI", .hyperv, "Hyper-V: fast APIC EOI"),
        e(0x4000_0071, "HV_X64_MSR_ICR", .hyperv, "Hyper-V: fast APIC ICR"),
        e(0x4000_0072, "HV_X64_MSR_TPR", .hyperv, "Hyper-V: fast APIC TPR"),
        e(0x4000_0073, "HV_X64_MSR_VP_ASSIST_PAGE", .hyperv, "Hyper-V: VP assist page GPA and enable"),
        e(0x4000_0080, "HV_X64_MSR_SCONTROL", .hyperv, "Hyper-V SynIC: control"),
        e(0x4000_0081, "HV_X64_MSR_SVERSION", .hyperv, "Hyper-V SynIC: version (read-only)"),
        e(0x4000_0082, "HV_X64_MSR_SIEFP", .hyperv, "Hyper-V SynIC: event-flags page"),
        e(0x4000_0083, "HV_X64_MSR_SIMP", .hyperv, "Hyper-V SynIC: message page"),
        e(0x4000_0084, "HV_X64_MSR_EOM", .hyperv, "Hyper-V SynIC: end of message"),
        e(0x4000_0090, "HV_X64_MSR_SINT0", .hyperv, "Hyper-V SynIC: synthetic interrupt source 0 (SINT0–15 follow)"),
        e(0x4000_00b0, "HV_X64_MSR_STIMER0_CONFIG", .hyperv, "Hyper-V: synthetic timer 0 configuration"),
        e(0x4000_00b1, "HV_X64_MSR_STIMER0_COUNT", .hyperv, "Hyper-V: synthetic timer 0 expiration"),
        e(0x4000_0100, "HV_X64_MSR_CRASH_P0", .hyperv, "Hyper-V: guest crash parameter 0 (P0–P4 follow)"),
        e(0x4000_0105, "HV_X64_MSR_CRASH_CTL", .hyperv, "Hyper-V: guest crash notification control"),
        e(0x4b56_4d00, "MSR_KVM_WALL_CLOCK_NEW", .kvm, "KVM: wall-clock structure GPA (write triggers an update)"),
        e(0x4b56_4d01, "MSR_KVM_SYSTEM_TIME_NEW", .kvm, "KVM: per-vCPU pvclock area GPA, bit 0 enable"),
        e(0x4b56_4d02, "MSR_KVM_ASYNC_PF_EN", .kvm, "KVM: async page-fault area GPA and enables"),
        e(0x4b56_4d03, "MSR_KVM_STEAL_TIME", .kvm, "KVM: steal-time area GPA, bit 0 enable"),
        e(0x4b56_4d04, "MSR_KVM_PV_EOI_EN", .kvm, "KVM: paravirtual EOI flag GPA, bit 0 enable"),
        e(0x4b56_4d05, "MSR_KVM_POLL_CONTROL", .kvm, "KVM: bit 0 clear disables host-side halt polling"),
        e(0x4b56_4d06, "MSR_KVM_ASYNC_PF_INT", .kvm, "KVM: vector for async page-fault 'page ready' interrupts"),
        e(0x4b56_4d07, "MSR_KVM_ASYNC_PF_ACK", .kvm, "KVM: guest acknowledges a 'page ready' notification"),
        e(0x4b56_4d08, "MSR_KVM_MIGRATION_CONTROL", .kvm, "KVM: guest says it is ready for live migration (SEV)"),
        e(0xc000_0080, "MSR_EFER", .architectural, "Extended features: SCE, LME, LMA, NXE, SVME, FFXSR"),
        e(0xc000_0081, "MSR_STAR", .architectural, "SYSCALL/SYSRET segment selectors and 32-bit target"),
        e(0xc000_0082, "MSR_LSTAR", .architectural, "SYSCALL 64-bit target RIP"),
        e(0xc000_0083, "MSR_CSTAR", .architectural, "SYSCALL compatibility-mode target RIP"),
        e(0xc000_0084, "MSR_SYSCALL_MASK", .architectural, "SYSCALL RFLAGS mask (SDM: IA32_FMASK)"),
        e(0xc000_0100, "MSR_FS_BASE", .architectural, "FS segment base"),
        e(0xc000_0101, "MSR_GS_BASE", .architectural, "GS segment base"),
        e(0xc000_0102, "MSR_KERNEL_GS_BASE", .architectural, "GS base swapped in by SWAPGS"),
        e(0xc000_0103, "MSR_TSC_AUX", .architectural, "Auxiliary TSC value returned by RDTSCP/RDPID"),
        e(0xc000_0104, "MSR_AMD64_TSC_RATIO", .amd, "Guest TSC frequency ratio (SVM TSC scaling)"),
        e(0xc001_0000, "MSR_K7_EVNTSEL0", .amd, "Legacy performance event select 0 (K7 PMU)"),
        e(0xc001_0004, "MSR_K7_PERFCTR0", .amd, "Legacy performance counter 0 (K7 PMU)"),
        e(0xc001_0010, "MSR_AMD64_SYSCFG", .amd, "System configuration: MTRR fixed RdDram/WrDram, SME/SNP enable"),
        e(0xc001_0015, "MSR_K7_HWCR", .amd, "Hardware configuration: SMM lock, TSC frequency select, McStatusWrEn"),
        e(0xc001_001a, "MSR_K8_TOP_MEM1", .amd, "Top of memory below 4 GiB"),
        e(0xc001_001d, "MSR_K8_TOP_MEM2", .amd, "Top of memory above 4 GiB"),
        e(0xc001_001f, "MSR_AMD64_NB_CFG", .amd, "Northbridge configuration (older families)"),
        e(0xc001_0020, "MSR_AMD64_PATCH_LOADER", .amd, "Microcode patch loader, write-only"),
        e(0xc001_0055, "MSR_K8_INT_PENDING_MSG", .amd, "Interrupt-pending message / C1E control (K8-family 10h)"),
        e(0xc001_0061, "MSR_AMD_PSTATE_CUR_LIMIT", .amd, "P-state current limit (read-only)"),
        e(0xc001_0062, "MSR_AMD_PERF_CTL", .amd, "P-state control"),
        e(0xc001_0063, "MSR_AMD_PERF_STATUS", .amd, "P-state status"),
        e(0xc001_0064, "MSR_AMD_PSTATE_DEF_BASE", .amd, "P-state 0 definition (P1–P7 follow)"),
        e(0xc001_0114, "MSR_VM_CR", .amd, "SVM control: SVMDIS, LOCK, R_INIT"),
        e(0xc001_0115, "MSR_VM_IGNNE", .amd, "SVM IGNNE# control"),
        e(0xc001_0117, "MSR_VM_HSAVE_PA", .amd, "SVM host save-area physical address"),
        e(0xc001_011f, "MSR_AMD64_VIRT_SPEC_CTRL", .amd, "Virtualized SSBD control (paravirtual SPEC_CTRL for guests)"),
        e(0xc001_0130, "MSR_AMD64_SEV_ES_GHCB", .amd, "SEV-ES guest-hypervisor communication block GPA / MSR protocol"),
        e(0xc001_0131, "MSR_AMD64_SEV", .amd, "SEV status: SEV, SEV-ES, SNP enabled (read-only)"),
        e(0xc001_0140, "MSR_AMD64_OSVW_ID_LENGTH", .amd, "OS-visible workaround ID length"),
        e(0xc001_0141, "MSR_AMD64_OSVW_STATUS", .amd, "OS-visible workaround status bits"),
        e(0xc001_0200, "MSR_F15H_PERF_CTL0", .amd, "Core performance event select 0 (family 15h+ PMU)"),
        e(0xc001_0201, "MSR_F15H_PERF_CTR0", .amd, "Core performance counter 0 (family 15h+ PMU)"),
        e(0xc001_0299, "MSR_AMD_RAPL_POWER_UNIT", .amd, "RAPL units: power 3:0, energy 12:8, time 19:16"),
        e(0xc001_029a, "MSR_AMD_CORE_ENERGY_STATUS", .amd, "RAPL core energy consumed, 32-bit wrapping counter"),
        e(0xc001_029b, "MSR_AMD_PKG_ENERGY_STATUS", .amd, "RAPL package energy consumed, 32-bit wrapping counter"),
        e(0xc001_02b0, "MSR_AMD_CPPC_CAP1", .amd, "CPPC capabilities: highest/nominal/lowest performance"),
        e(0xc001_02b3, "MSR_AMD_CPPC_REQ", .amd, "CPPC request: min/max/desired performance, EPP"),
        e(0xc001_1020, "MSR_AMD64_LS_CFG", .amd, "Load-store configuration (SSBD on family 15h–17h)"),
        e(0xc001_1029, "MSR_AMD64_DE_CFG", .amd, "Decode configuration (LFENCE serializing bit 1)"),
        e(0xc001_102a, "MSR_AMD64_BU_CFG2", .amd, "Bus-unit configuration 2"),
        e(0xc001_103a, "MSR_AMD64_IBSCTL", .amd, "Instruction-based sampling control (LVT offset)"),
    ]

    /// Other spellings (SDM, APM, older Linux) accepted by `index(named:)`.
    public static let aliases: [String: UInt32] = [
        "IA32_BIOS_SIGN_ID": 0x8b,
        "MSR_AMD64_PATCH_LEVEL": 0x8b,
        "IA32_FEATURE_CONTROL": 0x3a,
        "IA32_APIC_BASE": 0x1b,
        "IA32_PERFEVTSEL0": 0x186,
        "IA32_PERFEVTSEL1": 0x187,
        "IA32_CLOCK_MODULATION": 0x19a,
        "IA32_DEBUGCTL": 0x1d9,
        "IA32_PAT": 0x277,
        "IA32_MTRR_DEF_TYPE": 0x2ff,
        "IA32_FMASK": 0xc000_0084,
        "MSR_MISC_FEATURES_ENABLES": 0x140,
        "MSR_K8_SYSCFG": 0xc001_0010,
    ]

    /// The entry for `index`, found by binary search.
    public static func info(_ index: UInt32) -> MSRInfo? {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].index < index { low = mid + 1 } else { high = mid }
        }
        return low < entries.count && entries[low].index == index ? entries[low] : nil
    }

    /// The catalogue name of `index`, if it has one.
    public static func name(_ index: UInt32) -> String? { info(index)?.name }

    /// A printable name for any index: the catalogue name, an x2APIC note, or hex.
    public static func describe(_ index: UInt32) -> String {
        if let name = name(index) { return "\(name) (\(hex(index)))" }
        if x2APICRange.contains(index) { return "x2APIC register \(hex(index))" }
        return hex(index)
    }

    /// The index for a catalogue name or alias; see the type's doc for the spellings accepted.
    public static func index(named name: String) -> UInt32? { byName[normalized(name)] }

    /// The closest catalogue name to a misspelled one, for "did you mean" hints;
    /// nil when nothing is reasonably close.
    public static func suggestion(for name: String) -> String? {
        let key = normalized(name)
        guard !key.isEmpty else { return nil }
        var best: (distance: Int, name: String)?
        for entry in entries {
            let d = editDistance(key, normalized(entry.name))
            if let current = best, current.distance <= d { continue }
            best = (d, entry.name)
        }
        guard let found = best, found.distance <= max(2, key.count / 3) else { return nil }
        return found.name
    }

    /// `0x` and eight lower-case hex digits, e.g. "0x000000ce".
    public static func hex(_ index: UInt32) -> String { KVMABI.hex(index, digits: 8) }

    // MARK: - Implementation

    private static func e(_ index: UInt32, _ name: String, _ family: MSRFamily, _ summary: String) -> MSRInfo {
        MSRInfo(index: index, name: name, summary: summary, family: family)
    }

    /// Uppercased, with one leading `MSR_` and then one leading `IA32_` removed.
    static func normalized(_ name: String) -> String {
        var key = Substring(name.uppercased())
        if key.hasPrefix("MSR_") { key = key.dropFirst(4) }
        if key.hasPrefix("IA32_") { key = key.dropFirst(5) }
        return String(key)
    }

    /// Normalized name or alias → index. Built once; the table is tested to
    /// have unique normalized names, so first-wins never hides an entry.
    private static let byName: [String: UInt32] = {
        var map: [String: UInt32] = [:]
        for entry in entries where map[normalized(entry.name)] == nil { map[normalized(entry.name)] = entry.index }
        for (alias, index) in aliases where map[normalized(alias)] == nil { map[normalized(alias)] = index }
        return map
    }()

    /// Levenshtein distance over characters (names are short; O(n·m) is fine).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
