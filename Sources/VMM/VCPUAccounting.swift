// VMM: one vCPU's accounting — exit counts, the exit profile (latency
// histograms per kind and per port/MSR/hypercall) and the per-MSR table —
// written by the vCPU's thread on every exit and readable live by the
// control API. One uncontended lock per exit (tens of nanoseconds against
// exits of microseconds); recording allocates nothing once a place is known.
import KVM
import MSRPolicy
import Synchronization

public final class VCPUAccounting: Sendable {
    public struct Snapshot: Sendable {
        public var statistics: ExitStatistics
        public var profile: ExitProfile
        public var msrStatistics: MSRStatistics
    }

    private let state = Mutex(Snapshot(statistics: ExitStatistics(), profile: ExitProfile(), msrStatistics: MSRStatistics()))

    public init() {}

    @inline(__always)
    func recordExit(_ exit: VCPUExit, runNanoseconds: UInt64, handlingNanoseconds: UInt64) {
        let kind = exit.kind, place = ExitPlace.of(exit)
        state.withLock { s in
            s.statistics.record(kind, runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
            s.profile.record(kind, place: place, runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        }
    }

    @inline(__always)
    func recordMSR(index: UInt32, access: MSRAccess, value: UInt64, outcome: String, rip: UInt64?) {
        state.withLock { $0.msrStatistics.record(index: index, access: access, value: value, outcome: outcome, rip: rip) }
    }

    /// A copy of everything recorded so far.
    public var snapshot: Snapshot { state.withLock { $0 } }
}
