// VMM: the sending side of a live migration (pre-copy). In order: the
// guest's migration-control word is checked (a guest that was offered
// KVM_FEATURE_MIGRATION_CONTROL and has not set KVM_MIGRATION_READY is not
// migrated unless forced, which is logged); handshake; KVM's dirty log is
// started and drained BEFORE any page is copied (so a page written during
// the copy is sent again); all of RAM (zero pages skipped: a receiver's
// memory starts zeroed); then rounds of the pages dirtied since, until
// dirty bytes / measured bandwidth fit the downtime budget and another
// round would not shrink them much (MigrationConvergence); then pause, the
// last dirty pages, the state sections (what a snapshot's state file
// holds), complete; the receiver builds the machine and says ready; the
// sender's go commits (the receiver runs the guest only on it), and its
// running-ack ends the source run ("migrated to DEST"). Any failure before
// go is written: the source resumes if this migration paused it, and the
// error says why. After go, a lost ack leaves the migration in doubt: the
// VM stays paused here, never resumed on its own (it may run on DEST).
import CPUModel
import Dispatch
import FoundationEssentials
import Glibc
import KVM
import Migration
import ReadableErrors
import Snapshot
import Synchronization

/// What `Machine.migrate` is asked to do.
public struct MigrationOptions: Sendable {
    public var destination: MigrationAddress
    /// The pause the guest may see (QEMU's and cloud-hypervisor's default: 300 ms).
    public var downtimeBudgetSeconds: Double = 0.3
    /// Give up (the source keeps running) when the rounds have not converged by then.
    public var timeoutSeconds: Double = 600
    /// Migrate even though the guest has not agreed (logged).
    public var force = false
    /// Not converged by the timeout: pause and send the rest anyway (the
    /// downtime then exceeds the budget) instead of giving up.
    public var pauseAndCopy = false
    public var key: MigrationKey?
    public var ioTimeoutSeconds: Double = MigrationTransport.defaultIOTimeout

    public init(destination: MigrationAddress) { self.destination = destination }
}

/// Where an outgoing migration is, for `GET /migration` and `deflect ctl migrate`.
public struct MigrationProgress: Sendable, Equatable {
    public enum Phase: String, Sendable, CaseIterable {
        case idle, connecting, copying, iterating
        case stopAndCopy = "stop-and-copy"
        case waitingForReceiver = "waiting-for-receiver"
        case completed, failed
        /// `go` was sent and no running-ack came: the guest may run on
        /// the receiver; this VM stays paused until an operator decides.
        case inDoubt = "in-doubt"
    }

    public var phase: Phase = .idle
    public var destination: String?
    /// Dirty-page rounds after the full copy.
    public var iteration = 0
    /// Bytes written to the connection (frames, so headers and checksums included).
    public var bytesSent: UInt64 = 0
    public var dirtyBytesPerSecond: Double = 0
    public var bandwidthBytesPerSecond: Double = 0
    /// Dirty bytes now ÷ bandwidth: the pause a stop-and-copy now would cost.
    public var estimatedDowntimeSeconds: Double = 0
    /// The pause the guest saw (pause to the receiver's running-ack), once known.
    public var downtimeSeconds: Double?
    public var elapsedSeconds: Double = 0
    public var lastError: String?
    /// The rounds did not converge by the timeout and the VM was paused
    /// anyway (pause-and-copy): the downtime exceeds the budget.
    public var pausedBeforeConvergence = false

    public init() {}
}

/// One outgoing migration at a time, and its progress.
final class MigrationTracker: Sendable {
    let progress = Mutex(MigrationProgress())
    private let active = Mutex(false)

    func claim() -> Bool {
        active.withLock { busy in
            guard !busy else { return false }
            busy = true
            return true
        }
    }

    func release() { active.withLock { $0 = false } }

    func update(_ change: (inout MigrationProgress) -> Void) { progress.withLock { change(&$0) } }
}

extension Machine {
    /// The current (or last) outgoing migration's progress.
    public var migrationProgress: MigrationProgress { migration.progress.withLock { $0 } }

