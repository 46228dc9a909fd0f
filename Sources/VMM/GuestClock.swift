// VMM: the time the guest's emulated clocks follow (the ACPI PM timer, the
// RAPL energy counters): host monotonic time less the time the VM spent
// paused, so a pause is invisible to them — the counters neither jump nor
// run while no guest instruction does.
import Dispatch
import Synchronization

public final class GuestClock: Sendable {
    private struct State {
        var pausedTotal: UInt64 = 0
        var pausedAt: UInt64?
    }

    private let start: UInt64
    private let state = Mutex(State())

    /// `continuingAt`: the guest time a restored machine resumes from (a
    /// snapshot's `now()`), so the counters following it never go backwards.
    public init(continuingAt nanoseconds: UInt64 = 0) {
        start = DispatchTime.now().uptimeNanoseconds &- nanoseconds
    }

    private var hostElapsed: UInt64 { DispatchTime.now().uptimeNanoseconds &- start }

    /// Guest-visible nanoseconds since the machine was built; frozen while paused.
    public func now() -> UInt64 {
        let host = hostElapsed
        return state.withLock { s in (s.pausedAt ?? host) &- s.pausedTotal }
    }

    /// Nanoseconds the VM has spent paused, this pause included.
    public var pausedNanoseconds: UInt64 {
        let host = hostElapsed
        return state.withLock { s in s.pausedTotal &+ (s.pausedAt.map { host &- $0 } ?? 0) }
    }

    /// Stops guest time (idempotent).
    func pause() {
        let host = hostElapsed
        state.withLock { s in if s.pausedAt == nil { s.pausedAt = host } }
    }

    /// Lets guest time run again from where it stopped (idempotent).
    func resume() {
        let host = hostElapsed
        state.withLock { s in
            if let at = s.pausedAt { s.pausedTotal &+= host &- at; s.pausedAt = nil }
        }
    }

    /// The clock as a closure for devices and MSR providers.
    var reader: @Sendable () -> UInt64 { { [self] in now() } }
}
