// VMMTests: the PC platform under KVM (in-kernel irqchip and PIT, read-only
// BIOS area with ACPI tables, platform devices), with the flat guests and the
// multiboot test kernels of Guests/multiboot.
import DeflectTestSupport
import Foundation
import Loader
import Testing
@testable import VMM

private func runPC(_ guest: String, mode: BootMode, vcpus: Int = 1, memoryMiB: Int = 64,
                   commandLine: String = "", modules: [MultibootModule] = [], timeout: Double = 60)
    throws -> (RunReport, String, [String]) {
    var config = MachineConfiguration(image: try GuestImages.bytes(guest), mode: mode, memoryMiB: memoryMiB,
                                      vcpuCount: vcpus, timeoutSeconds: timeout)
    config.platform = .pc
    config.commandLine = commandLine
    config.modules = modules
    let sink = CaptureSink()
    let events = CollectingEventSink()
    let machine = try Machine(configuration: config, serialOutput: sink, events: EventLog(sink: events))
    let report = machine.run()
    return (report, sink.text, events.collected)
}

@Suite("PC platform under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct PCPlatformTests {
    @Test func flatGuestsStillStartEveryVCPUWithAnInKernelAPIC() throws {
        let (report, output, _) = try runPC("long/smp.bin", mode: .long, vcpus: 4)
        #expect(report.outcome == .guestExit(value: 4, status: 9))
        #expect(output.contains("vCPUs checked in: 0000000000000004"))
    }

    @Test func acpiTablesAreReadOnlyToTheGuest() throws {
        let (report, _, events) = try runPC("long/rom_write.bin", mode: .long)
        #expect(report.outcome == .guestExit(value: 1, status: 3))
        #expect(events.contains("vcpu=0 write to read-only memory address=0xf0000 length=8 value=0x0 dropped"))
    }

    @Test func multibootNeedsMoreThanTheBIOSArea() throws {
        var config = MachineConfiguration(image: try GuestImages.bytes("long/hello.bin"), mode: .long, memoryMiB: 1)
        config.platform = .pc
        #expect(throws: MachineError.self) { _ = try Machine(configuration: config, serialOutput: CaptureSink()) }
    }
}