    /// Checks that a migration may start now and claims it (one at a time,
    /// a control step): the run must be going, and a guest offered
    /// migration control must have agreed, unless `force` (then a warning is
    /// logged). From here the VM is `migrating` — every other control
    /// request but a shutdown is refused — until the migration ends. Call
    /// `migrate` next.
    public func beginMigration(_ options: MigrationOptions) throws(MachineError) {
        try lifecycle.beginMigration { () throws(MachineError) -> Void in
            if let gate = migrationGate, !gate.migrationAllowed {
                guard options.force else {
                    throw .migration("the guest has not agreed to be migrated: it was offered KVM_FEATURE_MIGRATION_CONTROL and has not set KVM_MIGRATION_READY in MSR_KVM_MIGRATION_CONTROL (force overrides)")
                }
                StandardStreams.writeError("deflect: warning: migration to \(options.destination) forced although the guest has not set KVM_MIGRATION_READY\n")
            }
            guard migration.claim() else { throw .migration("a migration of this VM is already in progress") }
            migration.update { progress in
                progress = MigrationProgress()
                progress.phase = .connecting
                progress.destination = options.destination.description
            }
        }
    }

    /// What a failed migration left on this host, for its error line.
    static func whereTheVMIs(_ state: VMRunState, resumed: Bool) -> String {
        switch state {
        case .running: resumed ? "the VM keeps running on this host (resumed after the stop-and-copy)" : "the VM keeps running on this host"
        case .paused: "the VM stays paused on this host"
        default: "the VM is \(state.rawValue) on this host"
        }
    }

    /// Runs the migration `beginMigration` claimed, blocking until the
    /// receiver runs the guest (then this run ends with `.migrated`) or it
    /// fails (then the source goes on as before: resumed if this migration
    /// paused it), or it is in doubt (go sent, no running-ack: the VM stays paused).
    public func migrate(_ options: MigrationOptions) throws(MachineError) {
        defer { migration.release() }
        let begin = DispatchTime.now()
        var pausedHere = false
        var committed = false
        do {
            try OutgoingMigration(machine: self, options: options, begin: begin).run(pausedHere: &pausedHere, committed: &committed)
        } catch {
            let message = "\(error)"
            // An abort after go: the receiver says it will not run the guest.
            if committed && !Self.receiverDeclined(error) {
                let line = "sent go to \(options.destination) but got no running-ack (\(message)): the guest may be running on \(options.destination); this VM stays paused, and deflect ctl resume here is only safe if it does not run there"
                lifecycle.endMigration(.inDoubt)
                migration.update { progress in
                    progress.phase = .inDoubt
                    progress.lastError = line
                    progress.elapsedSeconds = Self.seconds(since: begin)
                }
                StandardStreams.writeError("deflect: warning: migration in doubt: \(line)\n")
                throw .migration("in doubt: \(line)")
            }
            for line in pci?.reacquireHostEndpoints() ?? [] {
                StandardStreams.writeError("deflect: warning: after the failed migration: \(line)\n")
            }
            pci?.resumeWorkers()
            lifecycle.endMigration(.failed)
            let line = "\(message); \(Self.whereTheVMIs(lifecycle.current, resumed: pausedHere))"
            migration.update { progress in
                progress.phase = .failed
                progress.lastError = line
                progress.elapsedSeconds = Self.seconds(since: begin)
            }
            throw .migration("to \(options.destination): \(line)")
        }
    }

    private static func receiverDeclined(_ error: any Error) -> Bool {
        if case .aborted? = error as? MigrationError { return true }
        return false
    }

    static func seconds(since begin: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - begin.uptimeNanoseconds) / 1e9
    }

    /// Ends a migration `beginMigration` claimed that never started (no
    /// thread to run it): failed, and the VM runs on as before.
    public func abandonMigration(_ reason: String) {
        defer { migration.release() }
        lifecycle.endMigration(.failed)
        migration.update { progress in
            progress.phase = .failed
            progress.lastError = reason
        }
    }

    /// Ends the run: the guest runs on the receiver now.
    func finishMigrated(to destination: String) {
        controller.finish(.migrated(destination: destination))
    }
}

/// Why the sender gave up on its own (not a protocol or transport error).
private struct MigrationStop: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The steps of one outgoing migration.
private struct OutgoingMigration {
    let machine: Machine
    let options: MigrationOptions
    let begin: DispatchTime
    /// Pages per memory message (4 MiB of pages: well under the frame limit).
    static let pagesPerMessage = 1024

    func run(pausedHere: inout Bool, committed: inout Bool) throws {
        let stream = try MigrationTransport.connect(to: options.destination, ioTimeout: options.ioTimeoutSeconds)
        defer { stream.close() }
        let connection = MigrationConnection(stream: stream, key: options.key)
        do {
            try transfer(connection, pausedHere: &pausedHere, committed: &committed)
        } catch let error as MigrationError {
            switch error {
            case .refused, .aborted, .connectionClosed: break   // nothing to tell the peer
            default: connection.abort("\(error)")
            }
            throw error
        } catch {
            connection.abort("the sender failed: \(error)")
            throw error
        }
    }

