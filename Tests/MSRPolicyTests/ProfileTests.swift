// ProfileTests.swift — the built-in CPU-model profiles (well-formed tables,
// origins, values consistent with their own masks) and how a policy is
// layered on one (precedence, splitting around policy ranges).

import SeededRandom
import Testing
@testable import MSRPolicy

@Suite struct ProfileTests {
    @Test func profilesAreNamedAndFindable() {
        #expect(CPUProfiles.names == ["intel-skylake-server", "intel-icelake-client", "amd-zen3"])
        #expect(CPUProfiles.all.count == CPUProfiles.names.count)
        for profile in CPUProfiles.all {
            #expect(CPUProfiles.named(profile.name) == profile)
            #expect(["GenuineIntel", "AuthenticAMD"].contains(profile.vendor))
            #expect(!profile.summary.isEmpty)
        }
        #expect(CPUProfiles.named("intel-pentium-pro") == nil)
    }

    @Test(arguments: CPUProfiles.all)
    func rulesAreSortedDisjointAndSourced(profile: CPUProfile) throws {
        #expect(!profile.rules.isEmpty)
        for (a, b) in zip(profile.rules, profile.rules.dropFirst()) {
            #expect(a.first <= a.last)
            #expect(a.last < b.first, "\(profile.name): 0x\(String(a.first, radix: 16)) overlaps or is out of order")
        }
        for rule in profile.rules {
            let origin = try #require(rule.origin, "\(profile.name) 0x\(String(rule.first, radix: 16)) has no origin")
            #expect(origin.contains("SDM") || origin.contains("AMD PPR"))
            switch rule.action {
            case .computed(let provider):
                #expect(ValueProviders.names.contains(provider))
            case .emulate(let e):
                // The initial value must not already break the rule's own masks.
                #expect(e.initialValue & e.reservedMask == 0, "\(profile.name) 0x\(String(rule.first, radix: 16))")
            case .kernel, .ignore, .deny, .host:
                Issue.record("profiles emulate or compute; \(rule.action.keyword) is unexpected")
            }
        }
        // Every profile is a policy the runtime accepts as it is.
        _ = try MSRRuntime(policy: MSRPolicy(rules: profile.rules), vcpuCount: 4, hostReader: nil, clock: { 0 })
    }

    @Test func intelProfilesCarryTheExpectedRegisters() throws {
        for name in ["intel-skylake-server", "intel-icelake-client"] {
            let profile = try #require(CPUProfiles.named(name))
            let policy = MSRPolicy(rules: profile.rules)
            for index: UInt32 in [0x35, 0xCE, 0x140, 0x19C, 0x1A2, 0x1AD, 0x1B1, 0x606, 0x610, 0x611, 0x614] {
                #expect(policy.rule(for: index) != nil, "\(name) lacks 0x\(String(index, radix: 16))")
            }
            guard case .emulate(let target)? = policy.rule(for: 0x1A2)?.action else {
                Issue.record("TEMPERATURE_TARGET not emulated"); continue
            }
            #expect((target.initialValue >> 16) & 0xFF == 100)   // TjMax
            #expect(target.writes == .readOnly)
        }
        let skx = MSRPolicy(rules: try #require(CPUProfiles.named("intel-skylake-server")).rules)
        guard case .emulate(let info)? = skx.rule(for: 0xCE)?.action else { Issue.record("no PLATFORM_INFO"); return }
        #expect((info.initialValue >> 8) & 0xFF == 24)           // 2.4 GHz base
        #expect(info.initialValue & (1 << 31) == 0)              // no CPUID faulting advertised
    }

    @Test func profileBehavesThroughTheRuntime() throws {
        let profile = try #require(CPUProfiles.named("intel-skylake-server"))
        let runtime = try MSRRuntime(policy: MSRPolicy(rules: profile.rules), vcpuCount: 8, coresPerPackage: 4,
                                     threadsPerCore: 2, hostReader: nil, clock: { 1_000_000_000 })
        func rd(_ i: UInt32) -> MSRDecision { runtime.handle(index: i, access: .read, vcpu: 0, reasons: .filter) }
        func wr(_ i: UInt32, _ v: UInt64) -> MSRDecision { runtime.handle(index: i, access: .write(v), vcpu: 0, reasons: .filter) }
        #expect(rd(0x35).value == 0x0004_0008)
        #expect(rd(0x611) ==  // 8 × 2.5 W + 5 W = 25 W for 1 s
                MSRDecision(value: 25 * 16_384, injectGP: false, outcome: .computed, log: false))
        #expect(wr(0xCE, 0).outcome == .readOnlyGP)
        // MISC_FEATURE_ENABLES: 0 is accepted, CPUID faulting / ring3mwait raise #GP.
        #expect(wr(0x140, 0) == MSRDecision(value: 0, injectGP: false, outcome: .emulated, log: false))
        #expect(wr(0x140, 1).outcome == .reservedGP)
        #expect(wr(0x140, 2).outcome == .reservedGP)
        // PKG_POWER_LIMIT: reserved bits #GP; writable bits change; lock freezes it.
        #expect(wr(0x610, UInt64(1) << 24).outcome == .reservedGP)
        #expect(wr(0x610, UInt64(1) << 56).outcome == .reservedGP)
        #expect(!wr(0x610, 0x0000_0000_0000_8100).injectGP)
        #expect(rd(0x610).value == 0x8100)
        #expect(!wr(0x610, UInt64(1) << 63 | 0x8200).injectGP)
        #expect(rd(0x610).value == UInt64(1) << 63 | 0x8200)
        let afterLock = wr(0x610, 0x8300)
        #expect(!afterLock.injectGP)                              // ignored, as hardware does
        #expect(rd(0x610).value == UInt64(1) << 63 | 0x8200)
        // Shared by the package: another vCPU sees the same limit.
        #expect(runtime.handle(index: 0x610, access: .read, vcpu: 7, reasons: .filter).value == UInt64(1) << 63 | 0x8200)
    }

