// MSRPolicy: the built-in CPU-model profiles — the model-specific MSRs a
// guest of a given CPU model expects, as sorted data tables with the source
// of every value — and how a policy is layered on top of one.
//
// Citations name the SDM table by title (table numbers change between
// editions of Vol. 4) and AMD MSRs by their PPR register name.

/// A named set of rules that makes the VM look like one CPU model.
public struct CPUProfile: Sendable, Hashable {
    public var name: String
    /// "GenuineIntel" or "AuthenticAMD".
    public var vendor: String
    public var summary: String
    /// Sorted by `first`, non-overlapping, each with an `origin`.
    public var rules: [MSRRule]

    public init(name: String, vendor: String, summary: String, rules: [MSRRule]) {
        self.name = name; self.vendor = vendor; self.summary = summary
        self.rules = rules.sorted { $0.first < $1.first }
    }
}

public enum CPUProfiles {
    public static let all: [CPUProfile] = [intelSkylakeServer, intelIcelakeClient, amdZen3]

    public static var names: Set<String> { Set(all.map(\.name)) }

    public static func named(_ name: String) -> CPUProfile? { all.first { $0.name == name } }

    /// The policy layered on the profile: the policy's own rules win MSR by
    /// MSR; a profile rule that a policy rule overlaps is cut around it (kept
    /// where the policy says nothing, dropped where it does). Default, logging
    /// and the rest come from the policy; `profile` records the profile name.
    public static func apply(_ profile: CPUProfile, under policy: MSRPolicy) -> MSRPolicy {
        let own = policy.rules.sorted { $0.first < $1.first }
        var merged = own
        for rule in profile.rules {
            merged += subtract(own, from: rule)
        }
        return MSRPolicy(rules: merged, defaultAction: policy.defaultAction, defaultScope: policy.defaultScope,
                         logDefault: policy.logDefault, profile: profile.name)
    }

    /// The pieces of `rule` that no rule of `cutters` (sorted) covers.
    static func subtract(_ cutters: [MSRRule], from rule: MSRRule) -> [MSRRule] {
        var pieces: [MSRRule] = []
        // `start` is the first index of `rule` not yet accounted for; nil once
        // the whole rule is (UInt32 arithmetic must never step past 0xFFFFFFFF).
        var start: UInt32? = rule.first
        for cut in cutters where cut.last >= rule.first && cut.first <= rule.last {
            guard let from = start else { break }
            if cut.last < from { continue }
            if cut.first > from {
                var piece = rule
                piece.first = from
                piece.last = cut.first - 1
                pieces.append(piece)
            }
            start = cut.last >= rule.last ? nil : cut.last + 1
        }
        if let from = start {
            var piece = rule
            piece.first = from
            pieces.append(piece)
        }
        return pieces
    }

    // MARK: - Building blocks

    /// A per-VM, read-only constant (how hardware reports fixed model data).
    static func constant(_ index: UInt32, _ value: UInt64, _ origin: String) -> MSRRule {
        MSRRule(index, .emulate(Emulation(initialValue: value, scope: .vm, writableMask: 0, writes: .readOnly)),
                origin: origin)
    }

    static func computed(_ index: UInt32, _ provider: ValueProviders.Provider, _ origin: String) -> MSRRule {
        MSRRule(index, .computed(provider: provider.rawValue), origin: origin)
    }

    static func register(_ index: UInt32, _ emulation: Emulation, _ origin: String) -> MSRRule {
        MSRRule(index, .emulate(emulation), origin: origin)
    }

    static let architectural = "Intel SDM Vol. 4, Table 2-2 (IA-32 Architectural MSRs)"
    static let sandyBridge = "Intel SDM Vol. 4, Ch. 2, table of MSRs supported by Sandy Bridge microarchitecture"
    static let sandyBridgeRAPL = "Intel SDM Vol. 4, Ch. 2, Sandy Bridge RAPL MSRs; Vol. 3B §15.10 (RAPL)"
    static let skylakeServer = "Intel SDM Vol. 4, Ch. 2, table of MSRs specific to Intel Xeon Scalable (Skylake server)"
    static let haswellE = "Intel SDM Vol. 4, Ch. 2, table of MSRs in Xeon E5 v3 (Haswell-E), DRAM RAPL"
    static let amdPPR = "AMD PPR for Family 19h Model 01h (pub. 55898)"

