// deflect-bench --migration: live migration of one guest, Deflect and QEMU
// side by side, for each RAM size and dirty rate. The guest is the multiboot
// kernel Guests/multiboot/migration_dirty.c (the same ELF for both): it
// dirties pages at the rate its command line asks and prints "GAP <µs>"
// whenever two of its consecutive TSC reads are more than 2 ms apart, so the
// receiver's serial output says how long the guest itself saw itself stopped.
// Deflect: two machines in this process over loopback TCP. QEMU: two
// qemu-system-x86_64 processes over loopback TCP (QEMUPeer). Both get the
// same downtime budget (300 ms) and the same convergence timeout. Writes its
// section of BENCHMARKS.md.
import BenchmarkReport
import Dispatch
import Foundation
import KVM
import Migration
import VMM

/// One migration's numbers, from either peer.
struct MigrationRun {
    /// nil when it completed; otherwise why not (e.g. it did not converge).
    var failure: String?
    var totalSeconds: Double
    /// The peer's own downtime measurement.
    var downtimeMilliseconds: Double?
    /// The first "GAP" the guest printed on the receiver (its first loop
    /// iteration after the resume); nil when it printed none there.
    var guestGapMilliseconds: Double?
    var rounds: Int
    var bytesSent: Double
    var dirtyBytesPerSecond: Double
}

/// The guest kernel both peers boot.
let migrationGuestPath = "Guests/build/multiboot/migration_dirty.elf"

/// A migration still iterating after this long is given up (both peers; the source keeps running).
let migrationConvergenceTimeout: Double = 20

/// The guest's command line.
func migrationGuestArguments(rateMiBps: Int, tscKHz: UInt32) -> String { "rate=\(rateMiBps) tsc_khz=\(tscKHz)" }

/// The first "GAP <µs>" line in a guest's output, in milliseconds.
func firstGuestGapMilliseconds(_ text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix("GAP ") {
        if let microseconds = Double(line.dropFirst(4)) { return microseconds / 1000 }
    }
    return nil
}

