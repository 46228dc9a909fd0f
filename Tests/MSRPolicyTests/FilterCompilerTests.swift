// Tests for FilterCompiler: exact packing cases, errors that say why, and a
// property test that the compiled filter answers like the policy everywhere probed.

import KVMABI
import SeededRandom
import Testing
@testable import MSRPolicy

@Suite struct FilterCompilerTests {
    private func denyAll(_ rules: [MSRRule], scope: DefaultScope = .unknown, action: DefaultAction = .gp) -> MSRPolicy {
        MSRPolicy(rules: rules, defaultAction: action, defaultScope: scope)
    }

    @Test func oneFullWindow() throws {
        // MSRs 0x0–0x2fff given to KVM under default deny: one range (x2APIC inside needs no bits but costs nothing).
        let filter = try FilterCompiler.compile(denyAll([MSRRule(first: 0, last: 0x2fff, action: .kernel)], scope: .all))
        #expect(!filter.defaultAllow)
        #expect(filter.ranges.count == 1)
        #expect(filter.ranges[0].base == 0 && filter.ranges[0].count == 0x3000)
        #expect(filter.ranges[0].bitmap.count == 0x600)
        #expect(filter.ranges[0].flags == 3)
        #expect(filter.allows(0) && filter.allows(0x2fff) && !filter.allows(0x3000))
        // The same width denied under default allow, away from the x2APIC MSRs.
        let deny = try FilterCompiler.compile(denyAll([MSRRule(first: 0x1_0000, last: 0x1_2fff, action: .deny)]))
        #expect(deny.defaultAllow && deny.ranges.count == 1 && deny.ranges[0].count == 0x3000)
        #expect(deny.allows(0xffff) && !deny.allows(0x1_0000) && !deny.allows(0x1_2fff) && deny.allows(0x1_3000))
        #expect(deny.allows(0x800) && deny.allows(0x8ff))  // x2APIC: never filtered
        #expect(deny.ranges[0].bitmap.allSatisfy { $0 == 0 })
    }

    @Test func twoMSRsOneWindowApart() throws {
        let filter = try FilterCompiler.compile(denyAll([MSRRule(0x10, .deny), MSRRule(0x3010, .deny)]))
        #expect(filter.ranges.map(\.base) == [0x10, 0x3010])
        #expect(filter.ranges.map(\.count) == [1, 1])
        #expect(filter.ranges.map(\.bitmap) == [[0, 0, 0, 0, 0, 0, 0, 0] as [UInt8], [0, 0, 0, 0, 0, 0, 0, 0]])
        // One less apart: one trimmed range, bits between take the default.
        let near = try FilterCompiler.compile(denyAll([MSRRule(0x10, .deny), MSRRule(0x300f, .emulate(Emulation()))]))
        #expect(near.ranges.count == 1 && near.ranges[0].base == 0x10 && near.ranges[0].count == 0x3000)
        #expect(!near.allows(0x10) && near.allows(0x11) && near.allows(0x300e) && !near.allows(0x300f))
    }

