// VMM: the compiled policy filter (pure MSRPolicy value) as the KVM layer's
// KVM_X86_SET_MSR_FILTER argument, and the clock MSR providers read.
import Dispatch
import KVM
import MSRPolicy

extension MSRFilter {
    init(_ compiled: CompiledFilter) {
        self.init(default: compiled.defaultAllow ? .allow : .deny,
                  ranges: compiled.ranges.map { Range(flags: $0.flags, base: $0.base, count: $0.count, bitmap: $0.bitmap) })
    }
}

enum MonotonicClock {
    /// Nanoseconds since this call, for time-based MSR providers (RAPL counters).
    static func sinceStart() -> @Sendable () -> UInt64 {
        let start = DispatchTime.now().uptimeNanoseconds
        return { DispatchTime.now().uptimeNanoseconds &- start }
    }
}
