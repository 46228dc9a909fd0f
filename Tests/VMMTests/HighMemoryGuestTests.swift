// VMMTests: a guest with RAM above 4 GiB (4096 MiB: RAM below 3 GiB, then
// [4 GiB, 5 GiB) in a slot of its own) under KVM. Guests/long/high_ram.S
// writes a pattern there and checks it, and its tick words, every tick; it
// finishes its checks after a full snapshot and restore and after a diff
// snapshot merged into its base (migration: MachineMigrationTests).
import DeflectTestSupport
import Foundation
import KVM
import Testing
@testable import VMM

private let fourGiB: UInt64 = 1 << 32
/// What high_ram.S prints from start to end.
private let fullOutput = "WRITTEN\n" + (1...400).map { "TICK \($0)\n" }.joined() + "CHECK ok\n"

private func highRAMConfiguration(platform: Platform = .minimal) throws -> MachineConfiguration {
    var config = MachineConfiguration(image: try GuestImages.bytes("long/high_ram.bin"), mode: .long, memoryMiB: 4096,
                                      timeoutSeconds: 120)
    config.platform = platform
    return config
}

@Suite("RAM above 4 GiB", .serialized, .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct HighMemoryGuestTests {
    @Test(arguments: [Platform.minimal, .pc])
    func theGuestWritesAndReadsRAMAbove4GiB(platform: Platform) throws {
        let output = CaptureSink()
        let machine = try Machine(configuration: try highRAMConfiguration(platform: platform), serialOutput: output)
        let slots = machine.ram.regions.map { [$0.start.rawValue, $0.size] }
        let low: [[UInt64]] = platform == .pc
            ? [[0, 0xE_0000], [0xE_0000, 0x2_0000], [0x10_0000, 0xC000_0000 - 0x10_0000]] : [[0, 0xC000_0000]]
        #expect(slots == low + [[fourGiB, 1 << 30]])
        let report = try #require(BackgroundRun(machine, output: output).finish())
        #expect(report.outcome == .guestExit(value: 0x11, status: 35), "\(report.outcome)\n\(output.text.suffix(300))")
        #expect(output.text == fullOutput)
    }

    /// A receiver refuses RAM its guests cannot address in the handshake,
    /// before it makes a memfd for it (here: KVM's table made to say 36 bits).
    @Test func aReceiverRefusesRAMItsGuestsCannotAddress() throws {
        var host = try RestoreHost.current(try KVMSystem())
        host.supportedCPUID = host.supportedCPUID.filter { $0.function != 0x8000_0008 }
            + [CPUIDEntry(function: 0x8000_0008, index: 0, flags: 0, eax: 0x3024, ebx: 0, ecx: 0, edx: 0)]
        #expect(IncomingMigration.addressWidthRefusal(memoryBytes: 64512 << 20, host: host) == nil)
        #expect(IncomingMigration.addressWidthRefusal(memoryBytes: 64513 << 20, host: host)
                == "guest RAM of 64513 MiB is more than this host's 36-bit guest-physical addresses reach (at most 64512 MiB)")
    }

    @Test func itContinuesAfterASnapshotAndRestore() throws {
        let path = try temporaryDirectory() + "/high.snap"
        let output = CaptureSink()
        let first = BackgroundRun(try Machine(configuration: try highRAMConfiguration(), serialOutput: output), output: output)
        #expect(first.waitForOutput("TICK 20\n"))
        try first.machine.pause()
        let summary = try first.machine.snapshot(to: path)
        first.machine.requestStop()
        _ = first.finish()
        // The memory file holds RAM at file offset = guest address: it ends at 5 GiB, the pattern at 4 GiB.
        let memory = try #require(FileHandle(forReadingAtPath: summary.memoryPath))
        #expect(try memory.seekToEnd() == fourGiB + (1 << 30))
        try memory.seek(toOffset: fourGiB)
        let pattern = try #require(try memory.read(upToCount: 8))
        #expect(pattern.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } == 0x5A5A_5A5A_0000_0000 ^ fourGiB)
        // Only pages with data were written: a few MiB, not the GiB above 4 GiB nor the hole.
        #expect(summary.memoryBytes < 16 << 20, "\(summary.memoryBytes)")

        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: try load(path), timeout: 120, serialOutput: secondOutput)
        #expect(restored.ram.regions.last.map { [$0.start.rawValue, $0.size] } == [fourGiB, 1 << 30])
        let report = try #require(BackgroundRun(restored, output: secondOutput).finish())
        #expect(report.outcome == .guestExit(value: 0x11, status: 35), "\(report.outcome)\n\(secondOutput.text.suffix(300))")
        #expect(output.text + secondOutput.text == fullOutput)
    }

    @Test func aDiffSnapshotCarriesTheWritesAbove4GiB() throws {
        let directory = try temporaryDirectory()
        let output = CaptureSink()
        let first = BackgroundRun(try Machine(configuration: try highRAMConfiguration(), serialOutput: output), output: output)
        #expect(first.waitForOutput("TICK 10\n"))
        try first.machine.pause()
        _ = try first.machine.snapshot(to: directory + "/base.snap")
        _ = try first.machine.resume()
        #expect(first.waitForOutput("TICK 30\n"))
        try first.machine.pause()
        let diff = try first.machine.snapshot(to: directory + "/diff.snap", diff: true)
        first.machine.requestStop()
        _ = first.finish()
        // The diff holds the tick words written above 4 GiB since the base (and little else).
        #expect(diff.memoryBytes > 0 && diff.memoryBytes < 4 << 20, "\(diff.memoryBytes)")
        try SnapshotMerge.merge(base: directory + "/base.snap", diff: directory + "/diff.snap")

        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: try load(directory + "/diff.snap"), timeout: 120, serialOutput: secondOutput)
        let report = try #require(BackgroundRun(restored, output: secondOutput).finish())
        // A tick word the diff missed above 4 GiB fails the guest's first check after the restore.
        #expect(report.outcome == .guestExit(value: 0x11, status: 35), "\(report.outcome)\n\(secondOutput.text.suffix(300))")
        #expect(output.text + secondOutput.text == fullOutput)
    }
}