    @Test func seventeenFarApartMSRsDoNotFit() {
        let indices = (0..<17).map { UInt32($0) * 0x100_0000 + 0x42 }
        let policy = denyAll(indices.map { MSRRule($0, .deny) })
        #expect(throws: FilterCompileError.tooManyRanges(needed: 17, firstUnfitted: indices[16], scope: .unknown, alternative: 1)) {
            try FilterCompiler.compile(policy)
        }
        do {
            _ = try FilterCompiler.compile(policy)
        } catch {
            #expect(error.description.contains("needs 17 MSR filter ranges but KVM takes at most 16"))
            #expect(error.description.contains("MSR 0x10000042 is the first that does not fit"))
            #expect(error.description.contains("with applies_to = \"all\""))
        }
        // Sixteen fit.
        #expect(throws: Never.self) { try FilterCompiler.compile(denyAll(Array(policy.rules.prefix(16)))) }
    }

    @Test func hugeDenyRangesSpanSeveralWindows() throws {
        let filter = try FilterCompiler.compile(denyAll([MSRRule(first: 0x10_0000, last: 0x10_0000 + 99_999, action: .deny)]))
        #expect(filter.ranges.count == 9)  // ceil(100_000 / 12_288)
        #expect(filter.ranges.dropLast().allSatisfy { $0.count == 12_288 })
        let lastCount = filter.ranges.last?.count ?? 0
        #expect(lastCount == 100_000 - 8 * 12_288, "\(filter.ranges.map { ($0.base, $0.count) })")
        #expect(!filter.allows(0x10_0000) && !filter.allows(0x10_0000 + 99_999) && filter.allows(0x10_0000 + 100_000))
        // The whole 32-bit space needs far too many windows, and says so without trying them all.
        let everything = denyAll([MSRRule(first: 0, last: 0x7ff, action: .deny), MSRRule(first: 0x900, last: .max, action: .deny)])
        #expect(throws: FilterCompileError.self) { try FilterCompiler.compile(everything) }
        do { _ = try FilterCompiler.compile(everything) } catch {
            if case .tooManyRanges(let needed, _, _, _) = error { #expect(needed == 349_526) } else { Issue.record("\(error)") }
        }
    }

    @Test func defaultDenyCarriesKernelRulesAsAllowBits() throws {
        let policy = MSRPolicy(rules: [MSRRule(0x10, .kernel), MSRRule(0x1b, .kernel), MSRRule(0x3a, .deny),
                                       MSRRule(first: 0xc000_0080, last: 0xc000_0084, action: .kernel)],
                               defaultAction: .gp, defaultScope: .all)
        let filter = try FilterCompiler.compile(policy)
        #expect(!filter.defaultAllow && filter.filter.flags == 1)
        #expect(filter.exitReasons == .all)
        #expect(filter.ranges.map(\.base) == [0x10, 0xc000_0080])
        #expect(filter.ranges.map(\.count) == [0x1b - 0x10 + 1, 5])
        #expect(filter.allows(0x10) && filter.allows(0x1b) && !filter.allows(0x11) && !filter.allows(0x3a))
        #expect(filter.allows(0xc000_0082) && !filter.allows(0xc000_0085) && filter.allows(0x830))
    }

    @Test func defaultDenyWithoutKernelRulesStillHasARange() throws {
        // KVM rejects DEFAULT_DENY with no ranges (EINVAL).
        let filter = try FilterCompiler.compile(MSRPolicy(rules: [MSRRule(0x10, .deny)], defaultAction: .ignore, defaultScope: .all))
        #expect(filter.ranges == [MSRFilterRange(base: 0, count: 1, bitmap: [0, 0, 0, 0, 0, 0, 0, 0])])
        #expect(!filter.allows(0) && !filter.allows(0x10) && filter.allows(0x800))
    }

    @Test func everythingExitsIsAcceptableToKVM() {
        let filter = TraceFilterPlan().filter
        #expect(!filter.defaultAllow && !filter.ranges.isEmpty && filter.exitReasons == .all)
        #expect(!filter.allows(0) && !filter.allows(0x10) && filter.allows(0x830) && !filter.allows(.max))
    }

    @Test func exitReasons() throws {
        func reasons(_ action: DefaultAction, log: Bool) throws -> MSRExitReasons {
            try FilterCompiler.compile(MSRPolicy(rules: [], defaultAction: action, defaultScope: .unknown, logDefault: log)).exitReasons
        }
        #expect(try reasons(.kernel, log: false) == .filter)
        #expect(try reasons(.kernel, log: true) == .all)
        #expect(try reasons(.gp, log: false) == .all)
        #expect(try reasons(.ignore, log: false) == .all)
        #expect(try FilterCompiler.compile(MSRPolicy(rules: [])).ranges.isEmpty)
    }

    @Test func invalidPoliciesAreRejected() {
        let x2 = MSRRule(first: 0x7f0, last: 0x810, action: .deny)
        #expect(throws: FilterCompileError.x2APICRule(x2)) { try FilterCompiler.compile(denyAll([x2])) }
        #expect(throws: Never.self) {
            try FilterCompiler.compile(denyAll([MSRRule(first: 0x800, last: 0x8ff, action: .kernel)], scope: .all))
        }
        #expect(throws: FilterCompileError.kernelDefaultForAll) {
            try FilterCompiler.compile(MSRPolicy(rules: [], defaultAction: .kernel, defaultScope: .all))
        }
        let a = MSRRule(first: 1, last: 5, action: .deny), b = MSRRule(3, .kernel)
        #expect(throws: FilterCompileError.overlappingRules(a, b)) { try FilterCompiler.compile(denyAll([a, b])) }
        let inverted = MSRRule(first: 5, last: 1, action: .deny)
        #expect(throws: FilterCompileError.invertedRange(inverted)) { try FilterCompiler.compile(denyAll([inverted])) }
    }

    /// The policy's answer, straight from the model's semantics.
    private func expected(_ index: UInt32, _ policy: MSRPolicy) -> Bool {
        if MSRCatalogue.x2APICRange.contains(index) { return true }
        if let rule = policy.rule(for: index) { return rule.action == .kernel }
        return policy.defaultScope == .unknown
    }

    /// Windows needed, counted independently of the compiler: repeatedly jump to
    /// the first MSR at or after the cursor whose answer differs from the filter
    /// default, open a 12,288-wide window there.
    private func independentWindowCount(_ policy: MSRPolicy) -> Int {
        let defaultAllow = policy.defaultScope == .unknown
        let x2 = MSRCatalogue.x2APICRange
        func firstNeeded(atOrAfter cursor: UInt64) -> UInt64? {
            var best: UInt64?
            for rule in policy.rules where (rule.action != .kernel) == defaultAllow {
                var candidate = max(cursor, UInt64(rule.first))
                if x2.contains(UInt32(clamping: candidate)) && candidate <= UInt64(UInt32.max) { candidate = UInt64(x2.upperBound) + 1 }
                if candidate <= UInt64(rule.last), best.map({ candidate < $0 }) ?? true { best = candidate }
            }
            return best
        }
        var count = 0
        var cursor: UInt64 = 0
        while let start = firstNeeded(atOrAfter: cursor) {
            count += 1
            cursor = start + 12_288
            if count > 1_000 { break }  // plenty to know it is more than 16
        }
        return count
    }

    @Test func compiledFilterAgreesWithPolicyEverywhereProbed() {
        var generator = SeededGenerator(seed: 0xf117_e2)
        var compiled = 0, refused = 0
        for _ in 0..<300 {
            let policy = RandomPolicies.policy(&generator, maxRules: 30)
            let windows = independentWindowCount(policy)
            let filter: CompiledFilter
            do {
                filter = try FilterCompiler.compile(policy)
            } catch {
                refused += 1
                #expect(windows > MSRFilter.maxRanges, "compile refused a policy needing \(windows) windows: \(error)")
                if case .tooManyRanges(let needed, _, _, _) = error { #expect(windows > 1_000 ? needed > 1_000 : needed == windows) }
                continue
            }
            compiled += 1
            // Shape: what KVM accepts.
            #expect(filter.ranges.count <= MSRFilter.maxRanges)
            #expect(filter.ranges.count == max(windows, policy.defaultScope == .all ? 1 : 0), "greedy packing is minimal")
            for range in filter.ranges {
                #expect(range.flags == 3 && range.count >= 1 && range.count <= MSRFilter.maxMSRsPerRange)
                #expect(range.bitmap.count == (Int(range.count) + 63) / 64 * 8)
                #expect(UInt64(range.base) + UInt64(range.count) <= 1 << 32)
            }
            #expect(zip(filter.ranges, filter.ranges.dropFirst()).allSatisfy { UInt64($0.base) + UInt64($0.count) <= UInt64($1.base) })

            // Probes: every rule boundary ±1, x2APIC edges, range edges, random indices.
            var probes: [UInt32] = [0, 1, 0x7ff, 0x800, 0x8ff, 0x900, .max, .max - 1]
            for rule in policy.rules {
                for edge in [rule.first, rule.last] { probes += [edge &- 1, edge, edge &+ 1] }
            }
            for range in filter.ranges { probes += [range.base &- 1, range.base, range.base &+ range.count &- 1, range.base &+ range.count] }
            while probes.count < 20_000 {
                if Bool.random(using: &generator), let rule = policy.rules.randomElement(using: &generator) {
                    probes.append(UInt32.random(in: rule.first...rule.last, using: &generator))
                } else {
                    probes.append(UInt32.random(in: 0...UInt32.max, using: &generator))
                }
            }
            var mismatches = 0
            for index in probes where filter.allows(index) != expected(index, policy) {
                mismatches += 1
                if mismatches <= 3 { Issue.record("MSR \(MSRCatalogue.hex(index)): filter \(filter.allows(index)), policy \(expected(index, policy))") }
            }
        }
        #expect(compiled > 150 && refused > 5, "compiled \(compiled), refused \(refused)")
    }
}
