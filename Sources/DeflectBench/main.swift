// deflect-bench: the exit-path benchmark. A guest loops on RDMSR/WRMSR of an
// MSR the policy emulates in user space; the same guest runs under a minimal
// C KVM_RUN loop (Benchmarks/reference/msr_loop) in the same run, and the
// result is reported as a ratio, plus the `kernel`-rule path and the heap
// allocations per exit. Results are written to BENCHMARKS.md.
//
// Run it through `make bench` (release build, the C reference built, the
// allocation-counting shim preloaded). `--policy-fuzz N` instead runs the
// policy-file fuzz benchmark (PolicyFuzz.swift), `--snapshot-fuzz N` the
// snapshot state-file fuzz benchmark (SnapshotFuzz.swift), `--control N` the
// control-API and pause/resume benchmark (ControlBench.swift), `--migration
// SIZES [--dirty-rates RATES]` the live-migration benchmark (MigrationTiming.swift),
// `--startup N` the start-to-exit time and peak RSS of `deflect run`
// (StartupBench.swift), `--linux-boot N` a Linux kernel's boot against QEMU
// pc and microvm (LinuxBootBench.swift), `--virtio N [--virtio-dir DIR]
// [--virtio-ops N] [--virtio-frames N]` virtio-blk and virtio-net against
// QEMU's, ioeventfd on and off (VirtioBench.swift).
//
// Every section first checks the host's load average (BenchmarkReport): above
// 1.0 it waits up to `--settle SECONDS` (default 90) for it to fall, then
// refuses to measure (exit status 3) unless `--allow-noisy` is given, in which
// case the section is written marked as noisy.
import BenchmarkReport
import Dispatch
import Foundation
import Loader
import MSRPolicy
import VMM

struct BenchError: Error, CustomStringConvertible { let description: String }

/// A machine running on a thread of its own; `done` is signalled when its run ends.
final class BackgroundMachine: @unchecked Sendable {
    let done = DispatchSemaphore(value: 0)
    init(_ machine: Machine) {
        let thread = Thread { [done] in _ = machine.run(); done.signal() }
        thread.start()
    }
}

/// A comma-separated list of numbers, each in `range`; `usage` otherwise.
/// One option's number, within `range`, or `usage` as the error.
func number(_ value: String, in range: ClosedRange<Int>, _ usage: String) throws -> Int {
    guard let number = Int(value), range.contains(number) else { throw BenchError(description: usage) }
    return number
}

func numberList(_ value: String, in range: ClosedRange<Int>, _ usage: String) throws -> [Int] {
    let numbers = value.split(separator: ",").map { Int($0) }
    guard !numbers.isEmpty, numbers.allSatisfy({ $0.map(range.contains) ?? false }) else { throw BenchError(description: usage) }
    return numbers.compactMap { $0 }
}

/// Parameter block of Guests/real/msr_loop.S: little-endian words at image
/// offsets 4 (iterations), 8 (MSR index), 12 (0 = rdmsr, 1 = wrmsr).
func patchedGuest(_ image: [UInt8], iterations: UInt32, msr: UInt32, write: Bool) -> [UInt8] {
    var bytes = image
    for (offset, value) in [(4, iterations), (8, msr), (12, write ? 1 : 0)] {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
    return bytes
}

enum Mode: String, CaseIterable { case rdmsr, wrmsr, kernel }

/// The policy Deflect runs under: 0x175 emulated in user space (the C
/// reference denies the same MSR in its filter), everything else KVM's.
let benchPolicy = MSRPolicy(rules: [MSRRule(0x175, .emulate(Emulation(initialValue: 0x0123_4567_89AB_CDEF)))])

struct DeflectResult { var nanosecondsPerIteration: Double; var exits: UInt64; var allocations: UInt64? }

/// The allocation counter of the preloaded malloc_count.so, if present.
let mallocCalls: (@convention(c) () -> UInt64)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "deflect_malloc_calls") else { return nil }
    // SAFETY: the shim defines `unsigned long long deflect_malloc_calls(void)`.
    return unsafeBitCast(symbol, to: (@convention(c) () -> UInt64).self)
}()

