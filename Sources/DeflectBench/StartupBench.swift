// deflect-bench --startup N: what a trivial run costs as a process, the
// price containerd pays per task. The guest (Guests/real/msr_loop.S with 0
// iterations) writes to the debug-exit port at once; `deflect run` of it is
// timed from spawn to reaped, with its peak RSS, against the C reference
// (Benchmarks/reference/msr_loop with 0 iterations: open /dev/kvm, create
// the VM, its memory and vCPU, run to the debug exit) in N alternating
// rounds. Both are spawned and waited for by Benchmarks/reference/spawn_time
// (posix_spawn, wait4: wall time and ru_maxrss). `--startup-baseline PATH`
// adds another deflect binary (the one before a change) to every round.
import BenchmarkReport
import Dispatch
import Foundation

/// One timed process: start to exit, its peak RSS and its exit status.
struct SpawnedRun {
    var milliseconds: Double
    var peakRSSKiB: Int
    var status: Int32

    /// Parses spawn_time's line "wall_ns=N maxrss_kib=K status=S".
    init?(spawnTimeOutput line: String) {
        var fields: [Substring: Substring] = [:]
        for pair in line.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        guard let wall = fields["wall_ns"].flatMap({ Int64($0) }), let rss = fields["maxrss_kib"].flatMap({ Int($0) }),
              let status = fields["status"].flatMap({ Int32($0) }) else { return nil }
        milliseconds = Double(wall) / 1e6
        peakRSSKiB = rss
        self.status = status
    }
}

/// A program the benchmark times, the exit status a good run ends with, and its runs.
private struct StartupSubject {
    var label: String
    var command: [String]
    var expectedStatus: Int32
    var runs: [SpawnedRun] = []

    var medianMilliseconds: Double { median(runs.map(\.milliseconds)) }
    var minimumMilliseconds: Double { runs.map(\.milliseconds).min() ?? 0 }
    var medianPeakRSSMiB: Double { median(runs.map { Double($0.peakRSSKiB) }) / 1024 }
}

private let spawnTimePath = "Benchmarks/reference/spawn_time"
private let trivialReferencePath = "Benchmarks/reference/msr_loop"
/// The debug-exit value msr_loop.S writes when its loop is done.
private let guestDoneValue: Int32 = 0x4D

private func spawnOnce(_ command: [String]) throws -> SpawnedRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: spawnTimePath)
    process.arguments = command
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0, let run = SpawnedRun(spawnTimeOutput: output) else {
        throw BenchError(description: "\(spawnTimePath) \(command.joined(separator: " ")) failed: \(output)")
    }
    return run
}

func startupBenchmark(runs: Int, baseline: String?, output: String, noise: NoiseOptions) throws {
    let guestPath = "Guests/build/real/msr_loop.bin"
    guard let data = FileManager.default.contents(atPath: guestPath) else {
        throw BenchError(description: "\(guestPath) missing: run `make bench` from the repository root")
    }
    for tool in [spawnTimePath, trivialReferencePath] where !FileManager.default.isExecutableFile(atPath: tool) {
        throw BenchError(description: "\(tool) missing: run `make -C Benchmarks/reference` (make bench does)")
    }
    // `deflect` is built beside deflect-bench by `make bench`.
    let deflect = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deflect").path
    guard FileManager.default.isExecutableFile(atPath: deflect) else {
        throw BenchError(description: "\(deflect) missing: `swift build -c release --product deflect` (make bench does)")
    }
    if let baseline, !FileManager.default.isExecutableFile(atPath: baseline) {
        throw BenchError(description: "--startup-baseline \(baseline) is not an executable")
    }
    let report = try BenchmarkSection.begin("## Trivial guest: start to exit and peak RSS", options: noise)

    let directory = NSTemporaryDirectory() + "deflect-bench-startup-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let trivialGuest = directory + "/trivial.bin"
    try Data(patchedGuest([UInt8](data), iterations: 0, msr: 0x174, write: false)).write(to: URL(fileURLWithPath: trivialGuest))

    // The C reference maps 2 MiB; Deflect gets the same (its default is 64 MiB).
    let deflectArguments = ["run", "--mode", "real", "--memory", "2", trivialGuest]
    let deflectStatus = (guestDoneValue << 1) | 1
    var subjects = [
        StartupSubject(label: "C reference (`msr_loop 0 kernel`)", command: [trivialReferencePath, "0", "kernel", trivialGuest],
                       expectedStatus: 0),
        StartupSubject(label: "`deflect run`", command: [deflect] + deflectArguments, expectedStatus: deflectStatus),
    ]
    if let baseline {
        subjects.append(StartupSubject(label: "`deflect run`, baseline binary", command: [baseline] + deflectArguments,
                                       expectedStatus: deflectStatus))
    }
    // Warm the page cache and the dynamic loader's caches for every binary.
    for subject in subjects {
        for _ in 0..<2 { _ = try spawnOnce(subject.command) }
    }
    for round in 0..<runs {
        // Alternate the order so that drift on the host hits every side alike.
        let order = round % 2 == 0 ? Array(subjects.indices) : subjects.indices.reversed()
        for i in order {
            let run = try spawnOnce(subjects[i].command)
            guard run.status == subjects[i].expectedStatus else {
                throw BenchError(description: "\(subjects[i].command.joined(separator: " ")) ended with status \(run.status), not \(subjects[i].expectedStatus)")
            }
            subjects[i].runs.append(run)
        }
    }
    let reference = subjects[0].medianMilliseconds
    var rows: [String] = []
    for subject in subjects {
        let row = String(format: "| %@ | %.2f | %.2f | **%.2f×** | %.1f |", subject.label, subject.medianMilliseconds,
                         subject.minimumMilliseconds, subject.medianMilliseconds / reference, subject.medianPeakRSSMiB)
        rows.append(row)
        print(row)
    }
    let deflectRun = subjects[1]
    let timeMet = deflectRun.medianMilliseconds <= 3 * reference
    let memoryMet = deflectRun.medianPeakRSSMiB <= 16
    let section = """
    ## Trivial guest: start to exit and peak RSS (`make bench`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `make bench` (= `deflect-bench --startup \(runs)\(baseline.map { " --startup-baseline \($0)" } ?? "")`), release build.
    Guest: `Guests/real/msr_loop.S` with 0 iterations: its first exit is the write of 0x4d to the debug-exit port.
    Deflect: `deflect run --mode real --memory 2 GUEST` (exit status 155), standard streams on /dev/null.
    Reference: `Benchmarks/reference/msr_loop 0 kernel GUEST`: open /dev/kvm, create the VM, 2 MiB of memory, the MSR filter, one vCPU with KVM's CPUID, run to the debug exit.
    Both are started and reaped by `Benchmarks/reference/spawn_time` (posix_spawn to wait4, CLOCK_MONOTONIC; peak RSS = the child's `ru_maxrss`).
    \(runs) alternating rounds after 2 warm-up runs of each; time in ms (median and fastest), ratio = median / the C reference's median, peak RSS median in MiB.
    Targets: at most 3× the C reference (\(timeMet ? "met" : "**not met**")), peak RSS at most 16 MiB (\(memoryMet ? "met" : "**not met**")).

    | process | median ms | fastest ms | vs C | peak RSS MiB |
    |---|---|---|---|---|
    \(rows.joined(separator: "\n"))

    """
    try report.write(section, to: output)
    print("results written to \(output)")
}
