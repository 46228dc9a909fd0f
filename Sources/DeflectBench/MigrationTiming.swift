// deflect-bench --migration: live migration between two machines in this
// process over a Unix socket, for guests of each RAM size dirtying memory
// at each rate (Guests/long/dirty_rate.S, the rate written into its RAM
// before it runs): total time from the start of the migration until the
// receiver has the guest, the pause the guest sees (pause to the receiver's
// running-ack, as the sender measures it), rounds, bytes sent and the dirty
// rate the sender measured. Writes its section of BENCHMARKS.md.
import Dispatch
import Foundation
import KVM
import Migration
import VMM

/// Pages per 10 ms tick for `mibPerSecond` (the guest's unit).
private func pagesPerTick(_ mibPerSecond: Int) -> UInt64 { UInt64((Double(mibPerSecond) * 256 / 100).rounded()) }

/// A migration still iterating after this long is given up (the source keeps running).
private let convergenceTimeout: Double = 20

func migrationTiming(sizesMiB: [Int], ratesMiBps: [Int], output: String) throws {
    let guest = "Guests/build/long/dirty_rate.bin"
    guard let image = FileManager.default.contents(atPath: guest) else {
        throw BenchError(description: "\(guest) missing: run `make bench` from the repository root")
    }
    let directory = NSTemporaryDirectory() + "deflect-bench-mig-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let system = try KVMSystem()

    var rows: [String] = []
    for size in sizesMiB {
        for rate in ratesMiBps {
            let path = directory + "/\(size)-\(rate).sock"
            let listener = try MigrationTransport.listen(on: .unix(path: path))
            let received = ReceivedMachine()
            let receiverThread = Thread {
                do {
                    let peer = try listener.accept(timeoutSeconds: 120)
                    try peer.setTimeout(seconds: 60)
                    let connection = MigrationConnection(stream: SocketStream(peer), key: nil)
                    received.set(.success(try IncomingMigration.receiveMachine(connection, system: system, timeout: 60,
                                                                               serialOutput: CaptureSink())))
                } catch {
                    received.set(.failure(BenchError(description: "receiver: \(error)")))
                }
            }
            receiverThread.start()

            var config = MachineConfiguration(image: [UInt8](image), mode: .long, memoryMiB: size, timeoutSeconds: 300)
            config.platform = .minimal
            let sink = CaptureSink()
            let source = try Machine(configuration: config, serialOutput: sink)
            let rateBytes = pagesPerTick(rate)
            try source.ram.write((0..<8).map { UInt8(truncatingIfNeeded: rateBytes >> (8 * UInt64($0))) }, at: 0x3F_F000)
            let running = BackgroundMachine(source)
            let deadline = Date().addingTimeInterval(60)
            while !sink.text.contains("DIRTY") {
                guard Date() < deadline else { throw BenchError(description: "the guest did not start") }
                usleep(1000)
            }
            usleep(300_000)   // the dirty rate settles

            var options = MigrationOptions(destination: .unix(path: path))
            options.timeoutSeconds = convergenceTimeout
            let begin = DispatchTime.now().uptimeNanoseconds
            try source.beginMigration(options)
            let failure: String?
            do {
                try source.migrate(options)
                failure = nil
            } catch {
                failure = "\(error)"
            }
            let total = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
            let progress = source.migrationProgress
            if failure != nil {
                // Did not converge: the source runs on; the receiver got an abort.
                source.requestStop()
                listener.shutdown()
            }
            running.done.wait()
            if let restored = try? received.wait() {
                let again = BackgroundMachine(restored)
                usleep(100_000)
                restored.requestStop()
                again.done.wait()
            }
            let downtime = failure == nil ? String(format: "%.0f", (progress.downtimeSeconds ?? 0) * 1000) : "did not converge in \(Int(convergenceTimeout)) s"
            rows.append(String(format: "| %d MiB | %d | %.1f | %.1f | %d | %.1f | %.2f | %@ |", size, rate,
                               progress.dirtyBytesPerSecond / 1_048_576, progress.bandwidthBytesPerSecond / 1_048_576,
                               progress.iteration, Double(progress.bytesSent) / 1_048_576, total, downtime))
            print(rows.last ?? "")
        }
    }
    let section = """
    ## Live migration (`deflect-bench --migration`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `deflect-bench --migration \(sizesMiB.map(String.init).joined(separator: ",")) --dirty-rates \(ratesMiBps.map(String.init).joined(separator: ","))`, \(migrationBuildConfiguration) build,
    one run each. Two machines in one process over a Unix socket, no key; guest `Guests/long/dirty_rate.bin` (1 vCPU)
    dirtying pages at the target rate (what it reaches on this host is the measured column: its work per tick is slow
    here). Total: from the start of the migration until the receiver acknowledged. Downtime: from the pause on the
    source until the receiver's running-ack (state capture, last pages, machine built on the receiver). Default
    downtime budget 300 ms; a migration that has not converged after 20 s is given up (the source runs on). QEMU's migration of the same guests side by side is not measured yet.

    | RAM | target MiB/s | measured dirty MiB/s | bandwidth MiB/s | rounds | MiB sent | total s | downtime ms |
    |---|---|---|---|---|---|---|---|
    \(rows.joined(separator: "\n"))

    In a debug build the bandwidth is bounded by the CRC-64 and the copies of every frame on both sides (about
    20 MiB/s), so a guest dirtying faster than that never converges; `make bench` runs this in a release build.
    The guest cannot see the pause in its TSC: the TSC is saved and restored with the vCPU, so it stands still
    while the VM is paused; the downtime above is the host's measurement.
    """
    try BenchmarkFile.replaceSection(in: output, heading: "## Live migration", with: section)
    print("results written to \(output)")
}

/// The receiver thread's result, handed to the benchmark.
private final class ReceivedMachine: @unchecked Sendable {
    // Written once by the receiver thread before `ready` is signalled.
    private var result: Result<Machine, BenchError>?
    private let ready = DispatchSemaphore(value: 0)

    func set(_ value: Result<Machine, BenchError>) {
        result = value
        ready.signal()
    }

    func wait() throws -> Machine {
        guard ready.wait(timeout: .now() + 120) == .success, let result else {
            throw BenchError(description: "the receiver did not finish")
        }
        return try result.get()
    }
}

#if DEBUG
private let migrationBuildConfiguration = "debug"
#else
private let migrationBuildConfiguration = "release"
#endif
