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
import Synchronization
import Testing
@testable import VMM

/// A new directory for a test's snapshot files.
func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "deflect-snap-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A snapshot loaded for a restore on this host.
func load(_ path: String) throws -> LoadedSnapshot {
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
        #expect((try? FileManager.default.attributesOfItem(atPath: summary.memoryPath)[.size] as? Int) == 16 << 20)
        #expect(summary.memoryPath.hasPrefix(path + ".mem-"))
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
        let needs = try loaded.file.decode(HostRequirements.self, section: .host)
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
        let recorded = try load(path).file.decode(HostRequirements.self, section: .host)
        #expect(recorded.cpuidFeatures.contains { $0.function == 1 && $0.register == .edx }, "\(recorded)")

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
        needs.cpuidFeatures.append(.init(function: 7, index: 0, register: .ebx, bits: absentBit))
        try refused(needs, "CPUID.(EAX=0x7,ECX=0):EBX has bits 0x\(String(absentBit, radix: 16))")

        // Without the section (an older snapshot) the restore goes ahead.
        try rewrite(path, to: directory + "/old.snap", host: nil)
        let old = try load(directory + "/old.snap")
        #expect(old.file.section(named: .host) == nil)
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
            // Its memory section still names d.snap's memory file, beside it.
            try Data(bytes).write(to: URL(fileURLWithPath: damaged))
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
        // A memory file of the wrong size.
        let memory = directory + "/" + (try #require(SnapshotReplacement.memoryFileName(statePath: path)))
        try Data(count: 4096).write(to: URL(fileURLWithPath: memory))
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
    for section in original.sections where section.name != SnapshotSectionName.host.rawValue {
        try file.append(section: section.name, payload: section.payload)
    }
    if let host { try file.append(.host, encoding: host) }
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

/// A tmpfs of a few MiB mounted for one test (root only): a disk that fills up.
private final class SmallTmpfs {
    let path: String

    /// Whether this process may mount a tmpfs (tried once, on a scratch directory).
    static let available: Bool = {
        guard let probe = try? SmallTmpfs(mebibytes: 1) else { return false }
        _ = probe
        return true
    }()

    init(mebibytes: Int) throws {
        path = NSTemporaryDirectory() + "deflect-tmpfs-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard Self.run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=\(mebibytes)m", "tmpfs", path]) else {
            try? FileManager.default.removeItem(atPath: path)
            throw MachineError.host("cannot mount a tmpfs on \(path)")
        }
    }

    deinit {
        _ = Self.run("/usr/bin/umount", [path])
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Bytes still free.
    var freeBytes: UInt64 {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return 0 }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    /// Fills the file system until `leaving` bytes are free (a file `filler`).
    func fill(leaving: UInt64) throws {
        let free = freeBytes
        try Data(count: Int(free > leaving ? free - leaving : 0)).write(to: URL(fileURLWithPath: path + "/filler"))
    }

    func unfill() { try? FileManager.default.removeItem(atPath: path + "/filler") }

    private static func run(_ tool: String, _ arguments: [String]) -> Bool {
        guard let process = try? Process.run(URL(fileURLWithPath: tool), arguments: arguments) else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }
}

/// The names in `directory`, sorted.
private func entries(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

@Suite("Snapshots replace the pair at PATH all or nothing", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotReplacementTests {
    /// Overwriting a snapshot on a disk that fills up — with no room for
    /// the new memory file, with room for half of it, with room for it but
    /// not the state file — fails with one line; each time the old pair is
    /// exactly as it was (same bytes, same memory file), nothing else is
    /// left, and at the end the old pair restores and the guest continues
    /// from it with no gap and no repeat.
    @Test(.enabled(if: SmallTmpfs.available, "mounting a tmpfs needs root (CAP_SYS_ADMIN); the ENOSPC test is skipped"))
    func aFullDiskDuringAnOverwriteLeavesTheOldPair() throws {
        let disk = try SmallTmpfs(mebibytes: 8)
        let path = disk.path + "/s.snap"
        let first = try BackgroundRun("long/sequence.bin")
        #expect(first.waitForOutput("SEQ 300\n"))
        try first.machine.pause()
        let old = try first.machine.snapshot(to: path)
        let before = first.output.text
        let oldState = try Data(contentsOf: URL(fileURLWithPath: path))
        let oldEntries = entries(disk.path)
        #expect(oldEntries == ["s.snap", (old.memoryPath as NSString).lastPathComponent])
        try first.machine.resume()
        #expect(first.waitForOutput("SEQ 900\n"))
        try first.machine.pause()
        for leaving in [UInt64(0), old.memoryBytes / 2, old.memoryBytes + 8192] {
            try disk.fill(leaving: leaving)
            let error = #expect(throws: MachineError.self, "with \(leaving) bytes free") { try first.machine.snapshot(to: path) }
            #expect("\(error.map { "\($0)" } ?? "")".contains("No space left on device"), "\(String(describing: error))")
            disk.unfill()
            #expect(entries(disk.path) == oldEntries, "with \(leaving) bytes free")
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == oldState)
        }
        first.machine.requestStop()
        _ = first.finish()

        let output = CaptureSink()
        let report = try #require(BackgroundRun(try Machine(restoring: try load(path), timeout: 120, serialOutput: output),
                                                output: output).finish())
        #expect(report.outcome == .guestExit(value: 0x11, status: 35))
        #expect(before + output.text == (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n")
    }

    /// While another writer holds PATH's lock a snapshot to PATH is refused
    /// at once with a clear error and nothing changes; two machines racing
    /// to one PATH: each attempt succeeds or gets that error, and what is
    /// left is one complete pair (its checksums verify) and nothing else.
    @Test func twoSnapshotsToOnePathAtOnce() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/race.snap"
        let a = try BackgroundRun("long/sequence.bin"), b = try BackgroundRun("long/sequence.bin")
        #expect(a.waitForOutput("SEQ 5\n") && b.waitForOutput("SEQ 5\n"))
        try a.machine.pause()
        try b.machine.pause()
        defer {
            a.machine.requestStop(); b.machine.requestStop()
            _ = a.finish(); _ = b.finish()
        }
        do {
            let held = try #require(try FileLock.acquire(directory + "/.race.snap.lock"))
            let error = #expect(throws: MachineError.self) { try a.machine.snapshot(to: path) }
            #expect("\(error.map { "\($0)" } ?? "")".contains("cannot write \(path): another snapshot to it is being written"))
            #expect(entries(directory) == [".race.snap.lock"])
            _ = held
        }
        let machines = [a.machine, b.machine]
        for _ in 0..<8 {
            let outcomes = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let outcome: String
                do {
                    _ = try machines[i].snapshot(to: path)
                    outcome = "ok"
                } catch {
                    outcome = "\(error)"
                }
                outcomes.withLock { $0.append(outcome) }
            }
            let results = outcomes.withLock { $0 }
            #expect(results.contains("ok"), "\(results)")
            #expect(results.allSatisfy { $0 == "ok" || $0.contains("another snapshot to it is being written") }, "\(results)")
            let memory = try #require(SnapshotReplacement.memoryFileName(statePath: path))
            #expect(entries(directory) == [memory, "race.snap"].sorted())
            _ = try load(path)   // checks the memory file's size and every chunk's CRC-64
        }
    }

    /// One flipped byte in the memory file: the restore is refused naming
    /// the chunk and the file; `verifyMemory: false` (restore
    /// --no-verify-memory) still checks the size but not the bytes.
    @Test func aFlippedMemoryByteIsFoundByItsChunkChecksum() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/flip.snap"
        try snapshotOfASequenceGuest(to: path)
        let memory = directory + "/" + (try #require(SnapshotReplacement.memoryFileName(statePath: path)))
        let handle = try #require(FileHandle(forUpdatingAtPath: memory))
        try handle.seek(toOffset: (3 << 20) / 2)   // inside the guest image at 1 MiB: chunk 1
        let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
        try handle.seek(toOffset: (3 << 20) / 2)
        try handle.write(contentsOf: Data([byte ^ 0x01]))
        try handle.close()
        let error = #expect(throws: MachineError.self) { try load(path) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("the memory file \(memory) is damaged: chunk 1 (bytes 0x100000..<0x200000)"),
                "\(String(describing: error))")
        _ = try LoadedSnapshot.load(path, on: try RestoreHost.current(try KVMSystem()), verifyMemory: false)
    }
}

