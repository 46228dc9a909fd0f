// VMM: the one owner of a run's state (`VMRunState`, changes checked against
// its table) and the serial control path: every control request — start,
// pause, resume, snapshot, migration start and end, policy replacement,
// register reads, a guest's ACPI S3 suspend and its wake-up — runs on one
// serial executor as one step, so no other request changes the state in the
// middle of it (Firecracker's VmmAction handler on the VMM thread, here a
// dedicated dispatch queue). Steps block (a pause waits for every vCPU to
// park); callers on a server's tasks await `performDetached` instead.
//
// Pausing parks every vCPU at a consistent point (VCPUParking: KVM has
// finished the pending exit completion), stops the guest clock the emulated
// devices follow and saves the kvmclock base; resuming puts the kvmclock
// back (KVM_SET_CLOCK, as QEMU does across a stop) and releases the vCPUs.
// A guest's S3 parks the vCPUs too but leaves time running (the RTC alarm
// that wakes it must ring).
//
// Two things do not wait their turn, on purpose: the run's end (guest exit,
// timeout, shutdown request), which must be able to stop a step waiting for
// a vCPU that never parks — steps see it at their next check and the table
// lets every state become `stopping` — and the vCPU that writes SLP_EN,
// which parks at that I/O exit at once (no further guest instruction, as
// QEMU stops it) and queues its suspend as a step.
import Dispatch
import FoundationEssentials
import Glibc
import KVM
import Synchronization

final class Lifecycle: Sendable {
    private struct State {
        var state: VMRunState = .created
        var startedAt: UInt64?
        var savedClock: KVMClockData?
        /// The vCPU that wrote SLP_EN(S3), until the suspend is entered.
        var suspendRequestedBy: Int?
        /// Where the running migration started (running or paused).
        var beforeMigration: VMRunState?
        /// The migration parked the vCPUs and stopped guest time for its stop-and-copy.
        var migrationParkedVCPUs = false
    }

    private let state = Mutex(State())
    /// The control path: one step at a time, in the order they were submitted.
    private let executor = DispatchQueue(label: "deflect.control")
    /// The thread running the current step: a step calling another control
    /// request runs it inline (the queue would otherwise wait for itself).
    private let stepThread = Mutex<pthread_t?>(nil)
    private let controller: RunController
    private let clock: GuestClock
    private let vm: VirtualMachine
    /// KVM_GET/SET_CLOCK exist on this host (KVM_CAP_ADJUST_CLOCK).
    private let adjustsClock: Bool
    /// ACPI S3 (PC platform only).
    private let sleepControl: SleepControl?

    init(controller: RunController, clock: GuestClock, vm: VirtualMachine, adjustsClock: Bool, sleep: SleepControl?) {
        self.controller = controller
        self.clock = clock
        self.vm = vm
        self.adjustsClock = adjustsClock
        sleepControl = sleep
    }

    var current: VMRunState { state.withLock { $0.state } }

    /// Seconds since `run()` started the vCPUs (0 before).
    var uptimeSeconds: Double {
        guard let started = state.withLock({ $0.startedAt }) else { return 0 }
        return Double(DispatchTime.now().uptimeNanoseconds &- started) / 1e9
    }

    // MARK: - The executor

    private var onExecutor: Bool {
        stepThread.withLock { thread in thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }

    private func asStep<T>(_ body: () throws -> T) rethrows -> T {
        stepThread.withLock { $0 = pthread_self() }
        defer { stepThread.withLock { $0 = nil } }
        return try body()
    }

    /// Runs `step` on the executor and waits for it; inline when called from a step.
    func perform<T, E: Error>(_ step: () throws(E) -> T) throws(E) -> T {
        if onExecutor { return try step() }
        let result: Result<T, E> = executor.sync { asStep { Result { () throws(E) -> T in try step() } } }
        return try result.get()
    }

    /// Runs `step` on the executor without blocking the caller's thread.
    func performDetached<T: Sendable>(_ step: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            executor.async { [self] in continuation.resume(returning: asStep(step)) }
        }
    }

    /// Queues `step` and returns at once.
    private func submit(_ step: @escaping @Sendable () -> Void) {
        executor.async { [self] in asStep(step) }
    }

    // MARK: - State changes

    /// Changes the state to `next` if the table allows it from the current
    /// one; false (nothing changed) otherwise — the run ended meanwhile.
    @discardableResult
    private func move(to next: VMRunState, update: (inout State) -> Void = { _ in }) -> Bool {
        state.withLock { s in
            guard s.state.canChange(to: next) else { return false }
            s.state = next
            update(&s)
            return true
        }
    }

    /// The run is decided: no more control requests change anything.
    func stopping() { move(to: .stopping) }
    func stopped() { move(to: .stopped) }

    /// Ends the run at a user's request (not queued; see the file header).
    func requestStop(_ outcome: RunOutcome) throws(LifecycleError) {
        let now = current
        guard now.canChange(to: .stopping), !controller.isFinished else {
            throw .conflict("the VM is already \(controller.isFinished && now != .stopped ? "stopping" : now.rawValue)")
        }
        controller.finish(outcome)
    }