func migrationTiming(sizesMiB: [Int], ratesMiBps: [Int], output: String, noise: NoiseOptions) throws {
    guard let image = FileManager.default.contents(atPath: migrationGuestPath) else {
        throw BenchError(description: "\(migrationGuestPath) missing: run `make bench` from the repository root")
    }
    let report = try BenchmarkSection.begin("## Live migration", options: noise)
    let directory = NSTemporaryDirectory() + "deflect-bench-mig-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let system = try KVMSystem()
    // The guest's TSC rate as KVM gives it to a vCPU: the same for QEMU's vCPUs on this host.
    let tscKHz = try system.createVM().createVCPU(id: 0).tscKHz()
    let qemuUnavailable = QEMUPeer.unavailableReason()
    let qemuVersion = qemuUnavailable == nil ? QEMUPeer.version() : "not measured"

    var rows: [String] = []
    var idleOneGiBDowntime: Double?
    for size in sizesMiB {
        for rate in ratesMiBps {
            let deflect = try deflectMigration(image: [UInt8](image), sizeMiB: size, rateMiBps: rate, tscKHz: tscKHz,
                                               system: system)
            if size == 1024 && rate == 0 && deflect.failure == nil { idleOneGiBDowntime = deflect.downtimeMilliseconds }
            rows.append(migrationRow(peer: "Deflect", size: size, rate: rate, deflect))
            print(rows.last ?? "")
            if let qemuUnavailable {
                rows.append("| QEMU | \(size) MiB | \(rate) | not measured: \(qemuUnavailable) | | | | | | |")
            } else {
                let qemu: MigrationRun
                do {
                    qemu = try QEMUPeer.migrate(kernel: migrationGuestPath, sizeMiB: size,
                                                append: migrationGuestArguments(rateMiBps: rate, tscKHz: tscKHz),
                                                directory: directory, timeout: migrationConvergenceTimeout)
                } catch {
                    qemu = MigrationRun(failure: "\(error)", totalSeconds: 0, rounds: 0, bytesSent: 0, dirtyBytesPerSecond: 0)
                }
                rows.append(migrationRow(peer: "QEMU", size: size, rate: rate, qemu))
            }
            print(rows.last ?? "")
        }
    }
    let section = """
    ## Live migration (`deflect-bench --migration`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `deflect-bench --migration \(sizesMiB.map(String.init).joined(separator: ",")) --dirty-rates \(ratesMiBps.map(String.init).joined(separator: ","))`, \(migrationBuildConfiguration) build,
    one run each, on the 2-core nested-KVM host (load average at the end of the run:
    \(LoadAverage.current().map { "\($0) (1/5/15 min)" } ?? "unknown")). Guest: `\(migrationGuestPath)` (1 vCPU, `Guests/multiboot/migration_dirty.c`), booted with
    `\(migrationGuestArguments(rateMiBps: 0, tscKHz: tscKHz).replacingOccurrences(of: "rate=0", with: "rate=R"))` by both peers; it dirties pages of
    [16, 48) MiB at the target rate and prints `GAP <µs>` whenever two consecutive reads of its TSC are more than
    2 ms apart. Deflect: two machines in one process over loopback TCP (127.0.0.1), no key, platform `pc`. QEMU \(qemuVersion):
    two `qemu-system-x86_64 -accel kvm` processes over loopback TCP (`-incoming tcp:127.0.0.1:PORT`), QMP
    `migrate-set-parameters` downtime-limit 300 ms (Deflect's default budget) and max-bandwidth 100 GiB/s (QEMU's
    default cap of 128 MiB/s off, as Deflect has none), `migrate`, `query-migrate` polled. Both peers: a migration
    still not converged after \(Int(migrationConvergenceTimeout)) s is cancelled and reported as such.

    | peer | RAM | target MiB/s | measured dirty MiB/s | rounds | MiB sent | total s | downtime ms (host) | guest TSC gap ms |
    |---|---|---|---|---|---|---|---|---|
    \(rows.joined(separator: "\n"))

    Target: downtime ≤ 50 ms for an idle 1 GiB guest. \(idleOneGiBDowntime.map { String(format: "Deflect here: %.0f ms, %@ (loopback TCP).", $0, $0 <= 50 ? "met" : "not met") } ?? "Not measured in this run.")

    What the columns mean. *Total*: Deflect, from the start of the migration until the receiver acknowledged
    that the guest runs there; QEMU, `query-migrate` total-time (start to completion on the source).
    *Downtime (host)*: Deflect, from the pause on the source until the receiver's running-ack (state capture,
    last pages, machine built on the receiver); QEMU, `query-migrate` downtime (the source's stop until it
    finished sending, not including the destination's load and resume). *Guest TSC gap*: the first `GAP` line
    the guest printed on the receiver, i.e. the stall its own TSC saw across the migration ("none": no gap over
    2 ms there). Deflect advances the guest TSC on the receiver by the host realtime since the vCPUs were
    captured, so the guest sees the whole pause. QEMU writes the saved IA32_TSC back on the destination
    (target/i386/kvm/kvm.c, kvm_put_msrs), which on a host with TSC offsetting hides the pause from the guest.
    On this nested kvm_pvm host neither matters: the guest's TSC is the host's TSC and KVM does not apply a
    VMM's IA32_TSC write (a vCPU's TSC read back after Deflect's restore is the saved value plus the real time
    since, with or without the advance; a QEMU guest `stop`ped for 1 s, migrated and continued printed a
    1231 ms gap with QEMU 7.2.22), so both peers' gaps show the pause here. *Rounds*: Deflect, dirty-page rounds after the full copy; QEMU, `ram`
    dirty-sync-count. *MiB sent*: Deflect, frame bytes written; QEMU, `ram` transferred. *Measured dirty
    rate*: Deflect, the sender's last measurement; QEMU, the last `ram` dirty-pages-rate seen while active
    (0 when QEMU never reported one). The guest's writes are one 32-bit store per page; what it reaches on this
    host is the measured column. On this nested host the guest also sees gaps of 10–100 ms without any
    migration (the host deschedules its vCPU), so a GAP line is an upper bound of the pause when the pause is short.

    Where Deflect's pause is longer (a guest dirtying 100 MiB/s): Deflect stops iterating once the estimate
    fits the budget and the dirty set no longer shrinks to two thirds of the last round, or is under a tenth of
    the budget (docs/migration-protocol.md, pre-copy); its sender moves roughly 130–200 MiB/s on this host (every
    frame is copied once and checksummed with CRC-64 on both sides, and the receiver runs in the same process,
    sharing the 2 cores with the sender and the dirtying vCPU), so the set left for the pause stays larger than
    QEMU's, whose stream carries no checksum. Single runs on a shared host: the rows vary by tens of ms from run
    to run (earlier runs this session: 1 GiB at 100 MiB/s 70–138 ms, 64 MiB idle 17–59 ms).
    """
    try report.write(section, to: output)
    print("results written to \(output)")
}

