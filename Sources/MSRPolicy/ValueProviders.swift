// MSRPolicy: the named built-in value providers behind `computed` MSRs
// (topology, RAPL units and energy counters, thermal readouts). Each provider
// is a pure function of the vCPU topology and the time since the VM started,
// so a value is deterministic and reproducible in tests and after a restore.

/// What a provider may look at: the asking vCPU, the VM's topology and the clock.
public struct ProviderContext: Sendable, Hashable {
    public var vcpu: Int
    public var vcpuCount: Int
    public var coresPerPackage: Int
    public var threadsPerCore: Int
    /// Nanoseconds since the VM started (the runtime's clock).
    public var nanosecondsSinceStart: UInt64

    public init(vcpu: Int, vcpuCount: Int, coresPerPackage: Int, threadsPerCore: Int, nanosecondsSinceStart: UInt64) {
        self.vcpu = vcpu; self.vcpuCount = vcpuCount; self.coresPerPackage = coresPerPackage
        self.threadsPerCore = threadsPerCore; self.nanosecondsSinceStart = nanosecondsSinceStart
    }
}

/// The built-in providers, by the name a policy's `computed` rule gives.
///
/// Power model (documented because guests such as `turbostat` or the Linux
/// `intel_rapl` driver turn these counters into watts): every vCPU is a core
/// drawing a constant `corePowerMilliwatts`; the package adds a constant
/// `uncorePowerMilliwatts`; DRAM draws a constant `dramPowerMilliwatts`.
/// Counters start at 0 when the VM starts and advance linearly with time:
///
///     count(t) = floor(t_ns × P_mW × 2^ESU / 10^12)  mod 2^32
///
/// which is what real hardware does (32-bit counters that wrap; software
/// samples them often enough to see at most one wrap).
public enum ValueProviders {
    /// Modelled power of one busy core (one vCPU), in milliwatts.
    public static let corePowerMilliwatts: UInt64 = 2_500
    /// Modelled uncore power (caches, memory controller, I/O), in milliwatts.
    public static let uncorePowerMilliwatts: UInt64 = 5_000
    /// Modelled DRAM power, in milliwatts.
    public static let dramPowerMilliwatts: UInt64 = 1_500
    /// Intel energy status unit: energy counts are in 2^-14 J (≈ 61 µJ).
    public static let intelEnergyStatusUnit: UInt64 = 14
    /// DRAM energy unit on Intel server parts: fixed 2^-16 J (15.3 µJ), not
    /// MSR_RAPL_POWER_UNIT's ESU (SDM Vol. 4, Xeon E5 v3 / Scalable DRAM RAPL
    /// notes; Linux `intel_rapl` hard-codes it for these models too).
    public static let intelDRAMEnergyUnit: UInt64 = 16
    /// AMD energy status unit: 2^-16 J (≈ 15.3 µJ), as Zen parts report.
    public static let amdEnergyStatusUnit: UInt64 = 16
    /// The modelled die temperature sits this far below TjMax, in °C
    /// (digital readouts count down to TjMax, so this is independent of TjMax).
    public static let degreesBelowTjMax: UInt64 = 50

    /// One provider; the runtime resolves names to these once, at policy load,
    /// so the per-exit path never hashes a String.
    public enum Provider: String, Sendable, Hashable, CaseIterable {
        /// MSR_CORE_THREAD_COUNT (0x35).
        case coreThreadCount = "core-thread-count"
        /// MSR_RAPL_POWER_UNIT (0x606).
        case raplPowerUnit = "rapl-power-unit"
        /// MSR_PKG_ENERGY_STATUS (0x611).
        case raplPackageEnergy = "rapl-package-energy"
        /// MSR_PP0_ENERGY_STATUS (0x639).
        case raplPP0Energy = "rapl-pp0-energy"
        /// MSR_DRAM_ENERGY_STATUS (0x619).
        case raplDRAMEnergy = "rapl-dram-energy"
        /// AMD RAPL_PWR_UNIT (0xC0010299).
        case amdRAPLPowerUnit = "amd-rapl-power-unit"
        /// AMD CORE_ENERGY_STAT (0xC001029A).
        case amdCoreEnergy = "amd-core-energy"
        /// AMD PKG_ENERGY_STAT (0xC001029B).
        case amdPackageEnergy = "amd-package-energy"
        /// IA32_THERM_STATUS (0x19C).
        case thermalStatus = "thermal-status"
        /// IA32_PACKAGE_THERM_STATUS (0x1B1).
        case packageThermalStatus = "package-thermal-status"

