// VMM: the monotonic clock that time-based MSR providers (RAPL counters) read.
import Dispatch

enum MonotonicClock {
    /// Nanoseconds since this call, for time-based MSR providers (RAPL counters).
    static func sinceStart() -> @Sendable () -> UInt64 {
        let start = DispatchTime.now().uptimeNanoseconds
        return { DispatchTime.now().uptimeNanoseconds &- start }
    }
}