    @Test func amdHWCRAcceptsWhatKVMAccepts() throws {
        let profile = try #require(CPUProfiles.named("amd-zen3"))
        let runtime = try MSRRuntime(policy: MSRPolicy(rules: profile.rules), vcpuCount: 2, hostReader: nil, clock: { 0 })
        func wr(_ v: UInt64) -> MSRDecision { runtime.handle(index: 0xC001_0015, access: .write(v), vcpu: 0, reasons: .filter) }
        func rd() -> UInt64 { runtime.handle(index: 0xC001_0015, access: .read, vcpu: 0, reasons: .filter).value }
        #expect(rd() == 1 << 24)
        #expect(!wr(1 << 24 | 1 << 18).injectGP)
        #expect(rd() == 1 << 24 | 1 << 18)
        #expect(!wr(1 << 3 | 1 << 6 | 1 << 8).injectGP)         // accepted, not stored
        #expect(rd() == 1 << 24)                                  // bit 24 not writable, 18 cleared
        #expect(wr(1 << 0).outcome == .reservedGP)
        #expect(runtime.handle(index: 0xC001_0299, access: .read, vcpu: 1, reasons: .filter).value == 0xA1003)
    }

    // MARK: - apply()

    @Test func policyRulesOverrideProfileEntries() throws {
        let profile = try #require(CPUProfiles.named("intel-skylake-server"))
        let policy = MSRPolicy(rules: [
            MSRRule(0x1A2, .kernel),                                            // replaces one entry
            MSRRule(first: 0x600, last: 0x612, action: .deny),                  // swallows 0x606, 0x610, 0x611
            MSRRule(0x3A, .ignore(readValue: 5)),                               // not in the profile
        ], defaultAction: .ignore, defaultScope: .all, logDefault: true)
        let merged = CPUProfiles.apply(profile, under: policy)
        #expect(merged.profile == "intel-skylake-server")
        #expect(merged.defaultAction == .ignore && merged.defaultScope == .all && merged.logDefault)
        #expect(merged.rule(for: 0x1A2)?.action == .kernel)
        #expect(merged.rule(for: 0x1A2)?.origin == nil)
        for i: UInt32 in [0x606, 0x610, 0x611] { #expect(merged.rule(for: i)?.action == .deny) }
        #expect(merged.rule(for: 0x3A)?.action == .ignore(readValue: 5))
        #expect(merged.rule(for: 0x614)?.origin?.contains("PKG_POWER_INFO") == true)   // untouched entry kept
        #expect(merged.rule(for: 0x35)?.action == .computed(provider: "core-thread-count"))
        try expectWellFormed(merged)
        // Every profile entry is either kept whole or covered by a policy rule.
        #expect(merged.rules.count == profile.rules.count - 4 + 3)
    }

    @Test func policyRangeSplitsAProfileRange() throws {
        let big = MSRAction.emulate(Emulation(initialValue: 7))
        let profile = CPUProfile(name: "test", vendor: "GenuineIntel", summary: "range", rules: [
            MSRRule(first: 0x100, last: 0x1FF, action: big, origin: "test table"),
            MSRRule(0x300, .computed(provider: "thermal-status"), origin: "test table"),
        ])
        let policy = MSRPolicy(rules: [
            MSRRule(first: 0x150, last: 0x15F, action: .deny),
            MSRRule(first: 0x180, last: 0x180, action: .kernel),
            MSRRule(first: 0x1F0, last: 0x310, action: .ignore(readValue: 0)),  // covers the tail and 0x300
        ])
        let merged = CPUProfiles.apply(profile, under: policy)
        try expectWellFormed(merged)
        let ranges = merged.rules.map { ($0.first, $0.last, $0.action.keyword) }
        let expected: [(UInt32, UInt32, String)] = [
            (0x100, 0x14F, "emulate"), (0x150, 0x15F, "deny"), (0x160, 0x17F, "emulate"),
            (0x180, 0x180, "kernel"), (0x181, 0x1EF, "emulate"), (0x1F0, 0x310, "ignore"),
        ]
        #expect(ranges.count == expected.count)
        for (got, want) in zip(ranges, expected) {
            #expect(got.0 == want.0 && got.1 == want.1 && got.2 == want.2)
        }
        // Split pieces keep the profile's action and origin.
        #expect(merged.rule(for: 0x181)?.origin == "test table")
        #expect(merged.rule(for: 0x181)?.action == big)
    }

    @Test func splittingAtTheEdgesOfTheIndexSpace() throws {
        let profile = CPUProfile(name: "edge", vendor: "GenuineIntel", summary: "", rules: [
            MSRRule(first: 0, last: .max, action: .deny, origin: "all"),
        ])
        let merged = CPUProfiles.apply(profile, under: MSRPolicy(rules: [
            MSRRule(0, .kernel), MSRRule(.max, .kernel),
        ]))
        try expectWellFormed(merged)
        #expect(merged.rules.map(\.first) == [0, 1, .max])
        #expect(merged.rules.map(\.last) == [0, .max - 1, .max])
        // A policy rule covering everything leaves nothing of the profile.
        let swallowed = CPUProfiles.apply(profile, under: MSRPolicy(rules: [MSRRule(first: 0, last: .max, action: .kernel)]))
        #expect(swallowed.rules.count == 1)
        // An empty policy is the profile as it is.
        let plain = CPUProfiles.apply(profile, under: MSRPolicy(rules: []))
        #expect(plain.rules == profile.rules)
    }

    @Test func randomPoliciesOverRandomProfilesStayWellFormed() throws {
        var rng = SeededGenerator(seed: 0xDEF1EC7)
        for _ in 0..<300 {
            let profileRules = disjointRanges(&rng, count: Int(rng.next() % 6), action: .deny)
            let policyRules = disjointRanges(&rng, count: Int(rng.next() % 6), action: .kernel)
            let profile = CPUProfile(name: "p", vendor: "GenuineIntel", summary: "", rules: profileRules)
            let merged = CPUProfiles.apply(profile, under: MSRPolicy(rules: policyRules))
            try expectWellFormed(merged)
            for probe in 0..<64 as Range<UInt32> {
                let inPolicy = policyRules.contains { $0.contains(probe) }
                let inProfile = profileRules.contains { $0.contains(probe) }
                let want: MSRAction? = inPolicy ? .kernel : (inProfile ? .deny : nil)
                #expect(merged.rule(for: probe)?.action == want, "probe \(probe)")
            }
        }
    }

    func disjointRanges(_ rng: inout SeededGenerator, count: Int, action: MSRAction) -> [MSRRule] {
        var rules: [MSRRule] = []
        var next: UInt32 = UInt32(rng.next() % 4)
        for _ in 0..<count {
            let length = UInt32(rng.next() % 8)
            rules.append(MSRRule(first: next, last: next + length, action: action))
            next += length + 1 + UInt32(rng.next() % 5)
        }
        return rules
    }

    func expectWellFormed(_ policy: MSRPolicy) throws {
        for (a, b) in zip(policy.rules, policy.rules.dropFirst()) {
            #expect(a.first <= a.last && a.last < b.first)
        }
        _ = try MSRRuntime(policy: policy, vcpuCount: 1, hostReader: nil, clock: { 0 })
    }
}