    // MARK: - Steps (each runs on the executor)

    /// Starts the run: `spawn` starts the vCPU threads. With `paused`,
    /// every vCPU parks at its first entry (the kick leaves `immediate_exit`
    /// set), so no guest instruction runs until `resume()`. False when the
    /// machine ran before.
    func start(paused: Bool, spawn: () -> Void) -> Bool {
        perform { () -> Bool in
            let now = DispatchTime.now().uptimeNanoseconds
            guard move(to: paused ? .pausing : .running, update: { $0.startedAt = now }) else { return false }
            if paused { controller.parking.request() }
            spawn()
            if paused, parkVCPUs() {
                stopGuestTime()
                move(to: .paused)
            }
            return true
        }
    }

    /// Parks every vCPU at a consistent point and stops guest time. Returns
    /// how long it took. Idempotent when already paused.
    @discardableResult
    func pause() throws(LifecycleError) -> Double {
        try perform { () throws(LifecycleError) -> Double in
            let begin = DispatchTime.now().uptimeNanoseconds
            switch current {
            case .running: break
            case .paused: return 0
            case .suspended: throw .conflict("the guest is suspended (ACPI S3); it cannot be paused until it wakes")
            case let other: throw .conflict("the VM is \(other.rawValue); only a running VM can be paused")
            }
            move(to: .pausing)
            guard parkVCPUs() else { throw .conflict("the VM stopped while it was being paused") }
            if let vcpu = state.withLock({ $0.suspendRequestedBy }) {
                // The guest asked for S3 while the vCPUs were parking: it sleeps.
                enterSuspend(requestedBy: vcpu)
                throw .conflict("the guest suspended itself (ACPI S3) while it was being paused")
            }
            stopGuestTime()
            guard move(to: .paused) else { throw .conflict("the VM stopped while it was being paused") }
            return Double(DispatchTime.now().uptimeNanoseconds &- begin) / 1e9
        }
    }

    /// Puts the kvmclock back where the pause found it and releases the
    /// vCPUs. Idempotent when already running.
    @discardableResult
    func resume() throws(LifecycleError) -> Double {
        try perform { () throws(LifecycleError) -> Double in
            let begin = DispatchTime.now().uptimeNanoseconds
            switch current {
            case .paused: break
            case .running: return 0
            case let other: throw .conflict("the VM is \(other.rawValue); only a paused VM can be resumed")
            }
            try continueGuest()
            return Double(DispatchTime.now().uptimeNanoseconds &- begin) / 1e9
        }
    }

    /// Runs `body` with the paused machine in `snapshotting`, then back to
    /// `paused` (unless the run ended meanwhile).
    func whileSnapshotting<T>(_ body: () throws(MachineError) -> T) throws(MachineError) -> T {
        try perform { () throws(MachineError) -> T in
            let now = current
            guard now == .paused, move(to: .snapshotting) else {
                throw .snapshot("the VM must be paused to take a snapshot (it is \(now.rawValue))")
            }
            defer { move(to: .paused) }
            return try body()
        }
    }

    /// Runs `body` (which must not change the run state) when the VM is in
    /// one of `allowed`; a conflict naming the state otherwise.
    func whileIn<T, E: Error>(_ allowed: Set<VMRunState>, refusal: (VMRunState) -> E,
                              _ body: () throws(E) -> T) throws(E) -> T {
        try perform { () throws(E) -> T in
            let now = controller.isFinished && current != .stopped ? .stopping : current
            guard allowed.contains(now) else { throw refusal(now) }
            return try body()
        }
    }

    /// A migration takes the machine: `accept` (the migration's own checks)
    /// runs first; then the state is `migrating` until `endMigration`.
    func beginMigration(_ accept: () throws(MachineError) -> Void) throws(MachineError) {
        try perform { () throws(MachineError) -> Void in
            let now = current
            if now == .migrating { throw .migration("a migration of this VM is already in progress") }
            guard now == .running || now == .paused, !controller.isFinished else {
                throw .migration("the VM is \(now.rawValue); only a running or paused VM can be migrated")
            }
            try accept()
            move(to: .migrating) { $0.beforeMigration = now }
        }
    }

    /// The migration's stop-and-copy: parks every vCPU and stops guest time
    /// (the state stays `migrating`). True when it parked them now (the VM
    /// was running when the migration started).
    func parkForMigration() throws(MachineError) -> Bool {
        try perform { () throws(MachineError) -> Bool in
            guard current == .migrating else { throw .migration("the VM is \(current.rawValue), not migrating") }
            guard state.withLock({ $0.beforeMigration }) == .running else { return false }
            guard parkVCPUs() else { throw .migration("the guest's run ended during the migration") }
            stopGuestTime()
            state.withLock { $0.migrationParkedVCPUs = true }
            if state.withLock({ $0.suspendRequestedBy }) != nil {
                throw .migration("the guest suspended itself (ACPI S3) during the migration")
            }
            return true
        }
    }

