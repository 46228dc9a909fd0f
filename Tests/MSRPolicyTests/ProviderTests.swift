// ProviderTests.swift — the built-in value providers: topology encoding, RAPL
// units, energy counters (exact arithmetic, rate, wrap), thermal readouts.

import Testing
@testable import MSRPolicy

@Suite struct ProviderTests {
    func context(vcpus: Int = 2, cores: Int = 2, threads: Int = 1, ns: UInt64 = 0) -> ProviderContext {
        ProviderContext(vcpu: 0, vcpuCount: vcpus, coresPerPackage: cores, threadsPerCore: threads,
                        nanosecondsSinceStart: ns)
    }

    @Test func namesAreTheProviders() {
        #expect(ValueProviders.names.count == ValueProviders.Provider.allCases.count)
        for name in ["core-thread-count", "rapl-power-unit", "rapl-package-energy", "rapl-pp0-energy",
                     "rapl-dram-energy", "amd-rapl-power-unit", "amd-core-energy", "amd-package-energy",
                     "thermal-status", "package-thermal-status"] {
            #expect(ValueProviders.names.contains(name), "\(name)")
            #expect(ValueProviders.read(name, context: context()) != nil)
        }
        #expect(ValueProviders.read("no-such-provider", context: context()) == nil)
        #expect(ValueProviders.read("", context: context()) == nil)
    }

    @Test(arguments: [
        (4, 2, UInt64(0x0004_0008)),
        (1, 1, 0x0001_0001),
        (8, 1, 0x0008_0008),
        (0, 0, 0x0001_0001),          // nonsense topology clamps to one
        (70_000, 2, 0xFFFF_FFFF),     // saturates instead of wrapping
    ])
    func coreThreadCountEncodesTopology(cores: Int, threads: Int, expected: UInt64) {
        #expect(ValueProviders.read("core-thread-count", context: context(cores: cores, threads: threads)) == expected)
    }

    @Test func powerUnits() {
        let intel = ValueProviders.read("rapl-power-unit", context: context())
        #expect(intel == 0x000A_0E03)
        #expect(intel.map { $0 & 0xF } == 3)            // 1/8 W
        #expect(intel.map { ($0 >> 8) & 0x1F } == 14)   // 2^-14 J
        #expect(intel.map { ($0 >> 16) & 0xF } == 10)   // 2^-10 s
        #expect(ValueProviders.read("amd-rapl-power-unit", context: context()) == 0x000A_1003)
    }

    @Test func thermalReadouts() {
        // valid (31) | resolution 1 °C (30:27) | 50 °C below TjMax (22:16)
        #expect(ValueProviders.read("thermal-status", context: context()) == 0x8832_0000)
        #expect(ValueProviders.read("package-thermal-status", context: context()) == 0x0032_0000)
    }

    @Test func packageEnergyExactValues() {
        // 2 vCPUs: 2 × 2.5 W + 5 W uncore = 10 W = 10 × 2^14 counts per second.
        let perSecond: UInt64 = 10 * 16_384
        let read = { (ns: UInt64) in ValueProviders.read("rapl-package-energy", context: self.context(ns: ns)) }
        #expect(read(0) == 0)
        #expect(read(1) == 0)
        #expect(read(1_000_000_000) == perSecond)
        #expect(read(1_500_000_000) == perSecond * 3 / 2)
        // One count is 10^12 / (10_000 × 16_384) ns = 6103.515625 ns.
        #expect(read(6_103) == 0)
        #expect(read(6_104) == 1)
        // The counter reaches 2^32 at exactly 26_214.4 s and wraps to 0.
        #expect(read(26_214_400_000_000 - 1) == 0xFFFF_FFFF)
        #expect(read(26_214_400_000_000) == 0)
        #expect(read(26_215_000_000_000) == 26_215 * perSecond - (1 << 32))
        // Any time, even the end of UInt64, is a value, not a trap.
        #expect(read(.max).map { $0 <= 0xFFFF_FFFF } == true)
    }

    @Test func domainsAdvanceAtTheirModelledRates() {
        func perSecond(_ name: String, vcpus: Int) -> UInt64? {
            ValueProviders.read(name, context: context(vcpus: vcpus, ns: 1_000_000_000))
        }
        #expect(perSecond("rapl-package-energy", vcpus: 4) == 15 * 16_384)   // 4 × 2.5 + 5 W
        #expect(perSecond("rapl-pp0-energy", vcpus: 4) == 10 * 16_384)       // cores only
        #expect(perSecond("rapl-dram-energy", vcpus: 4) == 3 * 65_536 / 2)   // 1.5 W, 2^-16 J
        #expect(perSecond("amd-core-energy", vcpus: 4) == 5 * 65_536 / 2)    // one core, 2^-16 J
        #expect(perSecond("amd-package-energy", vcpus: 2) == 10 * 65_536)
    }

    @Test func countersAreMonotonicModulo32Bits() {
        // Sample every 7 s for 20 hours of guest time: every step advances
        // by the modelled amount (±1 for flooring), wraps included.
        for name in ["rapl-package-energy", "rapl-pp0-energy", "rapl-dram-energy", "amd-core-energy", "amd-package-energy"] {
            let step: UInt64 = 7_000_000_000
            let rate = Double(ValueProviders.read(name, context: context(ns: 1_000_000_000_000)) ?? 0) / 1_000
            var previous = ValueProviders.read(name, context: context(ns: 0)) ?? 0
            var wraps = 0
            var ns: UInt64 = 0
            while ns < 72_000 * 1_000_000_000 {
                ns += step
                let value = ValueProviders.read(name, context: context(ns: ns)) ?? 0
                let delta = (value &- previous) & 0xFFFF_FFFF
                if value < previous { wraps += 1 }
                #expect(abs(Double(delta) - rate * 7) <= 1.5, "\(name) at \(ns) ns")
                previous = value
            }
            // Every domain wraps within 20 hours at these rates (the slowest,
            // DRAM at 98_304/s, every ~12 hours).
            #expect(wraps >= 1, "\(name)")
        }
    }

    @Test func counterArithmeticIsExactForHugeProducts() {
        // ns × 10 W × 2^14 overflows 64 bits (and so does the quotient for
        // the largest times). Reference by another route: with ns = a·10^12 + b,
        // floor(ns·k/10^12) = a·k + floor(b·16_384/10^8), k = 10^4·2^14,
        // and mod 2^32 wrapping arithmetic is exact.
        for ns: UInt64 in [.max, .max - 12_345, 1 << 63, 123_456_789_012_345_678, 999_999_999_999] {
            let a = ns / 1_000_000_000_000, b = ns % 1_000_000_000_000
            let reference = (a &* 163_840_000 &+ b * 16_384 / 100_000_000) & 0xFFFF_FFFF
            #expect(ValueProviders.counter(nanoseconds: ns, milliwatts: 10_000, unitShift: 14) == reference, "\(ns)")
        }
    }
}
