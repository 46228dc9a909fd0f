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
    try LoadedSnapshot.load(path, on: try RestoreHost.current(try KVMSystem()))
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
        // Only the pages with data (image, page tables, stack); zero pages are holes.
        #expect(summary.memoryBytes > 0 && summary.memoryBytes < 1 << 20)
        #expect((try? FileManager.default.attributesOfItem(atPath: path + ".mem")[.size] as? Int) == 16 << 20)
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
        let second = BackgroundRun(restored, output: CaptureSink(), startingPaused: true)
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
        let output = try BackgroundRun(realModePC: "real/pit_ticks.bin")
            .snapshotAndStop(after: "TICK 0005\n", to: directory + "/ticks.snap")

        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: try load(directory + "/ticks.snap"), timeout: 60, serialOutput: secondOutput)
        let report = try #require(BackgroundRun(restored, output: secondOutput).finish())
        #expect(report.outcome == .guestExit(value: 0x15, status: 43), "\(report.outcome)")
        let expected = (1...40).map { "TICK " + paddedHexDigits($0, 4) + "\n" }.joined()
        #expect(output.text + secondOutput.text == expected)
    }

    /// The PIT (IRQ 0 through the PIC, as LVT0 ExtINT) and the local APIC
    /// timer in periodic mode (x2APIC MSRs, from real mode) both keep
    /// interrupting after a restore in a new machine: the guest's two counts
    /// go on from where they were and keep growing.
    @Test func pitAndLocalAPICTimerInterruptsContinueAfterRestore() throws {
        let directory = try temporaryDirectory()
        let output = try BackgroundRun(realModePC: "real/timers.bin")
            .snapshotAndStop(after: "pit=000c ", to: directory + "/timers.snap")
        let before = TimerCounts.parse(output.text)
        let saved = try #require(before.last, "\(output.text)")
        #expect(saved.lapic > 0, "the LAPIC timer never fired: \(output.text)")

        let loaded = try load(directory + "/timers.snap")
        // A PC snapshot needs the in-kernel irqchip and PIT from the restoring host.
        let needs = try loaded.file.decode(HostRequirements.self, section: HostRequirements.sectionName)
        #expect(Set(needs.capabilities.map(\.name)).isSuperset(of: ["KVM_CAP_IRQCHIP", "KVM_CAP_PIT2"]), "\(needs)")
        let secondOutput = CaptureSink()
        let restored = try Machine(restoring: loaded, timeout: 60, serialOutput: secondOutput)
        let second = BackgroundRun(restored, output: secondOutput)
        // Five more lines (4 PIT ticks each) after the restore.
        let awaited = second.waitForOutput("pit=" + paddedHexDigits(Int(saved.pit) + 20, 4) + " ")
        restored.requestStop()
        _ = second.finish()
        #expect(awaited, "\(secondOutput.text)")
        // A line cut by the snapshot ends in the second output: count whole lines.
        let after = Array(TimerCounts.parse(output.text + secondOutput.text).dropFirst(before.count))
        // The PIT lines are consecutive across the restore (every fourth tick) ...
        #expect((before + after).map(\.pit) == (1...(before.count + after.count)).map { UInt16($0 * 4) },
                "\(output.text)---\n\(secondOutput.text)")
        // ... and the LAPIC count goes on from where it was and keeps growing.
        let lapic = after.map(\.lapic)
        #expect(lapic.first.map { $0 >= saved.lapic } == true, "\(saved) then \(lapic)")
        #expect(zip(lapic, lapic.dropFirst()).allSatisfy { $0 < $1 }, "\(lapic)")
        #expect(Int(lapic.last ?? 0) - Int(saved.lapic) >= 20, "about 100 Hz for more than a second: \(saved) then \(lapic)")
    }

    /// The `host` section records what a restore needs; a host that lacks a
    /// recorded KVM capability or CPUID feature is refused before anything is
    /// built, with one line naming it. A snapshot without the section (as
    /// older ones are) still loads.
    @Test func aSnapshotNeedingWhatThisHostLacksIsRefused() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/needs.snap"
        try snapshotOfASequenceGuest(to: path)
        let system = try KVMSystem()
        let recorded = try load(path).file.decode(HostRequirements.self, section: HostRequirements.sectionName)
        #expect(recorded.cpuidFeatures.contains { $0.function == 1 && $0.register == "edx" }, "\(recorded)")

        func refused(_ needs: HostRequirements, _ fragment: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
            let changed = directory + "/changed.snap"
            try rewrite(path, to: changed, host: needs)
            do {
                _ = try load(changed)
                Issue.record("a snapshot needing what this host lacks was accepted", sourceLocation: sourceLocation)
            } catch {
                #expect("\(error)".contains(fragment), "\(error)", sourceLocation: sourceLocation)
                #expect(!"\(error)".contains("\n"), sourceLocation: sourceLocation)
            }
        }
        // An XSAVE image larger than this host's KVM_CAP_XSAVE2 offers.
        let xsave2 = max(try system.check(.xsave2), 4096)
        var needs = recorded
        needs.capabilities.append(.init(.xsave2, minimum: xsave2 + 4096, reason: "an XSAVE image of \(xsave2 + 4096) bytes"))
        try refused(needs, "KVM_CAP_XSAVE2 >= \(xsave2 + 4096)")
        // A capability this host's KVM does not know at all.
        needs = recorded
        needs.capabilities.append(.init(Capability(rawValue: 0xFFFF), reason: "a future feature"))
        try refused(needs, "needs KVM_CAP_65535 (a future feature); this host's KVM lacks it")
        // A CPUID feature bit KVM_GET_SUPPORTED_CPUID here does not offer.
        let leaf7 = try system.supportedCPUID().first { $0.function == 7 && $0.index == 0 }?.ebx ?? 0
        let absentBit = try #require((0..<32).map { UInt32(1) << $0 }.first { leaf7 & $0 == 0 })
        needs = recorded
        needs.cpuidFeatures.append(.init(function: 7, index: 0, register: "ebx", bits: absentBit))
        try refused(needs, "CPUID.(EAX=0x7,ECX=0):EBX has bits 0x\(String(absentBit, radix: 16))")

        // Without the section (an older snapshot) the restore goes ahead.
        try rewrite(path, to: directory + "/old.snap", host: nil)
        let old = try load(directory + "/old.snap")
        #expect(old.file.section(named: HostRequirements.sectionName) == nil)
        _ = try Machine(restoring: old, timeout: 5, serialOutput: CaptureSink())
    }

    @Test func aSnapshotFromAnotherCPUVendorIsRefused() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/vendor.snap"
        try snapshotOfASequenceGuest(to: path)
        var host = try RestoreHost.current(try KVMSystem())
        let saved = host.cpu.vendor
        host.cpu.vendor = saved == "AuthenticAMD" ? "GenuineIntel" : "AuthenticAMD"
        let error = #expect(throws: MachineError.self) { try LoadedSnapshot.load(path, on: host) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("taken on a \(saved) CPU; this host is \(host.cpu.vendor)"), "\(String(describing: error))")
    }

    @Test func damagedFilesAreRefusedWithOneLine() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/d.snap"
        try snapshotOfASequenceGuest(to: path)
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

