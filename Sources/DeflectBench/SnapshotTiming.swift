// deflect-bench --snapshot-timing: how long a full snapshot takes and how
// long a restore takes until the guest runs again, for guests of 64 MiB,
// 1 GiB and 3 GiB (the target: a 3 GiB restore within 1.3× of a
// 64 MiB one, because restore maps the memory file instead of reading it),
// in this process and as a new `deflect restore` process; a diff snapshot of
// a guest that dirties 1% of its RAM; and QEMU's save and restore of guests
// of the same sizes in the same run (QEMUPeer). "Running again" is the
// guest's first byte after the restore. Writes its section of BENCHMARKS.md.
import BenchmarkReport
import Dispatch
import Foundation
import KVM
import Loader
import Snapshot
import VMM

private func waitFor(_ sink: CaptureSink, bytes: Int, limit: Double = 60) throws {
    let deadline = Date().addingTimeInterval(limit)
    while sink.bytes.count < bytes {
        guard Date() < deadline else { throw BenchError(description: "the guest printed nothing within \(limit) s") }
        usleep(200)
    }
}

private func waitFor(_ sink: CaptureSink, text: String, limit: Double = 60) throws {
    let deadline = Date().addingTimeInterval(limit)
    while !sink.text.contains(text) {
        guard Date() < deadline else { throw BenchError(description: "the guest did not print \"\(text.trimmingCharacters(in: .newlines))\" within \(limit) s") }
        usleep(500)
    }
}

private func elapsedMilliseconds(since start: UInt64) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
}

private func guestImage(_ path: String) throws -> [UInt8] {
    guard let image = FileManager.default.contents(atPath: path) else {
        throw BenchError(description: "\(path) missing: run `make bench` from the repository root")
    }
    return [UInt8](image)
}

private func fileBytes(_ path: String) -> (size: Int, allocated: Int) {
    var info = stat()
    guard stat(path, &info) == 0 else { return (0, 0) }
    return (Int(info.st_size), Int(info.st_blocks) * 512)
}

private func mebibytes(_ bytes: some BinaryInteger) -> String {
    Int(bytes) < 1 << 20 ? String(format: "%.0f KiB", Double(bytes) / 1024) : String(format: "%.1f MiB", Double(bytes) / 1048576)
}

/// `deflect restore STATE` as a new process: milliseconds from starting it
/// until the guest's first byte on its standard output.
private func processRestore(_ deflect: String, state: String) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: deflect)
    process.arguments = ["restore", state, "--quiet", "--timeout", "60"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    let t0 = DispatchTime.now().uptimeNanoseconds
    try process.run()
    defer {
        process.terminate()
        process.waitUntilExit()
    }
    var byte: UInt8 = 0
    guard read(output.fileHandleForReading.fileDescriptor, &byte, 1) == 1 else {
        throw BenchError(description: "deflect restore printed nothing (status \(process.isRunning ? "running" : "\(process.terminationStatus)"))")
    }
    return elapsedMilliseconds(since: t0)
}

/// Full snapshot, restore in this process, restore as a new process.
private struct SizeTiming {
    var snapshot: [Double] = [], restore: [Double] = [], processRestore: [Double] = []
    var written: UInt64 = 0
}

private func timeSnapshotAndRestore(sizeMiB size: Int, rounds: Int, image: [UInt8], directory: String,
                                    deflect: String?, host: RestoreHost) throws -> SizeTiming {
    var timing = SizeTiming()
    for round in 0..<rounds {
        let path = directory + "/\(size)-\(round).snap"
        defer {
            removeSnapshot(path)
        }
        var config = MachineConfiguration(image: image, mode: .long, memoryMiB: size, timeoutSeconds: 120)
        config.platform = .minimal
        let sink = CaptureSink()
        let machine = try Machine(configuration: config, serialOutput: sink)
        let running = BackgroundMachine(machine)
        try waitFor(sink, bytes: 20)
        try machine.pause()
        let t0 = DispatchTime.now().uptimeNanoseconds
        timing.written = try machine.snapshot(to: path).memoryBytes
        timing.snapshot.append(elapsedMilliseconds(since: t0))
        machine.requestStop()
        running.done.wait()

        let t1 = DispatchTime.now().uptimeNanoseconds
        let loaded = try LoadedSnapshot.load(path, on: host)
        let restoredSink = CaptureSink()
        let restored = try Machine(restoring: loaded, timeout: 60, serialOutput: restoredSink)
        let again = BackgroundMachine(restored)
        try waitFor(restoredSink, bytes: 1)
        timing.restore.append(elapsedMilliseconds(since: t1))
        restored.requestStop()
        again.done.wait()

        if let deflect { timing.processRestore.append(try processRestore(deflect, state: path)) }
    }
    return timing
}

