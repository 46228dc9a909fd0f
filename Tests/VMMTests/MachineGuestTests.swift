// VMMTests: whole machines running the repository's guest programs under KVM.
import DeflectTestSupport
import Devices
import Foundation
import KVM
import Loader
import Testing
@testable import VMM

/// Builds and runs a machine with a guest from Guests/build, capturing serial output and events.
private func runGuest(_ name: String, mode: BootMode, vcpus: Int = 1, memoryMiB: Int = 16,
                      timeout: Double = 20, input: [UInt8] = []) throws -> (RunReport, String, [String]) {
    let sink = CaptureSink()
    let events = CollectingEventSink()
    let config = MachineConfiguration(image: try GuestImages.bytes(name), mode: mode, memoryMiB: memoryMiB,
                                      vcpuCount: vcpus, timeoutSeconds: timeout)
    let machine = try Machine(configuration: config, serialOutput: sink, events: EventLog(sink: events))
    if !input.isEmpty { machine.devices.serialInput(input) }
    let report = machine.run()
    return (report, sink.text, events.collected)
}

@Suite("Guests under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct MachineGuestTests {
    @Test func realModeGuestPrintsAndExits() throws {
        let (report, output, _) = try runGuest("real/hello.bin", mode: .real)
        #expect(output == "hello from real mode\n")
        #expect(report.outcome == .guestExit(value: 0x2A, status: 0x55))
        #expect(report.outcome.exitStatus == 85)
        #expect(report.statistics[.ioOut].count >= 21)
        #expect(report.statistics[.ioIn].count >= 20)
    }

    @Test func flatLongModeGuestRunsWithPaging() throws {
        let (report, output, _) = try runGuest("long/hello.bin", mode: .long)
        #expect(output == "hello from long mode\n")
        #expect(report.outcome == .guestExit(value: 0x2B, status: 0x57))
    }

    @Test func elfDemoGuest() throws {
        let (report, output, _) = try runGuest("elf/demo.elf", mode: .elf)
        #expect(output.hasPrefix("Hello from a Deflect guest"))
        #expect(output.contains("hypervisor:  KVMKVMKVM"))
        #expect(output.contains("vCPUs:       0x0000000000000001"))
        #expect(report.outcome.exitStatus == 33)
    }

    @Test(arguments: [2, 4])
    func everyVCPURunsOnItsOwnThread(vcpus: Int) throws {
        let (report, output, _) = try runGuest("long/smp.bin", mode: .long, vcpus: vcpus)
        #expect(report.outcome == .guestExit(value: UInt32(vcpus), status: Int32(vcpus << 1 | 1)))
        #expect(output.contains("vCPUs checked in: " + String(repeating: "0", count: 15) + "\(vcpus)"))
        #expect(report.perVCPU.count == vcpus)
        #expect(report.stuckVCPUs.isEmpty)
    }

    @Test func tripleFaultReportsRegisters() throws {
        let (report, _, _) = try runGuest("long/triple_fault.bin", mode: .long)
        guard case let .tripleFault(dump) = report.outcome else {
            Issue.record("expected a triple fault, got \(report.outcome)")
            return
        }
        #expect(dump.registers?.rax == 0x1234_ABCD)
        #expect(report.outcome.exitStatus == ExitStatus.tripleFault)
        #expect(report.outcome.report.contains("RIP="))
    }

    @Test func neverEndingGuestIsStoppedByTheTimeout() throws {
        let started = ContinuousClock.now
        let (report, _, _) = try runGuest("real/spin.bin", mode: .real, vcpus: 2, timeout: 1)
        guard case let .timeout(seconds, dumps) = report.outcome else {
            Issue.record("expected a timeout, got \(report.outcome)")
            return
        }
        #expect(seconds == 1)
        #expect(dumps.count == 2)
        #expect(dumps.allSatisfy { $0.registers?.rip == 0x7C00 })
        #expect(report.outcome.exitStatus == ExitStatus.timeout)
        #expect(ContinuousClock.now - started < .seconds(6))
    }

    @Test func hypercallGuestNeverHangsTheVMM() throws {
        // On this nested host VMCALL never returns from KVM_RUN: the kick must end it.
        // Elsewhere KVM answers the hypercall itself and the guest exits with value 7.
        let started = ContinuousClock.now
        let (report, _, _) = try runGuest("real/vmcall.bin", mode: .real, timeout: 2)
        switch report.outcome {
        case .timeout, .guestExit(value: 7, status: 15): break
        default: Issue.record("unexpected outcome \(report.outcome)")
        }
        #expect(report.stuckVCPUs.isEmpty)
        #expect(ContinuousClock.now - started < .seconds(8))
    }

    @Test func haltedGuestEndsWithStatusZero() throws {
        let (report, _, _) = try runGuest("real/halt.bin", mode: .real, vcpus: 3)
        #expect(report.outcome == .allHalted)
        #expect(report.outcome.exitStatus == 0)
        #expect(report.statistics[.halt].count == 3)
    }

    @Test func i8042ResetEndsTheRun() throws {
        let (report, _, _) = try runGuest("real/reset.bin", mode: .real)
        #expect(report.outcome == .resetRequested(vcpu: 0))
        #expect(report.outcome.exitStatus == ExitStatus.reset)
    }

    @Test func unownedPortsReadAllOnesAndMakeEvents() throws {
        let (report, _, events) = try runGuest("real/ports.bin", mode: .real)
        #expect(report.outcome == .guestExit(value: 1, status: 3))
        #expect(events.contains("vcpu=0 unowned port read port=0x2f8 size=1 -> all ones"))
        #expect(events.contains("vcpu=0 unowned port write port=0x2f8 size=1 value=0x55 dropped"))
    }

    @Test func unownedMMIOReadsAllOnesAndMakesEvents() throws {
        let (report, _, events) = try runGuest("long/mmio.bin", mode: .long)
        #expect(report.outcome == .guestExit(value: 1, status: 3))
        #expect(events.contains("vcpu=0 unowned MMIO read address=0xfec00000 length=4 -> all ones"))
        #expect(events.contains("vcpu=0 unowned MMIO write address=0xfec00000 length=4 value=0x12345678 dropped"))
    }

    @Test func serialInputReachesTheGuest() throws {
        let (report, output, _) = try runGuest("real/echo.bin", mode: .real, input: Array("Q".utf8))
        #expect(output == "Q")
        #expect(report.outcome == .guestExit(value: 0x51, status: 0xA3))
    }

    @Test func requestStopEndsARunningGuest() throws {
        let config = MachineConfiguration(image: try GuestImages.bytes("real/spin.bin"), mode: .real, memoryMiB: 4, timeoutSeconds: 30)
        let machine = try Machine(configuration: config, serialOutput: BufferSink())
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { machine.requestStop() }
        let report = machine.run()
        #expect(report.outcome == .interruptedByUser)
        #expect(report.wallSeconds < 10)
        // A machine runs once.
        guard case .hostError = machine.run().outcome else { Issue.record("second run must be refused"); return }
    }
}

