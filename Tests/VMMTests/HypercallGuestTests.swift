// VMMTests: hypercall features under KVM: what CPUID advertises, the
// migration-control negotiation through the MSR engine, and the end-to-end
// KVM_HC_MAP_GPA_RANGE guest (which runs only where a guest hypercall
// reaches user space; on this nested host VMCALL never returns from KVM_RUN).
import DeflectTestSupport
import Foundation
import Hypercalls
import KVM
import MSRPolicy
import Testing
@testable import VMM

/// Whether a guest hypercall reaches user space here, probed once with a watchdog.
let hypercallProbe: HostProbe.Answer = {
    guard let system = try? KVMSystem() else { return .unknown("/dev/kvm is not usable") }
    return HostProbe.hypercallReachesUserSpace(system: system, timeout: 2)
}()

private func run(_ guest: String, setup: HypercallSetup, msr: MSRSetup = .kernelOnly, timeout: Double = 30)
    throws -> (Machine, RunReport, String) {
    var config = MachineConfiguration(image: try GuestImages.bytes(guest), mode: .long, memoryMiB: 16, timeoutSeconds: timeout)
    config.hypercalls = setup
    config.msr = msr
    let sink = CaptureSink()
    let machine = try Machine(configuration: config, serialOutput: sink, events: EventLog(sink: CollectingEventSink()))
    let report = machine.run()
    return (machine, report, sink.text)
}

private func features(_ output: String) -> UInt64? {
    output.split(separator: "\n").first { $0.hasPrefix("FEATURES 0x") }.flatMap { UInt64($0.dropFirst(11), radix: 16) }
}

@Suite("Hypercall features under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct HypercallFeatureTests {
    @Test func featuresAreNotAdvertisedUnlessHandled() throws {
        let (_, report, output) = try run("long/migration_control.bin", setup: .none)
        let eax = try #require(features(output))
        #expect(eax & (1 << 16) == 0)
        #expect(eax & (1 << 17) == 0)
        #expect(report.outcome.exitStatus % 2 == 1)
    }

    @Test func migrationControlIsNegotiatedThroughTheMSREngine() throws {
        let (machine, report, output) = try run("long/migration_control.bin", setup: HypercallSetup(migrationControl: true))
        let eax = try #require(features(output))
        #expect(eax & (1 << 17) != 0)
        #expect(eax & (1 << 16) == 0)
        #expect(ReportedAccess.parse(output) == [
            ReportedAccess(write: false, index: 0x4B56_4D08, faulted: false, value: 0),
            ReportedAccess(write: true, index: 0x4B56_4D08, faulted: false, value: 1),
            ReportedAccess(write: false, index: 0x4B56_4D08, faulted: false, value: 1),
            ReportedAccess(write: true, index: 0x4B56_4D08, faulted: true, value: 2),
        ])
        #expect(machine.migrationGate?.state == .agreed)
        #expect(machine.migrationGate?.migrationAllowed == true)
        #expect(report.outcome == .guestExit(value: 1, status: 3))
        #expect(report.msrStatistics.entry(for: 0x4B56_4D08)?.writes == 2)
    }

    @Test func migrationControlComposesWithAPolicy() throws {
        let policy = MSRPolicy(rules: [MSRRule(0x2474, .ignore(readValue: 9))], defaultAction: .ignore)
        let (machine, _, output) = try run("long/migration_control.bin", setup: HypercallSetup(migrationControl: true), msr: .policy(policy))
        #expect(machine.migrationGate?.state == .agreed)
        #expect(ReportedAccess.parse(output).count == 4)
        // A policy that claims the MSR itself is refused.
        let clash = MSRPolicy(rules: [MSRRule(0x4B56_4D08, .deny)])
        #expect(throws: MachineError.self) {
            _ = try run("long/migration_control.bin", setup: HypercallSetup(migrationControl: true), msr: .policy(clash))
        }
    }

    @Test(.enabled(if: KVMAvailability.capabilityValue(.exitHypercall) & (1 << 12) != 0,
                   "KVM_CAP_EXIT_HYPERCALL does not offer KVM_HC_MAP_GPA_RANGE (bit 12) here: test skipped"))
    func mapGPARangeIsAdvertisedWhenEnabled() throws {
        let (machine, _, output) = try run("long/migration_control.bin", setup: HypercallSetup(mapGPARange: true))
        let eax = try #require(features(output))
        #expect(eax & (1 << 16) != 0)
        #expect(eax & (1 << 17) == 0)
        #expect(machine.hypercallHandler != nil)
    }
}

@Suite("KVM_HC_MAP_GPA_RANGE end to end",
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)),
       .enabled(if: hypercallProbe.isYes, "guest hypercalls do not reach user space on this host (\(hypercallProbe.text)): end-to-end hypercall test skipped"))
struct MapGPARangeGuestTests {
    @Test func guestConvertsMemoryAndGetsEINVALForBadCalls() throws {
        let (machine, report, output) = try run("long/map_gpa_range.bin", setup: HypercallSetup(mapGPARange: true), timeout: 20)
        #expect(output.contains("HC pass"), "\(output)")
        #expect(report.outcome == .guestExit(value: 0x40, status: 0x81))
        let map = try #require(machine.hypercallHandler?.snapshot())
        #expect(map.attribute(at: 0x200000) == .shared)
        #expect(map.attribute(at: 0x201000) == .private)
        #expect(map.attribute(at: 0x202000) == .shared)
        #expect(machine.hypercallHandler?.callCounts[HypercallNumber.mapGPARange] == 4)
    }
}
