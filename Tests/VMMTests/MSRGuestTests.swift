// VMMTests: the MSR engine end to end: guest programs doing RDMSR/WRMSR under
// Deflect policies, reproducing the scenarios of the kernel selftest
// userspace_msr_exit_test.c (filter allow, filter deny with exit counts,
// runtime filter swaps), policy replacement, tracing and a storm of MSRs.
import KVMABI
import DeflectTestSupport
import Foundation
import KVM
import MSRPolicy
import Synchronization
import Testing
@testable import VMM

/// One "MSR <rd|wr> 0x<index> <ok|gp> 0x<value>" line of runtime64.inc.
struct ReportedAccess: Equatable, CustomStringConvertible {
    var write: Bool
    var index: UInt32
    var faulted: Bool
    var value: UInt64
    var description: String { "\(write ? "wr" : "rd") 0x\(String(index, radix: 16)) \(faulted ? "gp" : "ok") 0x\(String(value, radix: 16))" }

    static func parse(_ output: String) -> [ReportedAccess] {
        output.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 5, f[0] == "MSR",
                  let index = UInt32(f[2].dropFirst(2), radix: 16),
                  let value = UInt64(f[4].dropFirst(2), radix: 16) else { return nil }
            return ReportedAccess(write: f[1] == "wr", index: index, faulted: f[3] == "gp", value: value)
        }
    }
}

private func rd(_ index: UInt32, _ value: UInt64, gp: Bool = false) -> ReportedAccess {
    ReportedAccess(write: false, index: index, faulted: gp, value: value)
}
private func wr(_ index: UInt32, _ value: UInt64, gp: Bool = false) -> ReportedAccess {
    ReportedAccess(write: true, index: index, faulted: gp, value: value)
}

private func machine(_ guest: String, msr: MSRSetup, vcpus: Int = 1, events: EventLog = EventLog(sink: CollectingEventSink()))
    throws -> (Machine, CaptureSink) {
    var config = MachineConfiguration(image: try GuestImages.bytes(guest), mode: .long, memoryMiB: 16,
                                      vcpuCount: vcpus, timeoutSeconds: 60)
    config.msr = msr
    let sink = CaptureSink()
    return (try Machine(configuration: config, serialOutput: sink, events: events), sink)
}

/// The selftest's "user space answers with the MSR's index": a read-returns-index rule.
private func answersIndex(_ index: UInt32) -> MSRRule { MSRRule(index, .ignore(readValue: UInt64(index))) }