private func migrationRow(peer: String, size: Int, rate: Int, _ run: MigrationRun) -> String {
    let gap = run.guestGapMilliseconds.map { String(format: "%.1f", $0) } ?? "none"
    let outcome: (total: String, downtime: String)
    if let failure = run.failure {
        outcome = (String(format: "%.2f", run.totalSeconds), failure.replacingOccurrences(of: "|", with: "/"))
    } else {
        outcome = (String(format: "%.2f", run.totalSeconds), run.downtimeMilliseconds.map { String(format: "%.0f", $0) } ?? "?")
    }
    return String(format: "| %@ | %d MiB | %d | %.1f | %d | %.1f | %@ | %@ | %@ |", peer, size, rate,
                  run.dirtyBytesPerSecond / 1_048_576, run.rounds, run.bytesSent / 1_048_576,
                  outcome.total, outcome.downtime, run.failure == nil ? gap : "—")
}

/// Two machines in this process over loopback TCP (a port the kernel picks).
private func deflectMigration(image: [UInt8], sizeMiB size: Int, rateMiBps rate: Int, tscKHz: UInt32,
                              system: KVMSystem) throws -> MigrationRun {
    let listener = try MigrationTransport.listen(on: .tcp(host: "127.0.0.1", port: 0))
    let destination = MigrationAddress.tcp(host: "127.0.0.1", port: listener.localPort)
    let received = ReceivedMachine()
    let receiverThread = Thread {
        do {
            let peer = try listener.accept(timeoutSeconds: 120)
            try peer.setTimeout(seconds: 60)
            let connection = MigrationConnection(stream: SocketStream(peer), key: nil)
            let sink = CaptureSink()
            received.set(.success((try IncomingMigration.receiveMachine(connection, system: system, timeout: 60,
                                                                        serialOutput: sink), sink)))
        } catch {
            received.set(.failure(BenchError(description: "receiver: \(error)")))
        }
    }
    receiverThread.start()

    var config = MachineConfiguration(image: image, mode: .multiboot, memoryMiB: size, timeoutSeconds: 300)
    config.platform = .pc
    config.kernelPath = "migration_dirty.elf"
    config.append = migrationGuestArguments(rateMiBps: rate, tscKHz: tscKHz)
    let sink = CaptureSink()
    let source = try Machine(configuration: config, serialOutput: sink)
    let running = BackgroundMachine(source)
    let deadline = Date().addingTimeInterval(60)
    while !sink.text.contains("DIRTY") {
        guard Date() < deadline else { throw BenchError(description: "the guest did not start: \(sink.text)") }
        usleep(1000)
    }
    usleep(300_000)   // the dirty rate settles

    var options = MigrationOptions(destination: destination)
    options.timeoutSeconds = migrationConvergenceTimeout
    let begin = DispatchTime.now().uptimeNanoseconds
    try source.beginMigration(options)
    var failure: String?
    do {
        try source.migrate(options)
    } catch {
        failure = "did not converge in \(Int(migrationConvergenceTimeout)) s (\(error))"
    }
    let total = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
    let progress = source.migrationProgress
    if failure != nil {
        // The source runs on; the receiver got an abort.
        source.requestStop()
        listener.shutdown()
    }
    running.done.wait()
    var gap: Double?
    if let (restored, restoredSink) = try? received.wait() {
        let again = BackgroundMachine(restored)
        // The guest prints the migration's gap on its first loop iteration here.
        let until = Date().addingTimeInterval(1)
        while firstGuestGapMilliseconds(restoredSink.text) == nil && Date() < until { usleep(1000) }
        gap = firstGuestGapMilliseconds(restoredSink.text)
        restored.requestStop()
        again.done.wait()
    }
    return MigrationRun(failure: failure, totalSeconds: total, downtimeMilliseconds: progress.downtimeSeconds.map { $0 * 1000 },
                        guestGapMilliseconds: gap, rounds: progress.iteration, bytesSent: Double(progress.bytesSent),
                        dirtyBytesPerSecond: progress.dirtyBytesPerSecond)
}

/// The receiver thread's result, handed to the benchmark.
private final class ReceivedMachine: @unchecked Sendable {
    // Written once by the receiver thread before `ready` is signalled.
    private var result: Result<(Machine, CaptureSink), BenchError>?
    private let ready = DispatchSemaphore(value: 0)

    func set(_ value: Result<(Machine, CaptureSink), BenchError>) {
        result = value
        ready.signal()
    }

    func wait() throws -> (Machine, CaptureSink) {
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