    private func transfer(_ connection: MigrationConnection, pausedHere: inout Bool, committed: inout Bool) throws {
        let ram = machine.ram
        let hello = MigrationHello(kvmAPIVersion: UInt32(clamping: try machine.system.apiVersion()),
                                   host: try SnapshotHost.current(machine.system),
                                   memoryBytes: machine.configuration.memoryBytes,
                                   vcpuCount: UInt32(machine.configuration.vcpuCount), authenticated: options.key != nil,
                                   cpuModel: try machine.configuration.cpuModel.map { [UInt8](try JSONEncoder().encode($0)) } ?? [])
        try connection.handshake(hello)

        // The log must run, drained, before the first page is read: a page
        // written after its copy is then reported in the next round.
        machine.dirtyLogging.withLock { $0 = false }   // a diff snapshot needs a new full one after this
        try machine.startDirtyLog()
        let writable = ram.regions.filter { !$0.readOnly }
        for region in writable { _ = try machine.dirtyPages(region) }
        var lastCollection = DispatchTime.now()

        progress { $0.phase = .copying }
        var bandwidth = try measure(connection) { () throws in
            for region in ram.regions {
                try send(region, pages: (0..<region.pageCount).filter { !region.isZeroPage($0) }, connection)
            }
        }

        var pending: [UInt32: DirtyPageBitmap] = [:]
        var previousRoundBytes = connection.bytesSent
        while true {
            if machine.controller.isFinished { throw MigrationStop("the guest's run ended during the migration") }
            let dirty = try collect(writable)
            let dirtyBytes = UInt64(dirty.values.reduce(0) { $0 + $1.dirtyCount }) * GuestMemory.pageSize
            let interval = max(Machine.seconds(since: lastCollection), 1e-6)
            lastCollection = DispatchTime.now()
            let estimate = dirtyBytes == 0 ? 0 : Double(dirtyBytes) / max(bandwidth, 1)
            progress {
                $0.dirtyBytesPerSecond = Double(dirtyBytes) / interval
                $0.bandwidthBytesPerSecond = bandwidth
                $0.estimatedDowntimeSeconds = estimate
            }
            if MigrationConvergence.readyToStop(estimatedDowntime: estimate, budget: options.downtimeBudgetSeconds,
                                                dirtyBytes: dirtyBytes, previousRoundBytes: previousRoundBytes) {
                pending = dirty
                break
            }
            previousRoundBytes = dirtyBytes
            if Machine.seconds(since: begin) > options.timeoutSeconds {
                if options.pauseAndCopy {
                    pending = dirty
                    progress { $0.pausedBeforeConvergence = true }
                    break
                }
                throw MigrationStop("did not converge within \(options.timeoutSeconds.fixed(0)) s (\((Double(dirtyBytes) / 1_048_576).fixed(1)) MiB dirty, \((bandwidth / 1_048_576).fixed(1)) MiB/s bandwidth, estimated downtime \((estimate * 1000).fixed(0)) ms over the \((options.downtimeBudgetSeconds * 1000).fixed(0)) ms budget)")
            }
            progress { $0.phase = .iterating; $0.iteration += 1 }
            let roundBandwidth = try measure(connection) { () throws in try send(dirty, connection) }
            if roundBandwidth > 0 { bandwidth = roundBandwidth }
        }

        // Stop and copy: from here the guest waits for the receiver.
        pausedHere = try machine.lifecycle.parkForMigration()
        let pausedAt = DispatchTime.now()
        // The devices finish the requests the guest made available and stop,
        // so their last writes are in the final round and none is in flight
        // in the state sent (a failed migration resumes them).
        machine.pci?.quiesce()
        progress { $0.phase = .stopAndCopy }
        var final = try collect(writable)
        for (slot, bitmap) in pending {
            final[slot] = final[slot].map { $0.union(bitmap) } ?? bitmap
        }
        try send(final, connection)
        let state = try machine.captureState(memory: SavedMemory(file: "", size: machine.configuration.ramEnd,
                                                                 kind: IncomingMigration.memoryKind))
        try connection.sendState(try state.serialized())
        // A receiver on this host opens the same TAPs and vsock path.
        machine.pci?.releaseHostEndpoints()
        try connection.send(.complete)
        progress { $0.phase = .waitingForReceiver; $0.bytesSent = connection.bytesSent }
        _ = try connection.expect(.ready, during: "the wait for the receiver to build the machine")
        // The commit: a go that failed to be written cannot have reached the
        // receiver whole (it checks the CRC), so only a written go commits.
        try connection.send(.go)
        committed = true
        _ = try connection.expect(.runningAck, during: "the wait for the receiver to run the guest")
        let downtime = Machine.seconds(since: pausedAt)
        progress {
            $0.phase = .completed
            $0.downtimeSeconds = downtime
            $0.bytesSent = connection.bytesSent
            $0.elapsedSeconds = Machine.seconds(since: begin)
        }
        machine.finishMigrated(to: options.destination.description)
    }