    /// How a migration ended, for `endMigration`.
    enum MigrationEnd {
        /// The source goes on as before the migration.
        case failed
        /// Go was sent and not acknowledged: the guest may run on the receiver; stay paused.
        case inDoubt
    }

    /// Gives the machine back after a migration that did not move the guest
    /// (a completed one ends the run instead).
    func endMigration(_ end: MigrationEnd) {
        perform { () -> Void in
            let (now, before, parked) = state.withLock { ($0.state, $0.beforeMigration, $0.migrationParkedVCPUs) }
            guard now == .migrating, let before else { return }
            state.withLock {
                $0.beforeMigration = nil
                $0.migrationParkedVCPUs = false
            }
            switch (end, before) {
            case (.inDoubt, _), (.failed, .paused):
                move(to: .paused)
            case (.failed, _) where parked:
                do throws(LifecycleError) {
                    try continueGuest()
                } catch {
                    move(to: .paused)
                    StandardStreams.writeError("deflect: warning: \(error)\n")
                }
            case (.failed, _):
                // The vCPUs ran throughout, unless the guest asked for S3 meanwhile.
                if let vcpu = state.withLock({ $0.suspendRequestedBy }) {
                    if parkVCPUs() { enterSuspend(requestedBy: vcpu) }
                } else {
                    move(to: .running)
                }
            }
        }
    }

    /// The guest wrote SLP_TYP(S3)|SLP_EN on vCPU `vcpu`'s thread, during
    /// that I/O exit. Every vCPU is asked to park now — this one at its next
    /// entry, which completes the OUT and executes nothing more — and the
    /// suspend is queued as a step. A request while one is pending is the same suspend.
    func guestRequestedSuspend(by vcpu: Int) {
        guard sleepControl != nil else { return }
        let first = state.withLock { s -> Bool in
            guard s.suspendRequestedBy == nil else { return false }
            s.suspendRequestedBy = vcpu
            return true
        }
        controller.parking.request()
        guard first else { return }
        submit { [self] in
            // A pause or a migration that came first has taken (or will take) the request.
            guard state.withLock({ $0.suspendRequestedBy }) != nil, current == .running else { return }
            guard parkVCPUs() else { return }
            enterSuspend(requestedBy: vcpu)
        }
    }

    // MARK: - Mechanics (called from steps)

    /// Asks every vCPU to park and waits until all have; false when the run ended first.
    private func parkVCPUs() -> Bool {
        controller.parking.request()
        return controller.parking.waitUntilAllParked(abandon: { controller.isFinished })
    }

    /// Every vCPU is out of KVM_RUN: the kvmclock base is stable now. Saves
    /// it and stops the guest clock.
    private func stopGuestTime() {
        let saved = adjustsClock ? try? vm.clock() : nil
        clock.pause()
        state.withLock { $0.savedClock = saved }
    }

    /// From paused (or a migration's park): guest time goes on, and the
    /// vCPUs run again — or, when the guest asked for S3 while they were
    /// being parked, it sleeps now.
    private func continueGuest() throws(LifecycleError) {
        if let saved = state.withLock({ $0.savedClock }) {
            do throws(KVMError) {
                try vm.setClock(KVMClockData(clock: saved.clock))
            } catch {
                throw .host("cannot restore the kvmclock (KVM_SET_CLOCK): \(error); the VM stays paused")
            }
        }
        clock.resume()
        state.withLock { $0.savedClock = nil }
        if let vcpu = state.withLock({ $0.suspendRequestedBy }) {
            enterSuspend(requestedBy: vcpu)
            return
        }
        guard move(to: .running) else { return }
        controller.parking.release()
    }

    /// Every vCPU is parked: the machine sleeps (S3) until a wake event,
    /// polled on a thread of its own; the wake-up is a step.
    private func enterSuspend(requestedBy vcpu: Int) {
        guard let sleep = sleepControl, move(to: .suspended) else { return }
        sleep.enterSleep(requestedBy: vcpu)
        do {
            try HostThread.start(name: "acpi-s3") { [self] in
                while !sleep.wakeEventPending() {
                    if controller.isFinished { return }
                    HostThread.sleep(seconds: SleepControl.wakePollSeconds)
                }
                submit { [self] in wake(source: "RTC alarm") }
            }
        } catch {
            controller.finish(.hostError("S3: no wake-up without its poller: \(error)"))
        }
    }

    /// The wake-up from S3: the platform reset SleepControl describes, then
    /// the vCPUs run again, each after resetting itself.
    private func wake(source: String) {
        guard current == .suspended, !controller.isFinished else { return }
        let work: [Int: VCPUParking.Work]
        do throws(KVMError) {
            guard let reset = try sleepControl?.wake(source: source) else {
                controller.finish(.resumeWithoutWakingVector)
                return
            }
            work = reset
        } catch {
            controller.finish(.hostError("waking from S3: \(error)"))
            return
        }
        // Cleared before the release: a guest that suspends again at once
        // must not find this suspend still pending.
        guard move(to: .running, update: { $0.suspendRequestedBy = nil }) else { return }
        controller.parking.release(work: work)
    }
}
