// VMM: the shared state of one run: the first ending wins, every vCPU is
// kicked when it is decided, and the main thread waits for the decision.
import Dispatch
import KVM
import Synchronization

final class RunController: Sendable {
    private struct State {
        var outcome: RunOutcome?
        var halted = 0
    }

    private let state = Mutex(State())
    /// Mirrors `state.outcome != nil` for the vCPU loops' per-exit check
    /// without taking the lock.
    private let finished = Atomic<Bool>(false)
    private let decided = DispatchSemaphore(value: 0)
    private let threadEnded = DispatchSemaphore(value: 0)
    private let kickers: [VCPUKicker]
    /// Where vCPUs wait while the machine is suspended (ACPI S3).
    let parking: VCPUParking

    init(kickers: [VCPUKicker]) {
        self.kickers = kickers
        parking = VCPUParking(kickers: kickers)
    }

    /// Records how the run ends (the first call wins) and stops every vCPU.
    func finish(_ outcome: RunOutcome) {
        let first = state.withLock { s -> Bool in
            guard s.outcome == nil else { return false }
            s.outcome = outcome
            return true
        }
        guard first else { return }
        finished.store(true, ordering: .releasing)
        parking.stopAll()
        for kicker in kickers { kicker.kick() }
        decided.signal()
    }

    var isFinished: Bool { finished.load(ordering: .acquiring) }
    var outcome: RunOutcome? { state.withLock { $0.outcome } }

    /// Replaces the outcome after the run (to attach register dumps).
    func amend(_ transform: (RunOutcome) -> RunOutcome) {
        state.withLock { s in if let o = s.outcome { s.outcome = transform(o) } }
    }

    /// A vCPU halted for good; the run ends when all have.
    func vcpuHalted() {
        let all = state.withLock { s -> Bool in
            s.halted += 1
            return s.halted == kickers.count
        }
        if all { finish(.allHalted) }
    }

    /// Waits for the outcome; false on timeout.
    func waitForOutcome(seconds: Double?) -> Bool {
        guard let seconds else { decided.wait(); return true }
        return decided.wait(timeout: .now() + seconds) == .success
    }

    func threadDidEnd() { threadEnded.signal() }

    /// Waits until `count` vCPU threads ended or `seconds` passed; returns how many ended.
    func waitForThreads(_ count: Int, seconds: Double) -> Int {
        let deadline = DispatchTime.now() + seconds
        var ended = 0
        while ended < count, threadEnded.wait(timeout: deadline) == .success { ended += 1 }
        return ended
    }
}
