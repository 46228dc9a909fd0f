// deflect-bench --control N: the control plane's latencies. A machine runs
// Guests/long/mixed_storm.S through the real run loop with MachineControl and
// ControlServer on a temporary socket, as `deflect run --api-socket` has them.
// `GET /stats` is measured with ONE storming vCPU (vCPU 0: RDMSR storm of an
// emulated MSR) and the host's other core spare for the server and its
// clients: latency from a ControlClient (one client, then four at once) and
// the guest's exit rate meanwhile against a window without API load. Then
// pause and resume latency for 1 and 4 vCPUs (vCPU 1: port storm, others spin
// in the guest), around Machine.pause()/resume() and through `PUT /vm/state`.
// Writes its section of BENCHMARKS.md.
import BenchmarkReport
import ControlAPI
import Dispatch
import Foundation
import MachineControl
import MSRPolicy
import Synchronization
import VMM

struct ControlBenchOptions {
    var requests = 500
    var pauseCycles = 100
    var output = "BENCHMARKS.md"
    var noise = NoiseOptions()
}

/// The storm's MSR, emulated so that each guest read is a user-space exit.
private let stormPolicy = MSRPolicy(rules: [MSRRule(0x2474, .emulate(Emulation(initialValue: 0)))])
private let stormGuest = "Guests/build/long/mixed_storm.bin"

/// Where an async step leaves its result for the thread waiting on it.
private final class BlockingOutcome<T: Sendable>: Sendable {
    let result = Mutex<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
}

/// Runs `body` on the concurrency pool and waits for it on this thread (the
/// benchmark's other measurements are synchronous, like the VMM calls they time).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let outcome = BlockingOutcome<T>()
    Task.detached {
        do {
            let value = try await body()
            outcome.result.withLock { $0 = .success(value) }
        } catch {
            outcome.result.withLock { $0 = .failure(error) }
        }
        outcome.done.signal()
    }
    outcome.done.wait()
    guard let result = outcome.result.withLock({ $0 }) else { throw BenchError(description: "an async step ended without a result") }
    return try result.get()
}

/// The mixed-storm machine running on a thread of its own, its API served on a temporary socket.
final class StormMachine: Sendable {
    let machine: Machine
    let control: MachineControl
    let server: ControlServer
    let socketPath: String
    private let report = Mutex<RunReport?>(nil)
    private let ended = DispatchSemaphore(value: 0)

    init(image: [UInt8], vcpus: Int) throws {
        var config = MachineConfiguration(image: image, mode: .long, memoryMiB: 16, vcpuCount: vcpus, timeoutSeconds: 1800)
        config.msr = .policy(stormPolicy)
        machine = try Machine(configuration: config, serialOutput: CaptureSink(), events: EventLog())
        control = MachineControl(machine: machine, configuration: VMConfiguration(
            image: stormGuest, mode: "long", memoryMib: 16, vcpus: vcpus, platform: "minimal", policyPath: nil))
        socketPath = NSTemporaryDirectory() + "deflect-bench-\(getpid())-\(vcpus).sock"
        server = ControlServer(control: control, socketPath: socketPath)
        let server = self.server
        try runBlocking { try await server.start() }
        let thread = Thread { [self] in
            let finished = machine.run()
            report.withLock { $0 = finished }
            ended.signal()
        }
        thread.name = "machine"
        thread.start()
    }

    /// Exits each vCPU has taken so far, from its own accounting.
    var exitsPerVCPU: [UInt64] { machine.accounting.map { $0.statistics.totalExits } }