/// A snapshot of long/sequence.bin a few lines in, at `path`; the machine is stopped.
private func snapshotOfASequenceGuest(to path: String) throws {
    try BackgroundRun("long/sequence.bin").snapshotAndStop(after: "SEQ 5\n", to: path)
}

extension BackgroundRun {
    /// A real-mode guest on the PC platform (in-kernel irqchip and PIT, BIOS environment), 16 MiB.
    fileprivate convenience init(realModePC guest: String) throws {
        var config = MachineConfiguration(image: try GuestImages.bytes(guest), mode: .real, memoryMiB: 16, timeoutSeconds: 60)
        config.platform = .pc
        let output = CaptureSink()
        self.init(try Machine(configuration: config, serialOutput: output), output: output)
    }

    /// Once the output contains `text`: pauses, snapshots to `path`, stops the
    /// machine and returns what the guest printed.
    @discardableResult
    fileprivate func snapshotAndStop(after text: String, to path: String,
                                     sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> CaptureSink {
        #expect(waitForOutput(text), "\(output.text)", sourceLocation: sourceLocation)
        try machine.pause()
        _ = try machine.snapshot(to: path)
        machine.requestStop()
        _ = finish()
        return output
    }
}

/// Writes the state file at `path` again to `target` in the same directory
/// (its memory section still names the original memory file) with `host` as
/// its `host` section, or without one.
private func rewrite(_ path: String, to target: String, host: HostRequirements?) throws {
    let original = try SnapshotFile(parsing: [UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
    var file = SnapshotFile(kvmAPIVersion: original.kvmAPIVersion, host: original.host)
    for section in original.sections where section.name != HostRequirements.sectionName {
        try file.append(section: section.name, payload: section.payload)
    }
    if let host { try file.append(section: HostRequirements.sectionName, encoding: host) }
    try Data(try file.serialized()).write(to: URL(fileURLWithPath: target))
}

/// One "pit=xxxx lapic=xxxx" line of Guests/real/timers.S.
private struct TimerCounts: Equatable {
    let pit: UInt16
    let lapic: UInt16

    /// The counts of every whole line (ended by a newline) in `text`.
    static func parse(_ text: String) -> [TimerCounts] {
        text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count == 2, fields[0].hasPrefix("pit="), fields[1].hasPrefix("lapic="),
                  let pit = UInt16(fields[0].dropFirst(4), radix: 16),
                  let lapic = UInt16(fields[1].dropFirst(6), radix: 16) else { return nil }
            return TimerCounts(pit: pit, lapic: lapic)
        }
    }
}
