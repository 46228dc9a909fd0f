// RuntimeTests.swift — the exit decision engine: every action, write masks,
// scopes, defaults under each exit reason, computed and host values, init
// errors, policy replacement carry-over, snapshots, concurrency, and the
// allocation-free exit path.

import KVMABI
import Testing
import Dispatch
import Synchronization
@testable import MSRPolicy

/// A host whose MSRs are a dictionary; `failAfterProbe` makes reads fail after init.
final class RuntimeFakeHost: HostMSRReader {
    let values: [UInt32: UInt64]
    let reads = Atomic<Int>(0)
    let failing = Atomic<Bool>(false)
    init(_ values: [UInt32: UInt64]) { self.values = values }
    func read(_ index: UInt32) -> UInt64? {
        reads.add(1, ordering: .relaxed)
        return failing.load(ordering: .relaxed) ? nil : values[index]
    }
}

private func runtime(_ rules: [MSRRule], default action: DefaultAction = .gp, scope: DefaultScope = .unknown,
                     logDefault: Bool = false, vcpus: Int = 2, host: (any HostMSRReader)? = nil,
                     clock: @escaping @Sendable () -> UInt64 = { 0 }) throws -> MSRRuntime {
    try MSRRuntime(policy: MSRPolicy(rules: rules, defaultAction: action, defaultScope: scope, logDefault: logDefault),
                   vcpuCount: vcpus, hostReader: host, clock: clock)
}

extension MSRRuntime {
    func read(_ index: UInt32, vcpu: Int = 0, reasons: MSRExitReasons = .filter) -> MSRDecision {
        handle(index: index, access: .read, vcpu: vcpu, reasons: reasons)
    }
    func write(_ index: UInt32, _ value: UInt64, vcpu: Int = 0, reasons: MSRExitReasons = .filter) -> MSRDecision {
        handle(index: index, access: .write(value), vcpu: vcpu, reasons: reasons)
    }
}

private func ok(_ outcome: MSROutcome, _ value: UInt64) -> MSRDecision {
    MSRDecision(value: value, injectGP: false, outcome: outcome, log: false)
}
private func gp(_ outcome: MSROutcome) -> MSRDecision {
    MSRDecision(value: 0, injectGP: true, outcome: outcome, log: true)
}

/// One row of the default-action table.
struct RuntimeDefaultCase: Sendable, CustomStringConvertible {
    var action: DefaultAction, scope: DefaultScope, reasons: MSRExitReasons, outcome: MSROutcome, injectGP: Bool
    init(_ action: DefaultAction, _ scope: DefaultScope, _ reasons: MSRExitReasons, _ outcome: MSROutcome, _ injectGP: Bool) {
        self.action = action; self.scope = scope; self.reasons = reasons; self.outcome = outcome; self.injectGP = injectGP
    }
    var description: String { "\(action)/\(scope)/reasons=\(reasons.rawValue) -> \(outcome.rawValue)" }
}

@Suite struct RuntimeActionTests {
    @Test func emulateWritableMask() throws {
        let r = try runtime([MSRRule(0x100, .emulate(Emulation(initialValue: 0xF0, writableMask: 0x0F)))])
        #expect(r.read(0x100) == ok(.emulated, 0xF0))
        #expect(r.write(0x100, 0xFF) == ok(.emulated, 0))
        #expect(r.read(0x100).value == 0xFF)
        #expect(r.write(0x100, 0x00) == ok(.emulated, 0))
        #expect(r.read(0x100).value == 0xF0)          // only the writable nibble changed
        #expect(r.write(0x100, 0xAB05).injectGP == false)
        #expect(r.read(0x100).value == 0xF5)
    }

    @Test func emulateReservedBitsRaiseGPAndKeepTheValue() throws {
        let r = try runtime([MSRRule(0x100, .emulate(Emulation(initialValue: 1, reservedMask: 0xFF00)))])
        #expect(r.write(0x100, 0x0100) == gp(.reservedGP))
        #expect(r.write(0x100, 1 << 15) == gp(.reservedGP))
        #expect(r.read(0x100).value == 1)
        #expect(r.write(0x100, 0x1_0042) == ok(.emulated, 0))
        #expect(r.read(0x100).value == 0x1_0042)
    }

