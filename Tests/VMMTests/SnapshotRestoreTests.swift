// VMMTests: snapshot and restore of whole machines under KVM: a guest
// printing a sequence continues in a new machine with no gap and no repeat;
// emulated MSR values continue; snapshot → restore → snapshot gives the same
// state (clocks aside); a damaged state or memory file is refused with one
// line, never half restored.
import DeflectTestSupport
import Devices
import Foundation
import KVM
import KVMABI
import MSRPolicy
import Snapshot
import Testing
@testable import VMM

private func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "deflect-snap-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func load(_ path: String) throws -> LoadedSnapshot {
    let system = try KVMSystem()
    return try LoadedSnapshot.load(path, host: try SnapshotHost.current(system), kvmAPIVersion: UInt32(try system.apiVersion()))
}

@Suite("Snapshot and restore under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotRestoreTests {
    @Test func aSequenceContinuesInANewMachineWithNoGapAndNoRepeat() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/seq.snap"
        let first = try BackgroundRun("long/sequence.bin")
        #expect(first.waitForOutput("SEQ 300\n"))
        try first.machine.pause()
        let summary = try first.machine.snapshot(to: path)
        #expect(summary.memoryBytes == 16 << 20)
        first.machine.requestStop()
        _ = first.finish()
        let before = first.output.text

        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: try load(path), timeout: 120, serialOutput: secondOutput)
        let second = BackgroundRun(restored, output: secondOutput)
        let report = try #require(second.finish())
        #expect(report.outcome == .guestExit(value: 0x11, status: 35))
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(before + secondOutput.text == expected)
    }

    @Test func emulatedMSRValuesContinue() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/msr.snap"
        let policy = MSRPolicy(rules: [MSRRule(0x2474, .emulate(Emulation()))])
        let first = try BackgroundRun("long/msr_counter.bin", msr: .policy(policy))
        Thread.sleep(forTimeInterval: 0.2)
        try first.machine.pause()
        let saved = first.machine.msrRuntime?.emulatedValues().first { $0.index == 0x2474 }?.value ?? 0
        _ = try first.machine.snapshot(to: path)
        first.machine.requestStop()
        _ = first.finish()
        #expect(saved > 0 && saved < 30000, "the guest was at \(saved)")

        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: try load(path), timeout: 120, serialOutput: secondOutput)
        #expect(restored.msrRuntime?.emulatedValues().first { $0.index == 0x2474 }?.value == saved)
        let report = try #require(BackgroundRun(restored, output: secondOutput).finish())
        #expect(secondOutput.text == "COUNT 30000\n")
        #expect(report.outcome == .guestExit(value: 0x12, status: 37))
    }

    @Test func snapshotOfARestoredMachineIsTheSame() throws {
        let directory = try temporaryDirectory()
        let first = try BackgroundRun("long/sequence.bin", vcpus: 2)
        #expect(first.waitForOutput("SEQ"))
        try first.machine.pause()
        _ = try first.machine.snapshot(to: directory + "/a.snap")
        first.machine.requestStop()
        _ = first.finish()

        let restored = try Machine(restoring: try load(directory + "/a.snap"), timeout: 60, serialOutput: CaptureSink())
        restored.startsPaused = true
        let second = BackgroundRun(restored, output: CaptureSink())
        let deadline = Date().addingTimeInterval(20)
        while restored.state != .paused && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        #expect(restored.state == .paused)
        _ = try restored.snapshot(to: directory + "/b.snap")
        restored.requestStop()
        _ = second.finish()

        let a = try load(directory + "/a.snap"), b = try load(directory + "/b.snap")
        #expect(a.configuration == b.configuration)
        #expect(a.devices == b.devices || a.devices.keys == b.devices.keys)
        #expect(a.user.emulatedMSRs == b.user.emulatedMSRs)
        #expect(a.user.pageMap == b.user.pageMap)
        for (x, y) in zip(a.vcpus, b.vcpus) {
            #expect(try x.generalRegisters() == y.generalRegisters())
        }
        let memoryA = try #require(a.memoryPath), memoryB = try #require(b.memoryPath)
        #expect(try Data(contentsOf: URL(fileURLWithPath: memoryA)) == Data(contentsOf: URL(fileURLWithPath: memoryB)))
    }

    /// Four vCPUs on the PC platform: in-kernel LAPICs, IOAPIC, PICs and the
    /// PIT (running at 18.2 Hz in the BIOS environment) are saved and put back.
    @Test func fourVCPUsOnThePCPlatformContinue() throws {
        let directory = try temporaryDirectory()
        var config = MachineConfiguration(image: try GuestImages.bytes("long/sequence.bin"), mode: .long, memoryMiB: 16,
                                          vcpuCount: 4, timeoutSeconds: 120)
        config.platform = .pc
        let output = CaptureSink()
        let first = BackgroundRun(try Machine(configuration: config, serialOutput: output), output: output)
        #expect(first.waitForBytes(200))   // four vCPUs interleave their lines
        try first.machine.pause()
        let pit = try first.machine.vm.pitState()
        _ = try first.machine.snapshot(to: directory + "/pc.snap")
        first.machine.requestStop()
        _ = first.finish()

        let loaded = try load(directory + "/pc.snap")
        #expect(loaded.vcpus.count == 4)
        #expect(loaded.vcpus.allSatisfy { $0.localAPIC != nil })
        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: loaded, timeout: 120, serialOutput: secondOutput)
        #expect(try restored.vm.pitState().channels[0].count == pit.channels[0].count)
        let report = try #require(BackgroundRun(restored, output: secondOutput).finish())
        // A vCPU finished its 2,000 lines after the restore (four vCPUs interleave their bytes).
        #expect(report.outcome == .guestExit(value: 0x11, status: 35), "\(report.outcome)")
        #expect(secondOutput.bytes.count > 1000)
    }

    /// PIT and PIC interrupts keep arriving after a restore: a real-mode
    /// guest counting IRQ 0 (18.2 Hz) between HLTs prints consecutive lines
    /// across the snapshot, and finishes only if ticks go on.
    @Test func timerInterruptsContinueAfterRestore() throws {
        let directory = try temporaryDirectory()
        var config = MachineConfiguration(image: try GuestImages.bytes("real/pit_ticks.bin"), mode: .real, memoryMiB: 16,
                                          timeoutSeconds: 60)
        config.platform = .pc
        let output = CaptureSink()
        let first = BackgroundRun(try Machine(configuration: config, serialOutput: output), output: output)
        #expect(first.waitForOutput("TICK 0005\n"))
        try first.machine.pause()
        _ = try first.machine.snapshot(to: directory + "/ticks.snap")
        first.machine.requestStop()
        _ = first.finish()

        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: try load(directory + "/ticks.snap"), timeout: 60, serialOutput: secondOutput)
        let report = try #require(BackgroundRun(restored, output: secondOutput).finish())
        #expect(report.outcome == .guestExit(value: 0x15, status: 43), "\(report.outcome)")
        let expected = (1...40).map { "TICK " + paddedHexDigits($0, 4) + "\n" }.joined()
        #expect(output.text + secondOutput.text == expected)
    }

    @Test func damagedFilesAreRefusedWithOneLine() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/d.snap"
        let run = try BackgroundRun("long/sequence.bin")
        #expect(run.waitForOutput("SEQ 5\n"))
        try run.machine.pause()
        _ = try run.machine.snapshot(to: path)
        run.machine.requestStop()
        _ = run.finish()
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))

        func refused(_ bytes: [UInt8], _ fragment: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
            let damaged = directory + "/damaged.snap"
            try Data(bytes).write(to: URL(fileURLWithPath: damaged))
            try? FileManager.default.removeItem(atPath: damaged + ".mem")
            try FileManager.default.copyItem(atPath: path + ".mem", toPath: damaged + ".mem")
            do {
                _ = try Machine(restoring: try load(damaged), timeout: 5, serialOutput: CaptureSink())
                Issue.record("a damaged snapshot was accepted", sourceLocation: sourceLocation)
            } catch let error as MachineError {
                #expect("\(error)".contains(fragment), "\(error)", sourceLocation: sourceLocation)
                #expect(!"\(error)".contains("\n"), sourceLocation: sourceLocation)
            }
        }
        try refused(Array(good.prefix(good.count / 2)), "snapshot")
        var flipped = good
        flipped[good.count / 3] ^= 0x10
        try refused(flipped, "snapshot")
        var magic = good
        magic[0] ^= 0xFF
        try refused(magic, "snapshot")
        // A memory file of the wrong size (the state file names "d.snap.mem").
        try Data(count: 4096).write(to: URL(fileURLWithPath: path + ".mem"))
        do {
            _ = try Machine(restoring: try load(path), timeout: 5, serialOutput: CaptureSink())
            Issue.record("a memory file of the wrong size was accepted")
        } catch let error as MachineError {
            #expect("\(error)".contains("memory file"), "\(error)")
        }
    }
}