/// Removes the state file at `path` and its memory file (`path`.mem-<16 hex>).
private func removeSnapshot(_ path: String) {
    let directory = (path as NSString).deletingLastPathComponent, name = (path as NSString).lastPathComponent
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where entry.hasPrefix(name + ".mem") {
        try? FileManager.default.removeItem(atPath: directory + "/" + entry)
    }
    try? FileManager.default.removeItem(atPath: path)
}

/// A guest that dirties 1% of its RAM between a full and a diff snapshot.
private struct DiffTiming {
    var full: [Double] = [], diff: [Double] = []
    var fullWritten: UInt64 = 0, diffWritten: UInt64 = 0, diffAllocated = 0, dirtiedPages = 0
}

private func timeDiffSnapshot(sizeMiB size: Int, rounds: Int, directory: String) throws -> DiffTiming {
    var image = try guestImage("Guests/build/long/dirty_rounds.bin")
    let pages = size * 256 / 100
    guard let marker = image.indices.dropLast(15).first(where: { image[$0..<$0 + 8].elementsEqual("DFLDIRTY".utf8) }) else {
        throw BenchError(description: "dirty_rounds.bin has no DFLDIRTY parameter block")
    }
    for i in 0..<8 { image[marker + 8 + i] = UInt8(truncatingIfNeeded: UInt64(pages) >> (8 * UInt64(i))) }
    var timing = DiffTiming(dirtiedPages: pages)
    for round in 0..<rounds {
        let full = directory + "/diff-\(size)-\(round).full", diff = directory + "/diff-\(size)-\(round).diff"
        defer {
            for path in [full, diff] { removeSnapshot(path) }
        }
        var config = MachineConfiguration(image: image, mode: .long, memoryMiB: size, timeoutSeconds: 120)
        config.platform = .minimal
        let sink = CaptureSink()
        let machine = try Machine(configuration: config, serialOutput: sink)
        let running = BackgroundMachine(machine)
        defer { machine.requestStop(); running.done.wait() }
        try waitFor(sink, text: "READY\n")
        try machine.pause()
        var t0 = DispatchTime.now().uptimeNanoseconds
        timing.fullWritten = try machine.snapshot(to: full).memoryBytes
        timing.full.append(elapsedMilliseconds(since: t0))
        try machine.resume()
        machine.devices.serialInput([0x2E])
        try waitFor(sink, text: "DIRTIED 1\n")
        try machine.pause()
        t0 = DispatchTime.now().uptimeNanoseconds
        let diffSummary = try machine.snapshot(to: diff, diff: true)
        timing.diffWritten = diffSummary.memoryBytes
        timing.diff.append(elapsedMilliseconds(since: t0))
        timing.diffAllocated = fileBytes(diffSummary.memoryPath).allocated
    }
    return timing
}