    /// MSR_MISC_FEATURE_ENABLES (0x140): bit 0 CPUID faulting, bit 1
    /// ring-3 MONITOR/MWAIT. The profiles advertise neither (MSR_PLATFORM_INFO
    /// bit 31 "CPUID faulting" is 0; only Xeon Phi has ring3mwait), so no bit
    /// is writable and setting any raises #GP — as KVM does for unsupported
    /// bits. Writing 0 succeeds, which is what Linux does at boot.
    static func miscFeatureEnables(_ origin: String) -> MSRRule {
        register(0x140, Emulation(initialValue: 0, scope: .vcpu, writableMask: 0, reservedMask: .max), origin)
    }

    /// MSR_PKG_POWER_LIMIT (0x610) layout: bits 14:0 PL1 (power units),
    /// 15 enable, 16 clamp, 23:17 time window 1, bits 46:32 PL2, 47 enable,
    /// 48 clamp, 55:49 time window 2, 63 lock. Bits 31:24 and 62:56 are
    /// reserved (#GP). Lock: once bit 63 is set further writes are ignored
    /// (the runtime applies that, see `MSRLockBits`).
    static let packagePowerLimitWritable: UInt64 = 0x80FF_FFFF_00FF_FFFF
    static let packagePowerLimitReserved: UInt64 = ~packagePowerLimitWritable

    static func packagePowerLimit(_ value: UInt64, _ origin: String) -> MSRRule {
        register(0x610, Emulation(initialValue: value, scope: .vm, writableMask: packagePowerLimitWritable,
                                  reservedMask: packagePowerLimitReserved), origin)
    }

    // MARK: - Intel Xeon Scalable (Skylake-SP), modelled on a Xeon Gold 6148

