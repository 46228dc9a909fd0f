// VMM: one vCPU's accounting — exit counts, the exit profile (latency
// histograms per kind and per port/MSR/hypercall) and the per-MSR table —
// written by the vCPU's thread on every exit and readable live by the
// control API. Counts and profile are live cells (LiveAccounting.swift): no
// lock on the exit path, and a reader never makes the vCPU wait or copy. The
// per-MSR table (strings, dictionaries) stays behind one uncontended lock,
// taken only on MSR exits. Recording allocates nothing once a kind, place
// and MSR outcome are known.
import KVM
import MSRPolicy
import Synchronization

public final class VCPUAccounting: Sendable {
    public struct Snapshot: Sendable {
        public var statistics: ExitStatistics
        public var profile: ExitProfile
        public var msrStatistics: MSRStatistics
    }

    private let counters = ExitCounters()
    private let profileCells = LiveExitProfile()
    private let msrTable = Mutex(MSRStatistics())

    public init() {}

    /// Records one exit. Called by the vCPU's thread only, with the
    /// `PlaceDirectory` that thread keeps for this accounting.
    @inline(__always)
    func recordExit(_ exit: VCPUExit, runNanoseconds: UInt64, handlingNanoseconds: UInt64, places: inout PlaceDirectory) {
        let kind = exit.kind.rawValue
        let kindCells = profileCells.kind(kind)
        let placeCells = ExitPlace.of(exit).map { places.cells(for: $0, in: profileCells)?.latencies ?? profileCells.overflow }
        let update = counters.beginUpdate()
        counters.record(kind, runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        kindCells.record(runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        placeCells?.record(runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        counters.endUpdate(update)
    }

    @inline(__always)
    func recordMSR(index: UInt32, access: MSRAccess, value: UInt64, outcome: String, rip: UInt64?) {
        msrTable.withLock { $0.record(index: index, access: access, value: value, outcome: outcome, rip: rip) }
    }

    /// The exit counts now: a consistent copy, taken without stopping the vCPU.
    public var statistics: ExitStatistics {
        var attempts = 0
        return counters.read(attempts: &attempts)
    }

    /// As `statistics`, with how many copies it took (a writer in the middle of an update costs one more).
    func statistics(attempts: inout Int) -> ExitStatistics { counters.read(attempts: &attempts) }

    /// The exit profile now, copied from the live cells without stopping the vCPU.
    public var profile: ExitProfile { profileCells.read(consistentWith: counters).profile }

    /// As `profile`, and whether the copy is whole (kinds and places agree).
    func profile(maxAttempts: Int) -> (profile: ExitProfile, whole: Bool) {
        profileCells.read(consistentWith: counters, maxAttempts: maxAttempts)
    }

    /// The per-MSR table now, copied so that the vCPU's next record does not copy it.
    public var msrStatistics: MSRStatistics { msrTable.withLock { $0.independentCopy() } }

    /// A copy of everything recorded so far.
    public var snapshot: Snapshot { Snapshot(statistics: statistics, profile: profile, msrStatistics: msrStatistics) }
}