    @Test func emulateReadOnlyAndWriteIgnored() throws {
        let r = try runtime([
            MSRRule(0x10, .emulate(Emulation(initialValue: 7, writes: .readOnly))),
            MSRRule(0x11, .emulate(Emulation(initialValue: 9, writes: .writeIgnored))),
        ])
        #expect(r.write(0x10, 8) == gp(.readOnlyGP))
        #expect(r.read(0x10).value == 7)
        #expect(r.write(0x11, 8) == ok(.emulated, 0))
        #expect(r.read(0x11).value == 9)
        // write-ignored drops even values that hit the reserved mask: nothing is checked.
    }

    @Test func emulatedRangeHasOneValuePerMSR() throws {
        let r = try runtime([MSRRule(first: 0x200, last: 0x20F, action: .emulate(Emulation(initialValue: 3)))])
        #expect(!r.write(0x205, 55).injectGP)
        #expect(r.read(0x205).value == 55)
        #expect(r.read(0x204).value == 3)
        #expect(r.read(0x20F).value == 3)
    }

    @Test func perVMScopeIsSharedAndPerVCPUIsIsolated() throws {
        let r = try runtime([
            MSRRule(0x100, .emulate(Emulation(initialValue: 1, scope: .vm))),
            MSRRule(0x101, .emulate(Emulation(initialValue: 1, scope: .vcpu))),
        ], vcpus: 3)
        #expect(!r.write(0x100, 42, vcpu: 0).injectGP)
        #expect(!r.write(0x101, 42, vcpu: 0).injectGP)
        for v in 0..<3 { #expect(r.read(0x100, vcpu: v).value == 42) }
        #expect(r.read(0x101, vcpu: 0).value == 42)
        #expect(r.read(0x101, vcpu: 1).value == 1)
        #expect(r.read(0x101, vcpu: 2).value == 1)
        #expect(!r.write(0x101, 7, vcpu: 2).injectGP)
        #expect(r.read(0x101, vcpu: 0).value == 42)
        #expect(r.read(0x101, vcpu: 2).value == 7)
    }

    @Test func ignoreDenyKernel() throws {
        let r = try runtime([
            MSRRule(0x1, .ignore(readValue: 0x1234)),
            MSRRule(0x2, .deny),
            MSRRule(0x3, .kernel),
        ], default: .ignore)
        #expect(r.read(0x1) == ok(.ignored, 0x1234))
        #expect(r.write(0x1, 99) == ok(.ignored, 0))
        #expect(r.read(0x1).value == 0x1234)
        #expect(r.read(0x2) == gp(.denied))
        #expect(r.write(0x2, 0) == gp(.denied))
        // A kernel rule only reaches user space when KVM refused it.
        #expect(r.read(0x3, reasons: .unknown) == gp(.kernelRefused))
        #expect(r.write(0x3, 1, reasons: .invalid) == gp(.kernelRefused))
    }

    @Test func logFlag() throws {
        let r = try runtime([
            MSRRule(0x1, .ignore(readValue: 0), log: true),
            MSRRule(0x2, .emulate(Emulation()), log: true),
            MSRRule(0x3, .emulate(Emulation())),
        ], default: .ignore, logDefault: true)
        #expect(r.read(0x1).log)
        #expect(r.write(0x2, 5).log)
        #expect(!r.read(0x3).log)
        #expect(r.read(0x999, reasons: .unknown) == MSRDecision(value: 0, injectGP: false, outcome: .defaultIgnore, log: true))
        let quiet = try runtime([], default: .ignore)
        #expect(!quiet.read(0x999, reasons: .unknown).log)
        #expect(try runtime([], default: .gp).read(0x999, reasons: .unknown).log)   // every #GP is logged
    }

    @Test func computedValuesFollowTheClock() throws {
        let now = Atomic<UInt64>(0)
        let r = try MSRRuntime(policy: MSRPolicy(rules: [
            MSRRule(0x35, .computed(provider: "core-thread-count")),
            MSRRule(0x611, .computed(provider: "rapl-package-energy")),
        ]), vcpuCount: 4, coresPerPackage: 2, threadsPerCore: 2, hostReader: nil,
            clock: { now.load(ordering: .relaxed) })
        #expect(r.read(0x35) == ok(.computed, 0x0002_0004))
        #expect(r.read(0x611) == ok(.computed, 0))
        now.store(2_000_000_000, ordering: .relaxed)
        #expect(r.read(0x611, vcpu: 3) == ok(.computed, 2 * 15 * 16_384))   // 4 × 2.5 + 5 = 15 W
        #expect(r.write(0x611, 0) == gp(.readOnlyGP))
    }

    @Test func hostValues() throws {
        let host = RuntimeFakeHost([0x1A0: 0x850089, 0x1A1: 0])
        let r = try runtime([MSRRule(first: 0x1A0, last: 0x1A1, action: .host)], host: host)
        #expect(host.reads.load(ordering: .relaxed) == 1)           // probed once, first MSR
        #expect(r.read(0x1A0) == ok(.host, 0x850089))
        #expect(r.write(0x1A0, 0) == gp(.readOnlyGP))
        host.failing.store(true, ordering: .relaxed)
        #expect(r.read(0x1A0) == gp(.host))                         // host stopped answering
    }

    @Test func outOfRangeVCPUIsAnsweredNotTrapped() throws {
        let r = try runtime([MSRRule(0x100, .emulate(Emulation()))], vcpus: 2)
        #expect(r.read(0x100, vcpu: 2) == gp(.denied))
        #expect(r.write(0x100, 1, vcpu: -1) == gp(.denied))
    }

    @Test func lockBits() throws {
        let r = try runtime([
            MSRRule(0x3A, .emulate(Emulation(initialValue: 0, writableMask: 0x7))),           // FEATURE_CONTROL
            MSRRule(0x610, .emulate(Emulation(initialValue: 0, scope: .vm))),                 // PKG_POWER_LIMIT
            MSRRule(0x611, .emulate(Emulation(initialValue: 0))),                             // no lock bit
        ])
        #expect(!r.write(0x3A, 0x5).injectGP)
        #expect(r.write(0x3A, 0x4) == gp(.readOnlyGP))     // locked: #GP
        #expect(r.read(0x3A).value == 0x5)
        #expect(!r.write(0x610, 1 << 63 | 1).injectGP)
        #expect(r.write(0x610, 2) == ok(.emulated, 0))     // locked: dropped
        #expect(r.read(0x610).value == UInt64(1) << 63 | 1)
        #expect(!r.write(0x611, 1 << 63).injectGP)
        #expect(!r.write(0x611, 2).injectGP)
        #expect(r.read(0x611).value == 2)
    }
}

@Suite struct RuntimeDefaultTests {
    @Test(arguments: [
        RuntimeDefaultCase(.gp, .unknown, .unknown, .defaultGP, true),
        RuntimeDefaultCase(.gp, .all, .filter, .defaultGP, true),
        RuntimeDefaultCase(.gp, .all, .unknown, .defaultGP, true),
        RuntimeDefaultCase(.gp, .unknown, .invalid, .kernelRefused, true),      // KVM implements it and refused
        RuntimeDefaultCase(.gp, .all, .invalid, .defaultGP, true),
        RuntimeDefaultCase(.ignore, .unknown, .unknown, .defaultIgnore, false),
        RuntimeDefaultCase(.ignore, .unknown, .invalid, .kernelRefused, true),  // per-VM ignore_msrs: unknown MSRs only
        RuntimeDefaultCase(.ignore, .all, .invalid, .defaultIgnore, false),
        RuntimeDefaultCase(.ignore, .all, .filter, .defaultIgnore, false),
        RuntimeDefaultCase(.ignore, .unknown, [.filter, .unknown], .defaultIgnore, false),
        RuntimeDefaultCase(.kernel, .unknown, .unknown, .kernelRefused, true),
        RuntimeDefaultCase(.kernel, .unknown, .invalid, .kernelRefused, true),
        RuntimeDefaultCase(.kernel, .all, .filter, .kernelRefused, true),
    ])
    func defaultDecision(_ c: RuntimeDefaultCase) throws {
        let (action, scope, reasons, outcome, injectGP) = (c.action, c.scope, c.reasons, c.outcome, c.injectGP)
        let r = try runtime([MSRRule(0x100, .deny)], default: action, scope: scope)
        for access in [MSRAccess.read, .write(0x55)] {
            let d = r.handle(index: 0xC000_1234, access: access, vcpu: 1, reasons: reasons)
            #expect(d.outcome == outcome)
            #expect(d.injectGP == injectGP)
            #expect(d.value == 0)
        }
    }