    /// 2.4 GHz base (ratio 24), 3.7 GHz single-core turbo, TjMax 100 °C, TDP 150 W.
    public static let intelSkylakeServer = CPUProfile(
        name: "intel-skylake-server", vendor: "GenuineIntel",
        summary: "Intel Xeon Scalable (Skylake-SP), Xeon Gold 6148-like: 2.4 GHz base, TjMax 100 °C, 150 W TDP, package + DRAM RAPL",
        rules: [
            // MSR_CORE_THREAD_COUNT: cores and threads per package from the VM's topology.
            computed(0x35, .coreThreadCount, sandyBridge + " (MSR_CORE_THREAD_COUNT)"),
            // MSR_PLATFORM_INFO: bits 15:8 max non-turbo ratio 24 (2.4 GHz),
            // bits 47:40 max efficiency ratio 10 (1.0 GHz); programmable
            // ratio/TDP/TjOffset bits 28-30 and CPUID faulting bit 31 clear.
            constant(0xCE, 0x0000_0A00_0000_1800, sandyBridge + " (MSR_PLATFORM_INFO)"),
            // MSR_MISC_FEATURE_ENABLES: present, no feature bit writable (see helper).
            miscFeatureEnables(sandyBridge + " (MSR_MISC_FEATURE_ENABLES)"),
            // IA32_THERM_STATUS: valid reading, 50 °C below TjMax.
            computed(0x19C, .thermalStatus, architectural + " (IA32_THERM_STATUS)"),
            // MSR_TEMPERATURE_TARGET: bits 23:16 TjMax = 100 °C, offset 0.
            constant(0x1A2, 0x0064_0000, sandyBridge + " (MSR_TEMPERATURE_TARGET)"),
            // MSR_TURBO_RATIO_LIMIT: on Skylake-SP byte n is the ratio for
            // core group n (groups in 0x1AE): 37,37,35,35,34,34,33,33.
            constant(0x1AD, 0x2121_2222_2323_2525, skylakeServer + " (MSR_TURBO_RATIO_LIMIT)"),
            // MSR_TURBO_RATIO_LIMIT_CORES: group n covers up to byte n active cores.
            constant(0x1AE, 0x1410_0C08_0604_0201, skylakeServer + " (MSR_TURBO_RATIO_LIMIT_CORES)"),
            // IA32_PACKAGE_THERM_STATUS: package readout, 50 °C below TjMax.
            computed(0x1B1, .packageThermalStatus, architectural + " (IA32_PACKAGE_THERM_STATUS)"),
            // MSR_RAPL_POWER_UNIT: 1/8 W, 2^-14 J, 2^-10 s.
            computed(0x606, .raplPowerUnit, sandyBridgeRAPL + " (MSR_RAPL_POWER_UNIT)"),
            // MSR_PKG_POWER_LIMIT: PL1 150 W (0x4B0) enabled+clamped, window 1 s
            // (Y=10); PL2 180 W (0x5A0) enabled+clamped, window 1 TU; unlocked.
            packagePowerLimit(0x0001_85A0_0015_84B0, sandyBridgeRAPL + " (MSR_PKG_POWER_LIMIT)"),
            // MSR_PKG_ENERGY_STATUS: counter at the modelled package power.
            computed(0x611, .raplPackageEnergy, sandyBridgeRAPL + " (MSR_PKG_ENERGY_STATUS)"),
            // MSR_PKG_POWER_INFO: bits 14:0 TDP 150 W, 30:16 min 70 W (0x230),
            // 46:32 max 200 W (0x640), 53:48 max window 0 (not reported).
            constant(0x614, 0x0000_0640_0230_04B0, sandyBridgeRAPL + " (MSR_PKG_POWER_INFO)"),
            // MSR_DRAM_ENERGY_STATUS: server DRAM domain, fixed 15.3 µJ unit.
            computed(0x619, .raplDRAMEnergy, haswellE + " (MSR_DRAM_ENERGY_STATUS)"),
        ])

    // MARK: - Intel Core (Ice Lake client), modelled on a Core i7-1065G7

    /// 1.3 GHz base (ratio 13), 3.9 GHz single-core turbo, TjMax 100 °C, TDP 15 W.
    public static let intelIcelakeClient = CPUProfile(
        name: "intel-icelake-client", vendor: "GenuineIntel",
        summary: "Intel Core 10th gen (Ice Lake client), i7-1065G7-like: 1.3 GHz base, TjMax 100 °C, 15 W TDP, package + PP0 RAPL",
        rules: [
            // MSR_CORE_THREAD_COUNT: from the VM's topology.
            computed(0x35, .coreThreadCount, sandyBridge + " (MSR_CORE_THREAD_COUNT)"),
            // MSR_PLATFORM_INFO: max non-turbo ratio 13 (1.3 GHz), max
            // efficiency ratio 4 (400 MHz); no programmable or faulting bits.
            constant(0xCE, 0x0000_0400_0000_0D00, sandyBridge + " (MSR_PLATFORM_INFO)"),
            // MSR_MISC_FEATURE_ENABLES: present, no feature bit writable.
            miscFeatureEnables(sandyBridge + " (MSR_MISC_FEATURE_ENABLES)"),
            // IA32_THERM_STATUS: valid reading, 50 °C below TjMax.
            computed(0x19C, .thermalStatus, architectural + " (IA32_THERM_STATUS)"),
            // MSR_TEMPERATURE_TARGET: TjMax 100 °C.
            constant(0x1A2, 0x0064_0000, sandyBridge + " (MSR_TEMPERATURE_TARGET)"),
            // MSR_TURBO_RATIO_LIMIT: byte n = ratio with n+1 active cores:
            // 39, 38, 35, 35 (a 4-core part; upper groups repeat the last).
            constant(0x1AD, 0x2323_2323_2323_2627, sandyBridge + " (MSR_TURBO_RATIO_LIMIT)"),
            // IA32_PACKAGE_THERM_STATUS.
            computed(0x1B1, .packageThermalStatus, architectural + " (IA32_PACKAGE_THERM_STATUS)"),
            // MSR_RAPL_POWER_UNIT: 1/8 W, 2^-14 J, 2^-10 s.
            computed(0x606, .raplPowerUnit, sandyBridgeRAPL + " (MSR_RAPL_POWER_UNIT)"),
            // MSR_PKG_POWER_LIMIT: PL1 15 W (0x78) enabled+clamped, window 28 s
            // (Y=14, Z=3); PL2 25 W (0xC8) enabled+clamped; unlocked.
            packagePowerLimit(0x0001_80C8_00DD_8078, sandyBridgeRAPL + " (MSR_PKG_POWER_LIMIT)"),
            // MSR_PKG_ENERGY_STATUS.
            computed(0x611, .raplPackageEnergy, sandyBridgeRAPL + " (MSR_PKG_ENERGY_STATUS)"),
            // MSR_PKG_POWER_INFO: TDP 15 W; min/max/window not reported (0),
            // as on client parts.
            constant(0x614, 0x78, sandyBridgeRAPL + " (MSR_PKG_POWER_INFO)"),
            // MSR_PP0_ENERGY_STATUS: the cores' domain.
            computed(0x639, .raplPP0Energy, sandyBridgeRAPL + " (MSR_PP0_ENERGY_STATUS)"),
        ])