    /// Waits until every storming vCPU has taken `count` exits (the storm is under way).
    func waitForStorm(exits count: UInt64, stormingVCPUs: Int) throws {
        let deadline = DispatchTime.now().uptimeNanoseconds + 30_000_000_000
        while exitsPerVCPU.prefix(stormingVCPUs).contains(where: { $0 < count }) {
            if let outcome = report.withLock({ $0?.outcome }) {
                throw BenchError(description: "the storm guest ended: \(outcome.report)")
            }
            guard DispatchTime.now().uptimeNanoseconds < deadline else {
                throw BenchError(description: "the storm guest did not reach \(count) exits per vCPU in 30 s (exits: \(exitsPerVCPU))")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    /// Stops the guest and the server; an outcome other than the stop asked for is an error.
    func stop() throws {
        machine.requestStop()
        ended.wait()
        control.finish()
        let server = self.server
        try runBlocking { await server.stop() }
        let outcome = report.withLock { $0?.outcome }
        guard outcome == .interruptedByUser else {
            throw BenchError(description: "the storm run ended with \(outcome?.report ?? "no outcome"), not the benchmark's stop")
        }
    }
}

/// The host's 1-minute load average, from /proc/loadavg ("?" where unreadable).
private func hostLoad() -> String {
    LoadAverage.current().map { String(format: "%.2f", $0.oneMinute) } ?? "?"
}

/// A latency distribution as the tables print it.
struct LatencyRow {
    var histogram = LatencyHistogram(precise: true)

    mutating func record(since start: UInt64) { histogram.record(DispatchTime.now().uptimeNanoseconds &- start) }

    static func format(_ nanoseconds: UInt64) -> String {
        nanoseconds >= 1_000_000 ? String(format: "%.2f ms", Double(nanoseconds) / 1e6)
            : String(format: "%.0f µs", Double(nanoseconds) / 1e3)
    }

    var cells: String { "\(Self.format(histogram.p50)) | \(Self.format(histogram.p99)) | \(Self.format(histogram.max))" }
}

/// Exit rates per vCPU over a window, from the vCPUs' own counters.
struct ExitRates {
    var perSecond: [Double]

    /// Runs `body` and measures the exits per second of each vCPU while it runs.
    static func during(_ vm: StormMachine, _ body: () throws -> Void) rethrows -> ExitRates {
        let before = vm.exitsPerVCPU, start = DispatchTime.now().uptimeNanoseconds
        try body()
        let after = vm.exitsPerVCPU
        let seconds = Double(DispatchTime.now().uptimeNanoseconds &- start) / 1e9
        return ExitRates(perSecond: zip(after, before).map { Double($0 &- $1) / seconds })
    }
}

/// p99 targets of `GET /stats` (ns) and the guest's exit rate while polled, against no API load.
private let apiTargets: [(clients: Int, p99: UInt64, rate: Double)] = [(1, 2_000_000, 0.9), (4, 5_000_000, 0.8)]

/// `GET /stats` latency while the machine's one vCPU storms MSR exits.
private func apiLatency(_ vm: StormMachine, requests: Int) throws -> [String] {
    let socket = vm.socketPath
    // Warm-up: connections, the server's first requests, the client's code paths.
    try runBlocking {
        let client = ControlClient(socketPath: socket)
        for _ in 0..<50 { _ = try await client.stats() }
    }
    var sequential = LatencyRow()
    let loaded = try ExitRates.during(vm) {
        sequential = try runBlocking {
            let client = ControlClient(socketPath: socket)
            var row = LatencyRow()
            for _ in 0..<requests {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try await client.stats()
                row.record(since: start)
            }
            return row
        }
    }
    let loadedSeconds = Double(sequential.histogram.totalNanoseconds) / 1e9
    // As long again without API load: the guest's exit rate to compare with.
    let idle = ExitRates.during(vm) { Thread.sleep(forTimeInterval: max(loadedSeconds, 1)) }
    let clients = 4
    var concurrent = LatencyRow()
    let loadedConcurrently = try ExitRates.during(vm) {
        concurrent = try runBlocking {
            try await withThrowingTaskGroup(of: LatencyRow.self) { group in
                for _ in 0..<clients {
                    group.addTask {
                        let client = ControlClient(socketPath: socket)
                        var row = LatencyRow()
                        for _ in 0..<(requests / clients) {
                            let start = DispatchTime.now().uptimeNanoseconds
                            _ = try await client.stats()
                            row.record(since: start)
                        }
                        return row
                    }
                }
                var all = LatencyRow()
                for try await row in group { all.histogram.merge(row.histogram) }
                return all
            }
        }
    }
    func verdict(_ met: Bool) -> String { met ? "met" : "**not met**" }
    let idleRate = max(idle.perSecond[0], 1)
    func row(_ label: String, _ target: (clients: Int, p99: UInt64, rate: Double), _ latency: LatencyRow, _ rates: ExitRates) -> String {
        let ratio = rates.perSecond[0] / idleRate
        return String(format: "| %@ | %llu | %@ | %.0f | **%.3f** | < %@, %@ | ≥ %.1f, %@ |", label, latency.histogram.count, latency.cells,
                      rates.perSecond[0], ratio, LatencyRow.format(target.p99), verdict(latency.histogram.p99 < target.p99),
                      target.rate, verdict(ratio >= target.rate))
    }
    return [
        "| `GET /stats` clients | requests | p50 | p99 | max | vCPU 0 RDMSR exits/s | vs no API load | p99 target | exit-rate target |",
        "|---|---|---|---|---|---|---|---|---|",
        String(format: "| none (guest alone) | 0 | | | | %.0f | 1.000 | | |", idle.perSecond[0]),
        row("1 (sequential)", apiTargets[0], sequential, loaded),
        row("\(clients) at once", apiTargets[1], concurrent, loadedConcurrently),
    ]
}

/// How long the guest runs between two pause → resume cycles: long enough
/// for every vCPU thread to be back in KVM_RUN before the next pause.
private let pauseGapSeconds = 0.005

/// Pause and resume latency: `cycles` pause → resume cycles through the
/// Machine, then as many through the API, with the guest running between them.
private func pauseResumeLatency(_ vm: StormMachine, vcpus: Int, cycles: Int) throws -> [String] {
    let running = pauseGapSeconds
    var pause = LatencyRow(), resume = LatencyRow()
    let direct = try ExitRates.during(vm) {
        for _ in 0..<cycles {
            var start = DispatchTime.now().uptimeNanoseconds
            try vm.machine.pause()
            pause.record(since: start)
            start = DispatchTime.now().uptimeNanoseconds
            try vm.machine.resume()
            resume.record(since: start)
            Thread.sleep(forTimeInterval: running)
        }
    }
    let socket = vm.socketPath
    let (apiPause, apiResume) = try runBlocking {
        let client = ControlClient(socketPath: socket)
        var pause = LatencyRow(), resume = LatencyRow()
        for _ in 0..<cycles {
            var start = DispatchTime.now().uptimeNanoseconds
            _ = try await client.setState(.paused)
            pause.record(since: start)
            start = DispatchTime.now().uptimeNanoseconds
            _ = try await client.setState(.running)
            resume.record(since: start)
            try await Task.sleep(for: .seconds(running))
        }
        return (pause, resume)
    }
    // The guest ran between the cycles: its exits kept coming.
    let storming = min(vcpus, 2)
    let progress = direct.perSecond.prefix(storming).map { String(format: "%.0f", $0) }.joined(separator: " / ")
    return [
        "| \(vcpus) | `Machine.pause()` / `resume()` | \(cycles) | \(pause.cells) | \(resume.cells) | \(progress) |",
        "| \(vcpus) | `PUT /vm/state` (ControlClient) | \(cycles) | \(apiPause.cells) | \(apiResume.cells) | |",
    ]
}

func controlBenchmark(_ options: ControlBenchOptions) throws {
    guard let data = FileManager.default.contents(atPath: stormGuest) else {
        throw BenchError(description: "\(stormGuest) missing: run `make bench` from the repository root")
    }
    let image = [UInt8](data)

    // Other work on the host's cores shows up in every latency here: say how much there was.
    let report = try BenchmarkSection.begin("## Control API and pause/resume", options: options.noise)
    let loadBefore = hostLoad()
    // One storming vCPU: on 2 cores, the other core is the API's.
    let stormVM = try StormMachine(image: image, vcpus: 1)
    try stormVM.waitForStorm(exits: 10_000, stormingVCPUs: 1)
    let apiLines = try apiLatency(stormVM, requests: options.requests)
    try stormVM.stop()
    apiLines.forEach { print($0) }

    var pauseLines: [String] = []
    for vcpus in [1, 4] {
        let vm = try StormMachine(image: image, vcpus: vcpus)
        try vm.waitForStorm(exits: 10_000, stormingVCPUs: min(vcpus, 2))
        let lines = try pauseResumeLatency(vm, vcpus: vcpus, cycles: options.pauseCycles)
        try vm.stop()
        lines.forEach { print($0) }
        pauseLines += lines
    }

    let loadAfter = hostLoad()
    let date = ISO8601DateFormatter().string(from: Date())
    let host = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    let section = """
    ## Control API and pause/resume (`make bench`, \(date))

    Command: `make bench` (= `.build/release/deflect-bench --control \(options.requests) --pause-cycles \(options.pauseCycles)`), release build.
    Host kernel \(host), \(ProcessInfo.processInfo.activeProcessorCount) cores, nested KVM. One process holds the VM's vCPU threads, the API server (`MachineControl` + `ControlServer` on a temporary Unix socket, as `deflect run --api-socket`) and the client, all on these cores. Host load average (1 min) before / after: \(loadBefore) / \(loadAfter).
    Guest: `Guests/long/mixed_storm.S` through the real run loop: vCPU 0 loops on RDMSR of 0x2474 (policy `emulate`: every read a user-space MSR exit); in the pause runs vCPU 1 loops on OUT to the POST port 0x80 (a port exit) and vCPUs 2 and up spin in the guest without exits.
    Latency is client-side, as `deflect ctl` sees it: `ControlClient` (a connection of its own per request: connect, HTTP/1.1 over the Unix socket, close), recorded in an HdrHistogram (`LatencyHistogram`, 2 significant digits).

    **`GET /stats` during the storm** (1 vCPU storming RDMSR exits, the other core spare for the server and its clients; after 50 warm-up requests). Exit rates from the vCPU's own counters over each window; the window without API load lasts as long as the sequential run. Targets: p99 < 2 ms with 1 client and < 5 ms with 4; the guest's exit rate while polled ≥ 0.9 / ≥ 0.8 of its rate without API load.

    \(apiLines.joined(separator: "\n"))

    **Pause and resume** (no target): \(options.pauseCycles) cycles each way, the guest running \(Int(pauseGapSeconds * 1000)) ms between cycles. `Machine.pause()` returns once every vCPU is parked at a consistent point (pending exit completed, guest clocks stopped); it kicks the vCPUs, then checks every 5 ms whether all are parked (`VCPUParking.waitUntilAllParked`), so a pause takes at least one 5 ms period. `resume()` returns once the kvmclock is restored and the vCPUs are released. Through the API: `PUT /vm/state` round trips. Last column: the storming vCPUs' exit rates (0 / 1) over the direct cycles, evidence that the guest ran between them.

    | vCPUs | path | cycles | pause p50 | pause p99 | pause max | resume p50 | resume p99 | resume max | exits/s while cycling |
    |---|---|---|---|---|---|---|---|---|---|
    \(pauseLines.joined(separator: "\n"))

    """
    try report.write(section, to: options.output)
    print("results written to \(options.output)")
}