    @Test func reasonBitsMatchKVM() {
        #expect(MSRExitReasons.invalid.rawValue == 1)
        #expect(MSRExitReasons.unknown.rawValue == 2)
        #expect(MSRExitReasons.filter.rawValue == 4)
        #expect(MSROutcome.defaultGP.rawValue == "default-gp")
        #expect(MSROutcome.kernelRefused.rawValue == "kernel-refused")
    }
}

@Suite struct RuntimeInitTests {
    @Test func unknownProvider() {
        #expect(throws: MSRRuntimeError.unknownProvider(name: "warp-drive", index: 0x42)) {
            try runtime([MSRRule(0x42, .computed(provider: "warp-drive"))])
        }
    }

    @Test func hostWithoutReader() {
        #expect(throws: MSRRuntimeError.hostReaderMissing(index: 0x1A0)) {
            try runtime([MSRRule(first: 0x1A0, last: 0x1A4, action: .host)])
        }
    }

    @Test func hostUnreadableAtStart() {
        #expect(throws: MSRRuntimeError.hostMSRUnreadable(index: 0x1A0)) {
            try runtime([MSRRule(0x1A0, .host)], host: RuntimeFakeHost([:]))
        }
        let error = MSRRuntimeError.hostMSRUnreadable(index: 0x1A0)
        #expect(error.description.contains("0x1a0"))
    }

    @Test func malformedRules() {
        #expect(throws: MSRRuntimeError.invertedRule(first: 5, last: 4)) {
            try runtime([MSRRule(first: 5, last: 4, action: .deny)])
        }
        #expect(throws: MSRRuntimeError.overlappingRules(0x10, 0x18)) {
            try runtime([MSRRule(first: 0x10, last: 0x20, action: .deny), MSRRule(0x18, .kernel)])
        }
    }

    @Test func emulatedMSRsAreBounded() {
        // A guest-facing VMM must not allocate 2^32 slots because a policy asked.
        #expect(throws: MSRRuntimeError.tooManyEmulatedMSRs(count: 1 << 32, limit: MSRRuntime.maxEmulatedMSRs)) {
            try runtime([MSRRule(first: 0, last: .max, action: .emulate(Emulation()))])
        }
        #expect(throws: Never.self) {
            try runtime([MSRRule(first: 0, last: UInt32(MSRRuntime.maxEmulatedMSRs - 1), action: .emulate(Emulation()))], vcpus: 1)
        }
    }

    @Test func topology() {
        #expect(throws: MSRRuntimeError.self) { try runtime([], vcpus: 0) }
        #expect(throws: MSRRuntimeError.self) { try runtime([], vcpus: MSRRuntime.maxVCPUs + 1) }
        #expect(throws: MSRRuntimeError.self) {
            try MSRRuntime(policy: MSRPolicy(rules: []), vcpuCount: 2, threadsPerCore: 0, hostReader: nil, clock: { 0 })
        }
        #expect(throws: MSRRuntimeError.self) {
            try MSRRuntime(policy: MSRPolicy(rules: []), vcpuCount: 2, coresPerPackage: 0, hostReader: nil, clock: { 0 })
        }
    }
}