func runDeflect(_ image: [UInt8], mode: Mode, iterations: UInt32) throws -> DeflectResult {
    let msr: UInt32 = mode == .kernel ? 0x174 : 0x175
    var config = MachineConfiguration(image: patchedGuest(image, iterations: iterations, msr: msr, write: mode == .wrmsr),
                                      mode: .real, memoryMiB: 2, timeoutSeconds: 600)
    config.msr = .policy(benchPolicy)
    let machine = try Machine(configuration: config, serialOutput: CaptureSink(), events: EventLog())
    let before = mallocCalls?()
    let report = machine.run()
    let after = mallocCalls?()
    guard case .guestExit(value: 0x4D, status: _) = report.outcome else {
        throw BenchError(description: "guest did not finish: \(report.outcome.report)")
    }
    let allocations = before.flatMap { b in after.map { $0 &- b } }
    // Like the C reference: from the first KVM_RUN to the last exit handled,
    // i.e. the vCPU loop's time inside and outside KVM_RUN (thread start and
    // join are not the exit path).
    let loopNanoseconds = report.statistics.buckets.reduce(0.0) { $0 + Double($1.runNanoseconds + $1.handlingNanoseconds) }
    return DeflectResult(nanosecondsPerIteration: loopNanoseconds / Double(iterations),
                         exits: report.statistics.totalExits, allocations: allocations)
}

func runReference(_ binary: String, guest: String, mode: Mode, iterations: UInt32) throws -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = ["\(iterations)", mode.rawValue, guest]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0,
          let field = output.split(separator: " ").first(where: { $0.hasPrefix("ns_per_iteration=") }),
          let value = Double(field.dropFirst("ns_per_iteration=".count).trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw BenchError(description: "reference \(binary) failed: \(output)")
    }
    return value
}

/// The `deflect` built beside this deflect-bench (same build configuration).
func siblingDeflect() throws -> String {
    let path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deflect").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw BenchError(description: "\(path) missing: `swift build -c release --product deflect` (make bench does)")
    }
    return path
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// The user-space part of one MSR exit without KVM: the policy decision and
/// the per-MSR statistics, timed over many iterations (ns per exit).
func userSpaceCost(iterations: Int) throws -> (decide: Double, record: Double) {
    let runtime = try MSRRuntime(policy: benchPolicy, vcpuCount: 1, hostReader: nil, clock: { 0 })
    var stats = MSRStatistics()
    var sink: UInt64 = 0
    // As a vCPU thread asks: with its generation cache, so no lock is taken for the generation.
    var cache = MSRRuntime.GenerationCache()
    let t0 = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<iterations {
        sink &+= runtime.handle(index: 0x175, access: .read, vcpu: 0, reasons: .filter, cache: &cache).value
    }
    let t1 = DispatchTime.now().uptimeNanoseconds
    for i in 0..<iterations {
        stats.record(index: 0x175, access: .read, value: UInt64(i), outcome: MSROutcome.emulated.rawValue, rip: 0x7C00)
    }
    let t2 = DispatchTime.now().uptimeNanoseconds
    if sink == 42 { print("") }  // keep the loop
    return (Double(t1 - t0) / Double(iterations), Double(t2 - t1) / Double(iterations))
}