@Suite("MSR engine under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct MSRGuestTests {
    /// test_msr_filter_allow: default allow, three MSRs denied into user space.
    @Test func filterAllow() throws {
        let policy = MSRPolicy(rules: [
            // XSS: reads 0, accepts only 0.
            MSRRule(0xDA0, .emulate(Emulation(initialValue: 0, writableMask: 0, reservedMask: .max))),
            // FLUSH_CMD: denied outright (Deflect has no write-only action; the selftest accepts a write of 1).
            MSRRule(0x10B, .deny),
            // MSR_NON_EXISTENT: user space keeps the value.
            MSRRule(0x474F_4F00, .emulate(Emulation())),
        ])
        let (vm, output) = try machine("long/msr_filter_allow.bin", msr: .policy(policy))
        let report = vm.run()
        #expect(ReportedAccess.parse(output.text) == [
            rd(0xDA0, 0), wr(0xDA0, 0), wr(0xDA0, 1, gp: true),
            rd(0x10B, 0, gp: true), wr(0x10B, 0, gp: true), wr(0x10B, 1, gp: true),
            wr(0x474F_4F00, 2), rd(0x474F_4F00, 2),
            rd(0xC000_0100, 0), wr(0xC000_0100, 0), rd(0xC000_0101, 0), wr(0xC000_0101, 0),
        ])
        // Exactly the denied MSRs left the kernel: 3 RDMSR and 5 WRMSR exits.
        #expect(report.statistics[.readMSR].count == 3)
        #expect(report.statistics[.writeMSR].count == 5)
        #expect(report.outcome == .guestExit(value: 4, status: 9))
        #expect(report.msrStatistics.entry(for: 0x474F_4F00)?.lastValue == 2)
    }

    /// test_msr_filter_deny: user space answers reads with the index and drops
    /// writes; at the guest's sync point the filter is replaced by one that
    /// leaves everything known to KVM; unknown MSRs keep exiting (UNKNOWN).
    @Test func filterDenyThenRemovedAtRuntime() throws {
        let unknown: UInt32 = 0xDEAD_BEEF
        let round0 = MSRPolicy(rules: [answersIndex(0xC000_0084), answersIndex(0xC000_0101), answersIndex(0x1FC), answersIndex(unknown)])
        let round1 = MSRPolicy(rules: [answersIndex(unknown)])
        let (vm, output) = try machine("long/msr_filter_deny.bin", msr: .policy(round0))
        let swapped = ErrorBox()
        let report = vm.run(phaseHandler: { phase, _ in
            guard phase == 0 else { return }
            do { try vm.replacePolicy(round1) } catch { swapped.set("\(error)") }
        })
        #expect(swapped.get() == nil)
        #expect(ReportedAccess.parse(output.text) == [
            wr(0xC000_0084, 0), rd(0xC000_0084, 0xC000_0084), rd(0xC000_0101, 0xC000_0101),
            wr(0x1FC, 0x1234), rd(0x1FC, 0x1FC), rd(unknown, UInt64(unknown)), wr(unknown, 0x1234),
            wr(0xC000_0084, 0), rd(0xC000_0084, 0), rd(0xC000_0101, 0),
            wr(0x1FC, 0x1234), rd(0x1FC, 0x1234), rd(unknown, UInt64(unknown)), wr(unknown, 0x1234),
        ])
        // Round 0: 4 reads + 3 writes in user space; round 1: only 0xdeadbeef (1 + 1).
        #expect(report.statistics[.readMSR].count == 5)
        #expect(report.statistics[.writeMSR].count == 4)
        #expect(report.outcome == .guestExit(value: 0, status: 1))
    }

    /// test_msr_permission_bitmap: the filter is swapped while the guest runs.
    @Test func permissionBitmapSwappedAtRuntime() throws {
        let (vm, output) = try machine("long/msr_permission_bitmap.bin", msr: .policy(MSRPolicy(rules: [answersIndex(0xC000_0100)])))
        let report = vm.run(phaseHandler: { phase, _ in
            if phase == 0 { try? vm.replacePolicy(MSRPolicy(rules: [answersIndex(0xC000_0101)])) }
        })
        #expect(ReportedAccess.parse(output.text) == [
            rd(0xC000_0100, 0xC000_0100), rd(0xC000_0101, 0), rd(0xC000_0100, 0), rd(0xC000_0101, 0xC000_0101),
        ])
        #expect(report.statistics[.readMSR].count == 2)
        #expect(report.outcome == .guestExit(value: 0, status: 1))
    }

    /// Emulated values survive a policy replacement that keeps the MSR.
    @Test func emulatedValuesCarryOverAReplacement() throws {
        let keep = MSRRule(0x474F_4F00, .emulate(Emulation()))
        let (vm, output) = try machine("long/msr_filter_allow.bin",
                                       msr: .policy(MSRPolicy(rules: [keep, MSRRule(0xDA0, .deny)])))
        // No sync point in this guest: replace before it runs and after the first write instead.
        try vm.replacePolicy(MSRPolicy(rules: [keep, MSRRule(0xDA0, .ignore(readValue: 7))]))
        let report = vm.run()
        let accesses = ReportedAccess.parse(output.text)
        #expect(accesses.first == rd(0xDA0, 7))
        #expect(accesses.contains(rd(0x474F_4F00, 2)))
        #expect(report.outcome.exitStatus % 2 == 1)
        #expect(vm.msrRuntime?.emulatedValues().contains { $0.index == 0x474F_4F00 && $0.value == 2 } == true)
    }

    /// Issue 8, item 6: when KVM refuses the new filter, the previous policy
    /// stays in force as a whole (the runtime was not switched either).
    @Test func replacementRefusedByKVMKeepsThePreviousPolicy() throws {
        let keep = MSRRule(0x474F_4F00, .emulate(Emulation()))
        let (vm, output) = try machine("long/msr_filter_allow.bin",
                                       msr: .policy(MSRPolicy(rules: [keep, MSRRule(0xDA0, .deny)])))
        vm.msrFilterInstaller.withLock {
            $0 = { _ throws(KVMError) in throw KVMError.ioctl(request: "KVM_X86_SET_MSR_FILTER", errno: EINVAL) }
        }
        #expect(throws: MachineError.self) {
            try vm.replacePolicy(MSRPolicy(rules: [keep, MSRRule(0xDA0, .ignore(readValue: 7))]))
        }
        let report = vm.run()
        // The guest's first access is the XSS read the old policy denies.
        #expect(ReportedAccess.parse(output.text).first == rd(0xDA0, 0, gp: true), "\(output.text)")
        #expect(report.outcome.exitStatus % 2 == 1)
    }

    /// Trace under a storm of scattered MSRs: once the seen MSRs no longer fit
    /// in KVM's 16 filter ranges, the filter allows everything and the trace
    /// keeps seeing every access KVM refuses; the guest gets KVM's answers.
    @Test func traceSurvivesAStormOfScatteredMSRs() throws {
        let (vm, output) = try machine("long/msr_storm.bin", msr: .trace)
        let report = vm.run()
        #expect(output.text.contains("STORM accesses=20000 gp=20000"), "\(output.text.suffix(300))")
        #expect(report.outcome == .guestExit(value: 0x33, status: 103))
        let refused = report.msrStatistics.entries.reduce(UInt64(0)) { $0 + $1.outcomes["gp", default: 0] }
            + report.msrStatistics.other.outcomes["gp", default: 0]
        #expect(refused == 20_000)
    }

    /// The probe guest under the strict and permissive example policies.
    @Test func exampleProductionPolicyRaisesGPForUnknownMSRsAndLogsThem() throws {
        let text = try String(contentsOfFile: GuestImages.repositoryRoot.appendingPathComponent("examples/policies/production-strict.toml").path, encoding: .utf8)
        let policy = try PolicyLoader.load(text, file: "production-strict.toml")
        let events = CollectingEventSink()
        let (vm, output) = try machine("long/msr_probe.bin", msr: .policy(policy), events: EventLog(sink: events))
        let report = vm.run()
        let accesses = ReportedAccess.parse(output.text)
        #expect(accesses.contains(rd(0x2474, 0, gp: true)))
        #expect(accesses.contains(rd(0x4000_0123, 0, gp: true)))
        #expect(accesses.contains { $0.index == 0xC000_0080 && !$0.faulted && $0.value == 0x500 })   // EFER stays KVM's
        #expect(events.events.contains { if case let .msrAccess(e) = $0 { return e.index == 0x2474 && e.injectedGP && e.rip >= 0x100000 } else { return false } })
        #expect(report.outcome.exitStatus % 2 == 1)
    }

    @Test func examplePermissivePolicyIgnoresUnknownMSRs() throws {
        let text = try String(contentsOfFile: GuestImages.repositoryRoot.appendingPathComponent("examples/policies/experimental-permissive.toml").path, encoding: .utf8)
        let (vm, output) = try machine("long/msr_probe.bin", msr: .policy(try PolicyLoader.load(text, file: "experimental-permissive.toml")))
        let report = vm.run()
        let accesses = ReportedAccess.parse(output.text)
        #expect(!accesses.isEmpty)
        #expect(accesses.allSatisfy { !$0.faulted })
        #expect(report.outcome == .guestExit(value: 0, status: 1))
        // The package energy counter advances with time between the two reads.
        let energy = accesses.filter { $0.index == 0x611 }.map(\.value)
        #expect(energy.count == 2 && energy[1] > energy[0])
    }

    /// deflect trace: every MSR exits and is served by KVM; refused ones #GP.
    @Test func traceSeesEveryMSRTheGuestTouches() throws {
        let (vm, output) = try machine("long/msr_probe.bin", msr: .trace)
        let report = vm.run()
        let trace = report.msrStatistics
        let guestView = ReportedAccess.parse(output.text)
        // Every access the guest reports is in the trace, with the same outcome.
        for access in guestView {
            let entry = trace.entry(for: access.index)
            #expect(entry != nil, "\(access) missing from the trace")
            #expect(entry?.outcomes[access.faulted ? "gp" : "ok", default: 0] ?? 0 > 0, "\(access)")
        }
        #expect(trace.entry(for: 0xC000_0080)?.lastValue == 0x500)
        #expect(trace.entry(for: 0x2474)?.outcomes["gp"] == 2)
        #expect(trace.entry(for: 0x10)?.lastRIP ?? 0 >= 0x100000)
        // The reproducing policy is valid and keeps refused MSRs refused.
        let reproduced = TracePolicy.reproducing(trace)
        let reparsed = try PolicyLoader.load(PolicyWriter.toml(reproduced), file: "trace.toml")
        #expect(reparsed.rule(for: 0x2474)?.action == .deny)
        #expect(try FilterCompiler.compile(reparsed).ranges.count <= MSRFilter.maxRanges)
        #expect(report.outcome.exitStatus % 2 == 1)
    }

    /// A guest storming random MSRs: the VMM keeps running, memory stays
    /// bounded (statistics cap) and events are rate-limited.
    @Test func stormOfRandomMSRs() throws {
        let events = CollectingEventSink()
        let policy = MSRPolicy(rules: [], defaultAction: .gp, defaultScope: .unknown, logDefault: true)
        let (vm, output) = try machine("long/msr_storm.bin", msr: .policy(policy), events: EventLog(sink: events))
        let report = vm.run()
        #expect(output.text.contains("STORM accesses=20000 gp=20000"))
        #expect(report.outcome == .guestExit(value: 0x33, status: 103))
        #expect(report.statistics[.readMSR].count + report.statistics[.writeMSR].count >= 19_000)
        #expect(events.collected.count <= Int(EventLog.Limits().globalBurst) + 200)
        #expect(report.msrStatistics.entries.count <= MSRStatistics.maxTrackedMSRs)
    }

    @Test func policyThatCannotCompileIsRefusedBeforeTheGuestRuns() throws {
        let rules = (0..<17).map { MSRRule(UInt32($0) * 0x10000, .deny) }
        do {
            _ = try machine("long/hello.bin", msr: .policy(MSRPolicy(rules: rules)))
            Issue.record("a policy needing 17 ranges must be refused")
        } catch let error as MachineError {
            guard case .policy = error else { Issue.record("got \(error)"); return }
            #expect(error.description.contains("16"))
        }
    }

    @Test(.enabled(if: !FileManager.default.isReadableFile(atPath: "/dev/cpu/0/msr"),
                   "/dev/cpu/0/msr is readable here, so the host action cannot fail: test skipped"))
    func hostActionWithoutMSRDriverFailsAtStart() throws {
        do {
            _ = try machine("long/hello.bin", msr: .policy(MSRPolicy(rules: [MSRRule(0xCE, .host)])))
            Issue.record("the host action must fail at start without /dev/cpu/0/msr")
        } catch let error as MachineError {
            guard case .policy = error else { Issue.record("got \(error)"); return }
        }
    }
}

/// Carries an error message out of a vCPU-thread callback.
final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var message: String?
    func set(_ m: String) { lock.withLock { message = m } }
    func get() -> String? { lock.withLock { message } }
}