@Suite struct RuntimeReplaceTests {
    let keep = MSRRule(0x100, .emulate(Emulation(initialValue: 1, scope: .vm)))
    let perCPU = MSRRule(0x101, .emulate(Emulation(initialValue: 1, scope: .vcpu)))
    let dropped = MSRRule(0x102, .emulate(Emulation(initialValue: 1)))
    let rescoped = MSRRule(0x103, .emulate(Emulation(initialValue: 1, scope: .vcpu)))

    @Test func carryOver() throws {
        let r = try runtime([keep, perCPU, dropped, rescoped], vcpus: 2)
        for (i, v) in [(UInt32(0x100), UInt64(10)), (0x102, 12), (0x103, 13)] { #expect(!r.write(i, v).injectGP) }
        #expect(!r.write(0x101, 110, vcpu: 0).injectGP)
        #expect(!r.write(0x101, 111, vcpu: 1).injectGP)

        var kept = keep
        kept.action = .emulate(Emulation(initialValue: 99, scope: .vm, writableMask: 0xFF))   // new masks, same scope
        try r.replacePolicy(MSRPolicy(rules: [
            kept, perCPU,
            MSRRule(0x103, .emulate(Emulation(initialValue: 3, scope: .vm))),                  // scope changed
            MSRRule(0x104, .emulate(Emulation(initialValue: 4))),                              // new
        ]))
        #expect(r.read(0x100).value == 10)              // kept
        #expect(r.read(0x101, vcpu: 0).value == 110)    // kept per vCPU
        #expect(r.read(0x101, vcpu: 1).value == 111)
        // Dropped: the new policy's default (kernel) applies.
        #expect(r.read(0x102, reasons: .unknown) == gp(.kernelRefused))
        #expect(r.read(0x103).value == 3)               // scope changed: reset
        #expect(r.read(0x104).value == 4)               // new: initial value
        #expect(r.policy.rules.count == 4)

        // The new masks apply to the carried value from now on.
        #expect(!r.write(0x100, 0x1FF).injectGP)
        #expect(r.read(0x100).value == 0xFF)

        // Bringing the dropped MSR back starts it afresh.
        try r.replacePolicy(MSRPolicy(rules: [dropped]))
        #expect(r.read(0x102).value == 1)
    }

    @Test func carryOverAcrossResizedRanges() throws {
        let r = try runtime([MSRRule(first: 0x10, last: 0x1F, action: .emulate(Emulation()))], vcpus: 1)
        for i: UInt32 in 0x10...0x1F { #expect(!r.write(i, UInt64(i) * 3).injectGP) }
        try r.replacePolicy(MSRPolicy(rules: [
            MSRRule(first: 0x08, last: 0x13, action: .emulate(Emulation(initialValue: 7))),
            MSRRule(0x14, .deny),
            MSRRule(first: 0x18, last: 0x30, action: .emulate(Emulation(initialValue: 8))),
        ]))
        #expect(r.read(0x08).value == 7)
        #expect(r.read(0x13).value == 0x13 * 3)
        #expect(r.read(0x18).value == 0x18 * 3)
        #expect(r.read(0x1F).value == 0x1F * 3)
        #expect(r.read(0x20).value == 8)
    }

    @Test func failedReplacementLeavesThePolicyAlone() throws {
        let r = try runtime([keep])
        #expect(!r.write(0x100, 5).injectGP)
        let before = r.policy
        #expect(throws: MSRRuntimeError.unknownProvider(name: "nope", index: 0x200)) {
            try r.replacePolicy(MSRPolicy(rules: [keep, MSRRule(0x200, .computed(provider: "nope"))]))
        }
        #expect(r.policy == before)
        #expect(r.read(0x100).value == 5)
    }

    @Test func snapshotRoundTrip() throws {
        let rules = [keep, perCPU, MSRRule(first: 0x200, last: 0x201, action: .emulate(Emulation(initialValue: 2)))]
        let a = try runtime(rules, vcpus: 2)
        #expect(!a.write(0x100, 50).injectGP)
        #expect(!a.write(0x101, 60, vcpu: 1).injectGP)
        #expect(!a.write(0x201, 70, vcpu: 0).injectGP)
        let saved = a.emulatedValues()
        #expect(saved == [
            EmulatedValue(index: 0x100, scope: .vm, vcpu: nil, value: 50),
            EmulatedValue(index: 0x101, scope: .vcpu, vcpu: 0, value: 1),
            EmulatedValue(index: 0x101, scope: .vcpu, vcpu: 1, value: 60),
            EmulatedValue(index: 0x200, scope: .vcpu, vcpu: 0, value: 2),
            EmulatedValue(index: 0x200, scope: .vcpu, vcpu: 1, value: 2),
            EmulatedValue(index: 0x201, scope: .vcpu, vcpu: 0, value: 70),
            EmulatedValue(index: 0x201, scope: .vcpu, vcpu: 1, value: 2),
        ])
        let b = try runtime(rules, vcpus: 2)
        try b.restore(saved)
        #expect(b.emulatedValues() == saved)
        #expect(b.read(0x101, vcpu: 1).value == 60)
    }

    @Test func restoreRejectsMismatchesAtomically() throws {
        let r = try runtime([keep, perCPU], vcpus: 2)
        let good = EmulatedValue(index: 0x100, scope: .vm, vcpu: nil, value: 77)
        let bad: [EmulatedValue] = [
            EmulatedValue(index: 0x999, scope: .vm, vcpu: nil, value: 1),      // not emulated
            EmulatedValue(index: 0x101, scope: .vm, vcpu: nil, value: 1),      // wrong scope
            EmulatedValue(index: 0x101, scope: .vcpu, vcpu: 2, value: 1),      // no such vCPU
            EmulatedValue(index: 0x101, scope: .vcpu, vcpu: nil, value: 1),    // per-vCPU without vCPU
            EmulatedValue(index: 0x100, scope: .vm, vcpu: 0, value: 1),        // per-VM with vCPU
        ]
        for value in bad {
            #expect(throws: MSRRuntimeError.self) { try r.restore([good, value]) }
            #expect(r.read(0x100).value == 1)                                  // nothing applied
        }
        try r.restore([good])
        #expect(r.read(0x100).value == 77)
        // Restoring bypasses masks: it is state, not a guest write.
        let ro = try runtime([MSRRule(0x10, .emulate(Emulation(initialValue: 1, writes: .readOnly)))])
        try ro.restore([EmulatedValue(index: 0x10, scope: .vcpu, vcpu: 1, value: 9)])
        #expect(ro.read(0x10, vcpu: 1).value == 9)
    }
}