        public func read(context c: ProviderContext) -> UInt64 {
            switch self {
            case .coreThreadCount:
                // SDM Vol. 4, MSR_CORE_THREAD_COUNT: bits 15:0 THREAD_COUNT
                // (logical processors in the package), bits 31:16 CORE_COUNT.
                // Each field saturates at 0xFFFF instead of wrapping.
                let cores = ValueProviders.clamp16(c.coresPerPackage)
                let threads = min(cores * ValueProviders.clamp16(c.threadsPerCore), 0xFFFF)
                return cores << 16 | threads
            case .raplPowerUnit:
                // SDM Vol. 4, MSR_RAPL_POWER_UNIT: bits 3:0 power units
                // (1/2^PU W, PU = 3 → 1/8 W), bits 12:8 energy status units
                // (1/2^ESU J, ESU = 14), bits 19:16 time units (1/2^TU s,
                // TU = 10 → ≈ 977 µs). Others reserved. 0x000A0E03.
                return 10 << 16 | ValueProviders.intelEnergyStatusUnit << 8 | 3
            case .raplPackageEnergy:
                return ValueProviders.counter(
                    nanoseconds: c.nanosecondsSinceStart,
                    milliwatts: ValueProviders.packagePowerMilliwatts(vcpuCount: c.vcpuCount),
                    unitShift: ValueProviders.intelEnergyStatusUnit)
            case .raplPP0Energy:
                return ValueProviders.counter(
                    nanoseconds: c.nanosecondsSinceStart,
                    milliwatts: ValueProviders.coresPowerMilliwatts(vcpuCount: c.vcpuCount),
                    unitShift: ValueProviders.intelEnergyStatusUnit)
            case .raplDRAMEnergy:
                return ValueProviders.counter(
                    nanoseconds: c.nanosecondsSinceStart, milliwatts: ValueProviders.dramPowerMilliwatts,
                    unitShift: ValueProviders.intelDRAMEnergyUnit)
            case .amdRAPLPowerUnit:
                // AMD PPR Family 19h, MSRC001_0299 RAPL_PWR_UNIT: bits 3:0
                // PowerUnit, bits 12:8 EnergyStatusUnit, bits 19:16 TimeUnit,
                // same encoding as Intel's; Zen reports 0x000A1003.
                return 10 << 16 | ValueProviders.amdEnergyStatusUnit << 8 | 3
            case .amdCoreEnergy:
                // MSRC001_029A CORE_ENERGY_STAT: per core; each vCPU is one
                // core here, so every vCPU reads one core's share.
                return ValueProviders.counter(
                    nanoseconds: c.nanosecondsSinceStart, milliwatts: ValueProviders.corePowerMilliwatts,
                    unitShift: ValueProviders.amdEnergyStatusUnit)
            case .amdPackageEnergy:
                return ValueProviders.counter(
                    nanoseconds: c.nanosecondsSinceStart,
                    milliwatts: ValueProviders.packagePowerMilliwatts(vcpuCount: c.vcpuCount),
                    unitShift: ValueProviders.amdEnergyStatusUnit)
            case .thermalStatus:
                // SDM Vol. 4, Table 2-2, IA32_THERM_STATUS: bit 31 reading
                // valid, bits 30:27 resolution in °C (1), bits 22:16 digital
                // readout (°C below TjMax). Status/log bits 15:0 stay 0: no
                // throttling ever happened in the model.
                return 1 << 31 | 1 << 27 | ValueProviders.degreesBelowTjMax << 16
            case .packageThermalStatus:
                // SDM Vol. 4, Table 2-2, IA32_PACKAGE_THERM_STATUS: bits 22:16
                // package digital readout; this register has no valid or
                // resolution field.
                return ValueProviders.degreesBelowTjMax << 16
            }
        }
    }

    /// Every provider name a `computed` rule may use.
    public static let names: Set<String> = Set(Provider.allCases.map(\.rawValue))

    /// The provider's value, or nil for an unknown name.
    public static func read(_ name: String, context: ProviderContext) -> UInt64? {
        Provider(rawValue: name)?.read(context: context)
    }

    /// Modelled package power: all cores plus the uncore.
    public static func packagePowerMilliwatts(vcpuCount: Int) -> UInt64 {
        coresPowerMilliwatts(vcpuCount: vcpuCount) + uncorePowerMilliwatts
    }

    /// Modelled power of all cores (RAPL's PP0 domain).
    public static func coresPowerMilliwatts(vcpuCount: Int) -> UInt64 {
        // Topologies are validated elsewhere; clamp so no input can overflow.
        UInt64(min(max(vcpuCount, 1), 1 << 20)) * corePowerMilliwatts
    }

    /// A 32-bit energy counter: floor(ns × mW × 2^unitShift / 10^12) mod 2^32.
    /// The 128-bit product keeps it exact for any time; the long division
    /// keeps the low 64 bits of the quotient even when it would overflow.
    public static func counter(nanoseconds: UInt64, milliwatts: UInt64, unitShift: UInt64) -> UInt64 {
        let scaled = milliwatts << min(unitShift, 32)
        let product = nanoseconds.multipliedFullWidth(by: scaled)
        let divisor: UInt64 = 1_000_000_000_000
        let remainderHigh = product.high % divisor
        let quotientLow = divisor.dividingFullWidth((high: remainderHigh, low: product.low)).quotient
        return quotientLow & 0xFFFF_FFFF
    }

    static func clamp16(_ value: Int) -> UInt64 { UInt64(min(max(value, 1), 0xFFFF)) }
}
