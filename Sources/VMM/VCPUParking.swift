// VMM: stopping every vCPU at a consistent point and holding it there until
// released: the mechanism under pause, snapshot, migration and ACPI S3 (the
// control steps of `Lifecycle` drive it). A coordinator requests parking,
// which kicks every vCPU; each vCPU thread parks when its KVM_RUN comes back
// `.interrupted` — KVM has then finished the pending exit completion, so the
// vCPU's state is consistent (KVM's API documentation on `immediate_exit`) —
// and waits. Released vCPUs run the work
// the coordinator gave them (on their own thread, which owns the vCPU) and
// enter KVM_RUN again. Ending the run releases everyone for good.
import Dispatch
import FoundationEssentials
import Glibc
import KVM
import Synchronization

final class VCPUParking: Sendable {
    /// Work a released vCPU runs on its own thread before it re-enters the guest.
    typealias Work = @Sendable (VCPU) throws -> Void

    /// What a parked vCPU does next.
    enum Release {
        case resume(Work?)
        /// The run ended while it was parked: leave the loop.
        case stop
    }

    private struct State {
        var parked: Set<Int> = []
        /// vCPUs whose thread ended: they cannot park and are not waited for.
        var gone: Set<Int> = []
        var work: [Int: Work] = [:]
        var stopped = false
    }

    private let state = Mutex(State())
    private let requested = Atomic<Bool>(false)
    private let wakeups: [DispatchSemaphore]
    private let kickers: [VCPUKicker]
    /// Signalled whenever a vCPU parks or its thread ends, so the coordinator
    /// wakes as soon as the last one does instead of on a polling period.
    private let changed = DispatchSemaphore(value: 0)

    init(kickers: [VCPUKicker]) {
        self.kickers = kickers
        wakeups = kickers.map { _ in DispatchSemaphore(value: 0) }
    }

    /// Whether vCPUs should park at their next `.interrupted` exit.
    var isRequested: Bool { requested.load(ordering: .acquiring) }

    /// Asks every vCPU to park and kicks them all.
    func request() {
        requested.store(true, ordering: .releasing)
        for kicker in kickers { kicker.kick() }
    }

    /// Called by vCPU `index`'s thread: parks it until released or stopped.
    func park(_ index: Int) -> Release {
        let stopped = state.withLock { s -> Bool in
            if !s.stopped { s.parked.insert(index) }
            return s.stopped
        }
        changed.signal()
        if stopped { return .stop }
        wakeups[index].wait()
        return state.withLock { s in
            s.stopped ? .stop : .resume(s.work.removeValue(forKey: index))
        }
    }

    /// Called when vCPU `index`'s thread ends.
    func threadEnded(_ index: Int) {
        state.withLock { s in _ = s.gone.insert(index) }
        changed.signal()
    }

    /// Waits until every live vCPU parked; false when `abandon` says to stop
    /// waiting (the run ended) first. Kicks again while it waits: a kick that
    /// raced with a vCPU clearing `immediate_exit` after a stray signal would
    /// otherwise be lost.
    func waitUntilAllParked(abandon: () -> Bool) -> Bool {
        while true {
            let all = state.withLock { s in s.parked.union(s.gone).count >= kickers.count }
            if all { return true }
            if abandon() { return false }
            for (i, kicker) in kickers.enumerated() where !state.withLock({ $0.parked.contains(i) || $0.gone.contains(i) }) {
                kicker.kick()
            }
            // Woken by the next vCPU that parks; at most 5 ms before kicking again.
            _ = changed.wait(timeout: .now() + .milliseconds(5))
        }
    }

    /// Lets every parked vCPU go on, each after running its entry of `work`.
    func release(work: [Int: Work] = [:]) {
        requested.store(false, ordering: .releasing)
        wakeParked { $0.work = work }
    }

    /// The run ended: parked vCPUs stop, and later `park` calls return `.stop`.
    func stopAll() {
        wakeParked { $0.stopped = true }
    }

    /// Updates the state and wakes every parked vCPU, which then reads it.
    private func wakeParked(_ update: (inout State) -> Void) {
        let parked = state.withLock { s -> Set<Int> in
            update(&s)
            defer { s.parked = [] }
            return s.parked
        }
        for index in parked { wakeups[index].signal() }
    }
}

extension VCPURunner {
    /// Parks this vCPU (its KVM_RUN just came back `.interrupted`, so the
    /// pending exit is complete) until released; false when the run ended.
    func parkUntilReleased() -> Bool {
        switch controller.parking.park(index) {
        case .stop:
            return false
        case let .resume(work):
            do {
                try work?(vcpu)
            } catch {
                controller.finish(.hostError("vCPU \(index): \(error)"))
                return false
            }
            vcpu.clearImmediateExit()
            return true
        }
    }
}