@Suite struct RuntimeConcurrencyTests {
    /// `cached`: each vCPU keeps a `GenerationCache`, as the VMM's vCPU threads do.
    @Test(arguments: [false, true])
    func vcpusHammeringAShareMSRWhilePoliciesSwap(cached: Bool) throws {
        let vm = MSRRule(0x100, .emulate(Emulation(initialValue: 0, scope: .vm)))
        let mine = MSRRule(0x101, .emulate(Emulation(initialValue: 0, scope: .vcpu)))
        let r = try runtime([vm, mine], vcpus: 4)
        let iterations = 20_000
        let swaps = Atomic<Int>(0)
        let mismatches = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 5) { worker in
            if worker == 4 {
                // Replacement thread: alternate two policies that both keep both MSRs.
                for n in 0..<200 {
                    let extra = MSRRule(0x200, n % 2 == 0 ? .deny : .ignore(readValue: 1))
                    try? r.replacePolicy(MSRPolicy(rules: [vm, mine, extra]))
                    swaps.add(1, ordering: .relaxed)
                }
                return
            }
            var cache = MSRRuntime.GenerationCache()
            func access(_ index: UInt32, _ access: MSRAccess) -> MSRDecision {
                cached ? r.handle(index: index, access: access, vcpu: worker, reasons: .filter, cache: &cache)
                       : r.handle(index: index, access: access, vcpu: worker, reasons: .filter)
            }
            for i in 1...iterations {
                // Values encode (vCPU, iteration) so the final value names its writer.
                let value = UInt64(worker) << 32 | UInt64(i)
                _ = access(0x100, .write(value))
                _ = access(0x100, .read)
                _ = access(0x101, .write(value))
                // A per-vCPU value is only written by its own vCPU: never lost, even across swaps.
                if access(0x101, .read).value != value { mismatches.add(1, ordering: .relaxed) }
            }
        }
        #expect(swaps.load(ordering: .relaxed) == 200)
        #expect(mismatches.load(ordering: .relaxed) == 0)
        let last = r.read(0x100).value
        #expect(last & 0xFFFF_FFFF >= 1 && last & 0xFFFF_FFFF <= UInt64(iterations))
        #expect(last >> 32 < 4)
        for v in 0..<4 { #expect(r.read(0x101, vcpu: v).value == UInt64(v) << 32 | UInt64(iterations)) }
    }
}