@Suite("The snapshot format contract", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotFormatContractTests {
    /// A snapshot over one written by an earlier version (memory file
    /// `N.mem`, the fixture's naming) replaces that pair: afterwards PATH
    /// names its own `N.mem-<16 hex>` and the old `N.mem` is gone.
    @Test func overwritingAnOlderSnapshotRemovesItsMemoryFile() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/seq.snap"
        for name in ["seq.snap", "seq.snap.mem"] {
            try FileManager.default.copyItem(atPath: (SnapshotFixtureTests.fixture as NSString).deletingLastPathComponent + "/" + name,
                                             toPath: directory + "/" + name)
        }
        try snapshotOfASequenceGuest(to: path)
        let memory = try #require(SnapshotReplacement.memoryFileName(statePath: path))
        #expect(memory.hasPrefix("seq.snap.mem-") && memory.count == "seq.snap.mem-".count + 16)
        #expect(entries(directory) == [memory, "seq.snap"].sorted())
    }

    /// Saved enumerations are typed: a value this version does not know is
    /// refused when the section is decoded, naming the field.
    @Test func anUnknownEnumerationValueIsRefusedNamingTheField() throws {
        let directory = try temporaryDirectory()
        let path = directory + "/enum.snap"
        try snapshotOfASequenceGuest(to: path)
        let original = try SnapshotFile(parsing: try AtomicFile.read(path, limit: 1 << 24))
        for (section, field, from, to) in [(SnapshotSectionName.config, "mode", "\"long\"", "\"bogus\""),
                                           (.config, "platform", "\"minimal\"", "\"mainframe\""),
                                           (.user, "msrMode", "\"kernel-only\"", "\"kernel-maybe\""),
                                           (.memory, "kind", "\"full\"", "\"half\""),
                                           (.host, "register", "\"edx\"", "\"esx\"")] {
            var file = SnapshotFile(kvmAPIVersion: original.kvmAPIVersion, host: original.host)
            for entry in original.sections {
                var payload = entry.payload
                if entry.name == section.rawValue {
                    let text = String(decoding: payload, as: UTF8.self)
                    #expect(text.contains("\"\(field)\":\(from)"), "\(text.prefix(300))")
                    payload = Array(text.replacingOccurrences(of: "\"\(field)\":\(from)", with: "\"\(field)\":\(to)").utf8)
                }
                try file.append(section: entry.name, payload: payload)
            }
            try AtomicFile.write(try file.serialized(), to: path)
            let error = #expect(throws: MachineError.self) { try load(path) }
            let text = error.map { "\($0)" } ?? ""
            #expect(text.contains("snapshot section '\(section)' does not decode: ") && text.contains("\(field): "), "\(text)")
        }
    }
}