func snapshotTiming(sizesMiB: [Int], rounds: Int, output: String, noise: NoiseOptions) throws {
    let image = try guestImage("Guests/build/long/sequence.bin")
    let report = try BenchmarkSection.begin("## Snapshot and restore time", options: noise)
    let directory = NSTemporaryDirectory() + "deflect-bench-snap-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let system = try KVMSystem()
    let host = try RestoreHost.current(system)
    // `deflect` is built beside deflect-bench by `make bench`.
    let deflectPath = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deflect").path
    let deflect = FileManager.default.isExecutableFile(atPath: deflectPath) ? deflectPath : nil
    let qemuMissing = QEMUPeer.unavailableReason()

    var rows: [String] = [], diffRows: [String] = [], peerRows: [String] = []
    var restoreMedians: [Int: Double] = [:], processMedians: [Int: Double] = [:]
    for size in sizesMiB {
        let timing = try timeSnapshotAndRestore(sizeMiB: size, rounds: rounds, image: image, directory: directory,
                                                deflect: deflect, host: host)
        restoreMedians[size] = median(timing.restore)
        processMedians[size] = median(timing.processRestore)
        rows.append(String(format: "| %d MiB | %.1f | %@ | %.1f | %.1f | %@ |", size, median(timing.snapshot), mebibytes(timing.written),
                           median(timing.restore), timing.restore.max() ?? 0,
                           deflect == nil ? "not built" : String(format: "%.1f", median(timing.processRestore))))
        print(rows.last ?? "")

        let diff = try timeDiffSnapshot(sizeMiB: size, rounds: rounds, directory: directory)
        diffRows.append(String(format: "| %d MiB | %d (%@) | %.1f | %@ | %.1f | %@ | %@ |", size, diff.dirtiedPages,
                               mebibytes(diff.dirtiedPages * 4096), median(diff.full), mebibytes(diff.fullWritten),
                               median(diff.diff), mebibytes(diff.diffWritten), mebibytes(diff.diffAllocated)))
        print(diffRows.last ?? "")

        if qemuMissing == nil {
            var saves: [Double] = [], reported: [Double] = [], restores: [Double] = [], bytes = 0
            for _ in 0..<rounds {
                let peer = try QEMUPeer.measure(sizeMiB: size, directory: directory)
                saves.append(peer.saveMilliseconds); reported.append(peer.reportedSaveMilliseconds)
                restores.append(peer.restoreMilliseconds); bytes = peer.fileBytes
            }
            peerRows.append(String(format: "| %d MiB | %.1f | %@ | %.1f (%.0f) | %@ | %.1f |", size,
                                   median(timing.snapshot), deflect == nil ? "not built" : String(format: "%.1f", median(timing.processRestore)),
                                   median(saves), median(reported), mebibytes(bytes), median(restores)))
            print(peerRows.last ?? "")
        }
    }
    func growth(_ medians: [Int: Double]) -> Double {
        (medians[sizesMiB.last ?? 0] ?? 0) / max(medians[sizesMiB.first ?? 0] ?? 1, 0.001)
    }
    let ratio = growth(restoreMedians), processRatio = growth(processMedians)
    let peer = qemuMissing.map { "QEMU was not measured: \($0)." } ?? """
    | RAM | Deflect snapshot ms | Deflect restore (new process) ms | QEMU save ms (QEMU's total-time) | QEMU state file | QEMU restore (new process) ms |
    |---|---|---|---|---|---|
    \(peerRows.joined(separator: "\n"))

    QEMU: `\(QEMUPeer.binary) -accel kvm -m SIZE -nodefaults` (SeaBIOS, no boot device), saved with QMP
    `migrate "exec:cat > FILE"` (from the command until `query-migrate` says completed) and restored with
    `-incoming "exec:cat FILE"` (from starting the process until `query-status` says running). Both restores
    count a new process; both skip zero pages (QEMU in its stream, Deflect as holes of its memory file). QEMU's
    state file is a stream read in full on restore; Deflect's memory file is mapped.
    """
    let section = """
    ## Snapshot and restore time (`make bench`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `make bench` (= `deflect-bench --snapshot-timing \(sizesMiB.map(String.init).joined(separator: ",")) --rounds \(rounds)`), \(buildConfiguration) build, \(rounds) rounds, medians.
    Guest: `Guests/long/sequence.bin` (minimal platform, 1 vCPU). Snapshot: a paused machine's full snapshot (state file and
    memory file, each written atomically with fsync; pages holding only zeros are holes). Restore: from reading the
    state file until the restored guest printed its first byte (the memory file is mapped MAP_PRIVATE, not read), in
    this process and as a new `deflect restore` process. Host load average at the end: \(LoadAverage.current().map { "\($0)" } ?? "unknown").

    | RAM | snapshot ms | memory written | restore to running ms | restore max ms | restore, new process ms |
    |---|---|---|---|---|---|
    \(rows.joined(separator: "\n"))

    Restore of \(sizesMiB.last ?? 0) MiB against \(sizesMiB.first ?? 0) MiB: \(String(format: "%.2f", ratio))× in this process, \
    \(deflect == nil ? "not measured" : String(format: "%.2f", processRatio) + "×") as a new process (target ≤ 1.3×: \
    \(ratio <= 1.3 ? "met" : "not met") in this process, \(deflect != nil && processRatio <= 1.3 ? "met" : "not met") as a new process).
    What grows with RAM is in the kernel: `strace -T -e ioctl deflect restore` shows KVM_SET_USER_MEMORY_REGION
    of a 3 GiB slot taking ~2 ms on this host (KVM allocating the slot's per-page metadata), against well under
    0.5 ms for 64 MiB; the memory file itself is mapped, never read.

    ### Diff snapshot of a guest that dirties 1% of its RAM

    Guest: `Guests/long/dirty_rounds.bin`: after a full snapshot it increments one word in each of 1% of its pages,
    then a diff snapshot (`Machine.snapshot(to:diff: true)`, KVM's dirty log) writes the pages written since.

    | RAM | pages dirtied | full snapshot ms | full written | diff snapshot ms | diff written | diff file on disk |
    |---|---|---|---|---|---|---|
    \(diffRows.joined(separator: "\n"))

    ### QEMU side by side

    \(peer)
    """
    try report.write(section, to: output)
    print("results written to \(output)")
}

#if DEBUG
private let buildConfiguration = "debug"
#else
private let buildConfiguration = "release"
#endif