@Suite struct RuntimeGenerationCacheTests {
    @Test func aCachedGenerationFollowsEveryReplacement() throws {
        let r = try runtime([MSRRule(0x200, .deny)], vcpus: 1)
        var cache = MSRRuntime.GenerationCache()
        #expect(r.handle(index: 0x200, access: .read, vcpu: 0, reasons: .filter, cache: &cache) == gp(.denied))
        try r.replacePolicy(MSRPolicy(rules: [MSRRule(0x200, .ignore(readValue: 5))]))
        let ignored = r.handle(index: 0x200, access: .read, vcpu: 0, reasons: .filter, cache: &cache)
        #expect(ignored.outcome == .ignored && ignored.value == 5)
        // A cache handed to another runtime (installed as often: never) starts over.
        let other = try runtime([MSRRule(0x200, .deny)], vcpus: 1)
        try other.replacePolicy(MSRPolicy(rules: [MSRRule(0x200, .deny)]))
        #expect(other.handle(index: 0x200, access: .read, vcpu: 0, reasons: .filter, cache: &cache) == gp(.denied))
    }
}

@Suite struct RuntimePerformanceTests {
    func busyRuntime() throws -> MSRRuntime {
        var rules: [MSRRule] = (0..<64).map { MSRRule(UInt32(0x1000 + 2 * $0), .deny) }
        rules += [
            MSRRule(0x100, .emulate(Emulation(initialValue: 0, scope: .vm))),
            MSRRule(0x101, .emulate(Emulation(initialValue: 0, scope: .vcpu, reservedMask: 1 << 63))),
            MSRRule(0x102, .ignore(readValue: 3)),
            MSRRule(0x611, .computed(provider: "rapl-package-energy")),
            MSRRule(0x1A0, .host),
        ]
        return try runtime(rules, default: .ignore, vcpus: 2, host: RuntimeFakeHost([0x1A0: 1]), clock: { 123_456_789 })
    }