func main() throws {
    var iterations: UInt32 = 20_000
    var rounds = 7
    var output = "BENCHMARKS.md"
    var fuzzInputs: Int?
    var snapshotFuzzInputs: Int?
    var snapshotTimingSizes: [Int]?
    var migrationSizes: [Int]?
    var dirtyRates = [0, 10, 100]
    var control: ControlBenchOptions?
    var pauseCycles: Int?
    var seed: UInt64 = 0x70_31_F0_22
    var startupRuns: Int?
    var startupBaseline: String?
    var linuxBootRounds: Int?
    var virtio: VirtioBenchOptions?
    var virtioDirectory: String?, virtioOps: Int?, virtioFrames: Int?
    var noise = NoiseOptions()
    var arguments = CommandLine.arguments.dropFirst()
    while let flag = arguments.popFirst() {
        if try noise.parse(flag, next: { arguments.popFirst() }) { continue }
        guard let value = arguments.popFirst() else { throw BenchError(description: "\(flag) needs a value") }
        switch flag {
        case "--iterations": iterations = UInt32(value) ?? iterations
        case "--rounds": rounds = max(1, Int(value) ?? rounds)
        case "--output": output = value
        case "--policy-fuzz":
            fuzzInputs = try number(value, in: 1...Int.max, "--policy-fuzz needs a positive count")
        case "--snapshot-timing":
            snapshotTimingSizes = try numberList(value, in: 1...3072, "--snapshot-timing needs RAM sizes in MiB, e.g. 64,1024,3072")
        case "--migration":
            migrationSizes = try numberList(value, in: 64...3072, "--migration needs RAM sizes in MiB (at least 64), e.g. 64,1024")
        case "--dirty-rates":
            dirtyRates = try numberList(value, in: 0...4096, "--dirty-rates needs MiB/s values, e.g. 0,10,100")
        case "--snapshot-fuzz":
            snapshotFuzzInputs = try number(value, in: 1...Int.max, "--snapshot-fuzz needs a positive count")
        case "--seed": seed = UInt64(value) ?? seed
        case "--control":
            control = ControlBenchOptions(requests: try number(value, in: 4...Int.max, "--control needs a request count of at least 4"))
        case "--pause-cycles":
            pauseCycles = try number(value, in: 1...Int.max, "--pause-cycles needs a positive count")
        case "--startup":
            startupRuns = try number(value, in: 1...1000, "--startup needs a run count (1–1000)")
        case "--startup-baseline": startupBaseline = value
        case "--linux-boot":
            linuxBootRounds = try number(value, in: 1...20, "--linux-boot needs a round count (1–20)")
        case "--virtio":
            virtio = VirtioBenchOptions(rounds: try number(value, in: 1...20, "--virtio needs a round count (1–20)"), output: "", noise: NoiseOptions())
        case "--virtio-dir": virtioDirectory = value
        case "--virtio-ops":
            virtioOps = try number(value, in: 16...100_000, "--virtio-ops needs a read count (16–100000)")
        case "--virtio-frames":
            virtioFrames = try number(value, in: 16...1_000_000, "--virtio-frames needs a frame count (16–1000000)")
        default: throw BenchError(description: "unknown option \(flag)")
        }
    }
    if var virtio {
        virtio.output = output
        virtio.noise = noise
        if let virtioDirectory { virtio.directory = virtioDirectory }
        if let virtioOps { virtio.blkOps = virtioOps }
        if let virtioFrames { virtio.frames = virtioFrames }
        try virtioBenchmark(virtio)
        return
    }
    if let linuxBootRounds {
        try linuxBootBenchmark(rounds: linuxBootRounds, output: output, noise: noise)
        return
    }
    if let startupRuns {
        try startupBenchmark(runs: startupRuns, baseline: startupBaseline, output: output, noise: noise)
        return
    }
    if let migrationSizes {
        try migrationTiming(sizesMiB: migrationSizes, ratesMiBps: dirtyRates, output: output, noise: noise)
        return
    }
    if let snapshotTimingSizes {
        try snapshotTiming(sizesMiB: snapshotTimingSizes, rounds: min(rounds, 5), output: output, noise: noise)
        return
    }
    if let snapshotFuzzInputs {
        try snapshotFuzz(count: snapshotFuzzInputs, seed: seed, output: output, noise: noise)
        return
    }
    if var control {
        control.output = output
        control.noise = noise
        if let pauseCycles { control.pauseCycles = pauseCycles }
        try controlBenchmark(control)
        return
    }
    if let fuzzInputs {
        try policyFuzz(count: fuzzInputs, seed: seed, output: output, noise: noise)
        return
    }
    let guestPath = "Guests/build/real/msr_loop.bin"
    let reference = "Benchmarks/reference/msr_loop"
    guard let data = FileManager.default.contents(atPath: guestPath) else {
        throw BenchError(description: "\(guestPath) missing: run `make bench` from the repository root")
    }
    let image = [UInt8](data)
    let report = try BenchmarkSection.begin("## MSR exit path", options: noise)

    var lines: [String] = []
    var ratioRdmsr = 0.0
    for mode in Mode.allCases {
        var ours: [Double] = [], theirs: [Double] = []
        var last = DeflectResult(nanosecondsPerIteration: 0, exits: 0, allocations: nil)
        for _ in 0..<rounds {
            // Alternate so that drift on the host hits both sides alike.
            theirs.append(try runReference(reference, guest: guestPath, mode: mode, iterations: iterations))
            last = try runDeflect(image, mode: mode, iterations: iterations)
            ours.append(last.nanosecondsPerIteration)
        }
        let ratio = median(ours) / median(theirs)
        if mode == .rdmsr { ratioRdmsr = ratio }
        // Allocations per exit: the difference between a run with twice the
        // iterations and one with the base count, over the extra exits, so
        // that one-time costs (threads, setup) cancel out.
        let double = try runDeflect(image, mode: mode, iterations: iterations * 2)
        let perExit: String
        if let a1 = last.allocations, let a2 = double.allocations {
            let extraExits = Int64(double.exits) - Int64(last.exits)
            perExit = extraExits > 0
                ? String(format: "%.4f (%lld extra allocations over %lld extra exits)", Double(Int64(a2) - Int64(a1)) / Double(extraExits), Int64(a2) - Int64(a1), extraExits)
                : "n/a (no exits on this path; \(Int64(a2) - Int64(a1)) extra allocations)"
        } else {
            perExit = "n/a (run without malloc_count.so)"
        }
        let line = String(format: "| %@ | %.0f | %.0f | **%.3f** | %llu | %@ |", mode.rawValue, median(ours), median(theirs), ratio, last.exits, perExit)
        lines.append(line)
        print(line)
    }

    let micro = try userSpaceCost(iterations: 2_000_000)
    print(String(format: "user space per exit, without KVM: policy decision %.0f ns, per-MSR statistics %.0f ns", micro.decide, micro.record))

    let date = ISO8601DateFormatter().string(from: Date())
    let host = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    let section = """
    ## MSR exit path (`make bench`, \(date))

    Command: `make bench` (= `LD_PRELOAD=Benchmarks/reference/malloc_count.so .build/release/deflect-bench --iterations \(iterations) --rounds \(rounds)`).
    Host kernel \(host). Guest: `Guests/real/msr_loop.S`, \(iterations) iterations, the same image for both sides.
    Reference: `Benchmarks/reference/msr_loop.c`, a minimal C `KVM_RUN` loop with the same filter (0x175 denied).
    Deflect: policy with 0x175 `emulate`d in user space (`kernel` line: RDMSR of 0x174, allowed by the filter, no exit), run by `Machine.run()` through the real vCPU loop with exit profiling on: every exit recorded in the vCPU's `VCPUAccounting` (counts, HdrHistogram latencies per exit kind and per MSR, the per-MSR table), as under `deflect run`.
    Both vCPUs present KVM's supported CPUID. Time: from the first `KVM_RUN` to the last exit handled (C: CLOCK_MONOTONIC around its loop; Deflect: the vCPU loop's own per-exit accounting, time inside plus outside `KVM_RUN`).
    Median of \(rounds) alternating rounds; ns per guest iteration; ratio = Deflect / C (target ≤ 1.05).
    User-space work per exit without KVM (2,000,000 iterations): policy decision \(String(format: "%.0f", micro.decide)) ns, per-MSR statistics \(String(format: "%.0f", micro.record)) ns.
    Allocations per exit: heap allocations of the whole Deflect process (counted by the preloaded `malloc_count.so`) in a run of 2×N iterations minus a run of N, divided by the extra exits (target 0).

    | path | Deflect ns/iter | C ns/iter | ratio | exits (last run) | allocations per exit |
    |---|---|---|---|---|---|
    \(lines.joined(separator: "\n"))

    """
    try report.write(section, to: output)
    print(String(format: "rdmsr ratio %.3f; results written to %@", ratioRdmsr, output))
}

do {
    try main()
} catch let refused as RefusedSection {
    FileHandle.standardError.write(Data("deflect-bench: \(refused)\n".utf8))
    exit(3)
} catch {
    FileHandle.standardError.write(Data("deflect-bench: error: \(error)\n".utf8))
    exit(1)
}