    // MARK: - AMD Zen 3 (Family 19h Model 01h), modelled on an EPYC 7003

    public static let amdZen3 = CPUProfile(
        name: "amd-zen3", vendor: "AuthenticAMD",
        summary: "AMD Zen 3 (Family 19h), EPYC 7003-like: HWCR, P-state 0 at 3.7 GHz, core + package RAPL",
        rules: [
            // HWCR: bit 24 TscFreqSel set (TSC at P0 frequency). Writable:
            // bit 18 McStatusWrEn. Bits 3, 6, 8, 24 are accepted and keep their
            // value; any other bit raises #GP — the same set KVM accepts
            // (kvm_set_msr_common, MSR_K7_HWCR).
            register(0xC001_0015, Emulation(initialValue: 0x0100_0000, scope: .vcpu, writableMask: 1 << 18,
                                            reservedMask: ~UInt64(0x0104_0148)),  // ~(bits 3, 6, 8, 18, 24)
                     amdPPR + ", MSRC001_0015 (HWCR)"),
            // PStateCurLim: bits 6:4 PstateMaxVal 0, bits 2:0 CurPstateLimit 0.
            constant(0xC001_0061, 0, amdPPR + ", MSRC001_0061 (PStateCurLim)"),
            // PStateStat: bits 2:0 CurPstate = 0 (the model always runs at P0).
            constant(0xC001_0063, 0, amdPPR + ", MSRC001_0063 (PStateStat)"),
            // PStateDef0: bit 63 PstateEn, CpuFid 0x94, CpuDfsId 8
            // (freq = FID/DFS × 200 MHz = 3.7 GHz), CpuVid 0x48, IddValue 0.
            constant(0xC001_0064, 0x8000_0000_0012_0894, amdPPR + ", MSRC001_0064 (PStateDef0)"),
            // RAPL_PWR_UNIT: 1/8 W, 2^-16 J, 2^-10 s.
            computed(0xC001_0299, .amdRAPLPowerUnit, amdPPR + ", MSRC001_0299 (RAPL_PWR_UNIT)"),
            // CORE_ENERGY_STAT: per-core counter.
            computed(0xC001_029A, .amdCoreEnergy, amdPPR + ", MSRC001_029A (CORE_ENERGY_STAT)"),
            // PKG_ENERGY_STAT: package counter.
            computed(0xC001_029B, .amdPackageEnergy, amdPPR + ", MSRC001_029B (PKG_ENERGY_STAT)"),
        ])
}