    /// One pass over every path of the exit handler.
    func exercise(_ r: MSRRuntime, _ n: Int) -> UInt64 {
        var sink: UInt64 = 0
        for i in 0..<n {
            let value = UInt64(truncatingIfNeeded: i)
            switch i % 8 {
            case 0: sink &+= r.write(0x100, value).value
            case 1: sink &+= r.read(0x100).value
            case 2: sink &+= r.write(0x101, value, vcpu: 1).value
            case 3: sink &+= r.write(0x101, 1 << 63, vcpu: 1).value     // #GP
            case 4: sink &+= r.read(0x611).value
            case 5: sink &+= r.read(0x1A0).value
            case 6: sink &+= r.read(0x1000 + UInt32(i % 128), reasons: .unknown).value
            default: sink &+= r.read(UInt32(truncatingIfNeeded: i &* 2_654_435_761), reasons: .unknown).value   // random MSRs
            }
        }
        return sink
    }

    @Test func exitPathDoesNotSlowDown() throws {
        let r = try busyRuntime()
        let clock = ContinuousClock()
        _ = exercise(r, 10_000)
        var laps: [Duration] = []
        for _ in 0..<5 { laps.append(clock.measure { _ = exercise(r, 100_000) }) }
        // State does not grow with the number of exits, so later laps cost
        // what the first did (generous bound: timing on a shared machine).
        let first = laps[0], best = laps.min() ?? first
        #expect(laps.last.map { $0 < best * 4 } == true, "laps: \(laps)")
        #expect(first < .seconds(5))
    }
}