@Suite("Machine configuration")
struct MachineConfigurationTests {
    @Test(arguments: [0, MachineConfiguration.memoryRangeMiB.upperBound + 1, -1])
    func memoryOutOfRange(mib: Int) {
        let config = MachineConfiguration(image: [0xF4], mode: .real, memoryMiB: mib)
        #expect(throws: MachineError.self) { try config.validate() }
    }

    @Test(arguments: [0, 65, -3])
    func vcpusOutOfRange(count: Int) {
        let config = MachineConfiguration(image: [0xF4], mode: .real, vcpuCount: count)
        #expect(throws: MachineError.self) { try config.validate() }
    }

    @Test func badTimeout() {
        for t in [0.0, -1, .nan, 100_000] {
            let config = MachineConfiguration(image: [0xF4], mode: .real, timeoutSeconds: t)
            #expect(throws: MachineError.self) { try config.validate() }
        }
    }

    @Test func imageThatDoesNotFitIsRefusedBeforeRunning() throws {
        let config = MachineConfiguration(image: [UInt8](repeating: 0x90, count: 3 << 20), mode: .long, memoryMiB: 2)
        #expect(throws: MachineError.self) { _ = try Machine(configuration: config, serialOutput: BufferSink()) }
        do {
            _ = try Machine(configuration: config, serialOutput: BufferSink())
        } catch {
            guard case .image = error else { Issue.record("expected an image error, got \(error)"); return }
        }
    }

    @Test func missingKVMDeviceIsKVMUnavailable() {
        let config = MachineConfiguration(image: [0xF4], mode: .real, kvmDevicePath: "/nonexistent/kvm")
        do {
            _ = try Machine(configuration: config, serialOutput: BufferSink())
            Issue.record("a machine without /dev/kvm must not build")
        } catch {
            guard case .kvmUnavailable = error else { Issue.record("got \(error)"); return }
            #expect(error.description.contains("/nonexistent/kvm"))
            #expect(error.description.contains("ENOENT"))
        }
    }
}