    private func progress(_ change: (inout MigrationProgress) -> Void) {
        let elapsed = Machine.seconds(since: begin)
        machine.migration.update { progress in
            change(&progress)
            progress.elapsedSeconds = elapsed
        }
    }

    /// Runs `body` and answers the bytes per second it sent.
    private func measure(_ connection: MigrationConnection, _ body: () throws -> Void) throws -> Double {
        let before = connection.bytesSent
        let start = DispatchTime.now()
        try body()
        let sent = connection.bytesSent - before
        progress { $0.bytesSent = connection.bytesSent }
        let seconds = Machine.seconds(since: start)
        return sent == 0 || seconds <= 0 ? 0 : Double(sent) / seconds
    }

    /// The pages dirtied since the last collection, by slot.
    private func collect(_ regions: [GuestMemory]) throws -> [UInt32: DirtyPageBitmap] {
        var result: [UInt32: DirtyPageBitmap] = [:]
        for region in regions { result[region.slot] = try machine.dirtyPages(region) }
        return result
    }

    private func send(_ dirty: [UInt32: DirtyPageBitmap], _ connection: MigrationConnection) throws {
        for region in machine.ram.regions {
            guard let bitmap = dirty[region.slot] else { continue }
            try send(region, pages: bitmap.dirtyPages, connection)
        }
    }

    /// Sends `pages` (ascending page numbers of `region`) as runs, at most
    /// `pagesPerMessage` pages per memory message, each copied from guest
    /// memory straight into the connection's frame buffer.
    private func send(_ region: GuestMemory, pages: [Int], _ connection: MigrationConnection) throws {
        var runs: [PageRun] = []
        var pagesInMessage = 0
        func flush() throws {
            guard !runs.isEmpty else { return }
            try connection.sendPages(runs) { index, buffer in
                try region.append(at: GuestPhysicalAddress(runs[index].guestPhysicalAddress),
                                  count: Int(runs[index].pageCount) * Int(GuestMemory.pageSize), to: &buffer)
            }
            runs.removeAll(keepingCapacity: true)
            pagesInMessage = 0
        }
        var index = 0
        while index < pages.count {
            var end = index + 1
            let room = Self.pagesPerMessage - pagesInMessage
            while end < pages.count, end - index < room, pages[end] == pages[end - 1] + 1 { end += 1 }
            let address = region.start.rawValue + UInt64(pages[index]) * GuestMemory.pageSize
            runs.append(PageRun(guestPhysicalAddress: address, pageCount: UInt32(end - index)))
            pagesInMessage += end - index
            if pagesInMessage >= Self.pagesPerMessage { try flush() }
            index = end
        }
        try flush()
    }
}

/// When pre-copy stops iterating. The estimate (dirty bytes ÷ bandwidth)
/// must fit the budget, as in QEMU; but a round that fits the budget while
/// the dirty set is still shrinking fast is worth sending first: a guest
/// dirtying 100 MiB/s leaves ~20 MiB after the full copy (tens of ms of
/// pause), a few MiB after one more round. So while the estimate is above a
/// tenth of the budget and this round's set is at most two thirds of the
/// last one, iterate on; the set then shrinks geometrically, so this adds a
/// few rounds at most (≤ 6), and a set that stops shrinking ends it at once.
enum MigrationConvergence {
    static func readyToStop(estimatedDowntime: Double, budget: Double, dirtyBytes: UInt64, previousRoundBytes: UInt64) -> Bool {
        guard estimatedDowntime <= budget else { return false }
        let worthAnotherRound = estimatedDowntime > budget / 10 && dirtyBytes * 3 <= previousRoundBytes * 2
        return !worthAnotherRound
    }
}