@Suite("A snapshot written by an earlier Deflect still restores", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotFixtureTests {
    static let fixture = GuestImages.repositoryRoot.appendingPathComponent("Tests/Fixtures/snapshot-v1/seq.snap").path

    /// The fixture was taken on an AMD host; the vendor check refuses it elsewhere.
    static let sameVendor: Bool = {
        guard let bytes = try? AtomicFile.read(fixture, limit: 1 << 20), let file = try? SnapshotFile(parsing: bytes),
              let system = try? KVMSystem(), let host = try? RestoreHost.current(system) else { return false }
        return file.host.vendor == host.cpu.vendor
    }()

    /// `Tests/Fixtures/snapshot-v1` (2 MiB, long/sequence.bin taken mid-run
    /// by the format before section enums, typed values and memory
    /// checksums): it loads, restores and the guest runs to its end,
    /// printing the rest of its sequence.
    @Test(.enabled(if: sameVendor, "the fixture was taken on an AuthenticAMD host; this host's vendor differs"))
    func theVersion1FixtureRestoresAndRunsToItsEnd() throws {
        let loaded = try load(Self.fixture)
        #expect(loaded.configuration.memoryMiB == 2 && loaded.configuration.mode == .long)
        #expect(loaded.memory.chunkCRC64 == nil, "the fixture predates memory checksums")
        let output = CaptureSink()
        let report = try #require(BackgroundRun(try Machine(restoring: loaded, timeout: 120, serialOutput: output), output: output).finish())
        #expect(report.outcome == .guestExit(value: 0x11, status: 35), "\(report.outcome)")
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        // Taken mid-line after "SEQ 1180": the rest of that line, then every line to the end.
        #expect(output.text.hasPrefix("181\nSEQ 1182\n") && expected.hasSuffix(output.text), "\(output.text.prefix(200))")
    }
}
