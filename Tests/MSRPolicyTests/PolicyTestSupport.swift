// Shared by the MSRPolicy tests: random-but-valid policies, drawn from the
// shared seeded generator so property tests are deterministic.

import KVMABI
import SeededRandom
@testable import MSRPolicy

enum RandomPolicies {
    static let providers = ["rapl-package-energy", "rapl-core-energy", "tsc-frequency"]

    /// Where rules cluster, so packing has something to pack.
    static let areas: [UInt32] = [0x0, 0x10, 0x1a0, 0x600, 0x2000, 0x4000_0000, 0x4b56_4d00, 0xc000_0080, 0xc001_0000]

    /// A random 64-bit value that is often small, sometimes ≥ 2^63.
    static func value(_ g: inout SeededGenerator) -> UInt64 {
        switch Int.random(in: 0..<4, using: &g) {
        case 0: return 0
        case 1: return UInt64.random(in: 0...0xffff, using: &g)
        case 2: return UInt64.random(in: 0...UInt64.max, using: &g)
        default: return UInt64.max
        }
    }

    static func action(_ g: inout SeededGenerator) -> MSRAction {
        switch Int.random(in: 0..<6, using: &g) {
        case 0: return .kernel
        case 1:
            let reserved = Bool.random(using: &g) ? value(&g) : 0
            let initial = value(&g) & ~reserved  // a valid initial value never sets reserved bits
            return .emulate(Emulation(initialValue: initial,
                                      scope: EmulationScope.allCases.randomElement(using: &g) ?? .vcpu,
                                      writableMask: Bool.random(using: &g) ? .max : value(&g),
                                      reservedMask: reserved,
                                      writes: WriteBehaviour.allCases.randomElement(using: &g) ?? .readWrite))
        case 2: return .ignore(readValue: value(&g))
        case 3: return .deny
        case 4: return .computed(provider: providers.randomElement(using: &g) ?? "p")
        default: return .host
        }
    }

    /// Non-overlapping rules, no user-space rule on x2APIC MSRs, no log on kernel rules.
    static func rules(_ g: inout SeededGenerator, maxRules: Int) -> [MSRRule] {
        var candidates: [MSRRule] = []
        for _ in 0..<Int.random(in: 0...maxRules, using: &g) {
            let first: UInt32 = Int.random(in: 0..<3, using: &g) == 0
                ? UInt32.random(in: 0...UInt32.max, using: &g)
                : (areas.randomElement(using: &g) ?? 0) &+ UInt32.random(in: 0..<0x4000, using: &g)
            let length: UInt32
            switch Int.random(in: 0..<10, using: &g) {
            case 0..<5: length = 1
            case 5..<8: length = UInt32.random(in: 1...64, using: &g)
            case 8: length = UInt32.random(in: 1...20_000, using: &g)
            default: length = UInt32.random(in: 1...120_000, using: &g)
            }
            let last = first > UInt32.max - (length - 1) ? UInt32.max : first + (length - 1)
            let action = action(&g)
            let log = !action.isUserSpace ? false : Bool.random(using: &g)
            candidates.append(MSRRule(first: first, last: last, action: action, log: log))
        }
        candidates.sort { $0.first < $1.first }
        var kept: [MSRRule] = []
        let x2 = MSRCatalogue.x2APICRange
        for var rule in candidates {
            if let previous = kept.last, rule.first <= previous.last { continue }
            if rule.action.isUserSpace && rule.first <= x2.upperBound && rule.last >= x2.lowerBound {
                rule.action = .kernel; rule.log = false
            }
            kept.append(rule)
        }
        return kept
    }

    static func policy(_ g: inout SeededGenerator, maxRules: Int = 24) -> MSRPolicy {
        let scope = DefaultScope.allCases.randomElement(using: &g) ?? .unknown
        var action = DefaultAction.allCases.randomElement(using: &g) ?? .gp
        if scope == .all && action == .kernel { action = .gp }
        return MSRPolicy(rules: rules(&g, maxRules: maxRules), defaultAction: action,
                         defaultScope: scope, logDefault: Bool.random(using: &g),
                         profile: Bool.random(using: &g) ? nil : ["intel-skylake-server", "amd \"zen\" 4\\x"].randomElement(using: &g))
    }
}

extension MSRPolicy {
    /// The same policy without source locations or origins (what a round trip keeps).
    func strippingLocations() -> MSRPolicy {
        MSRPolicy(rules: rules.map { MSRRule(first: $0.first, last: $0.last, action: $0.action, log: $0.log) },
                  defaultAction: defaultAction, defaultScope: defaultScope, logDefault: logDefault, profile: profile)
    }
}
