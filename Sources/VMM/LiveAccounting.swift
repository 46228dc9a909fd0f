// VMM: the live side of a vCPU's exit accounting, which other threads copy
// while the vCPU runs without ever making it wait. The vCPU's thread is the
// only writer: it updates its cells with plain (relaxed atomic) loads and
// stores, no lock and no read-modify-write. The per-kind counters sit behind a
// sequence lock, so a reader's copy of them is never torn; each latency
// histogram cell is one atomic word, so a reader sees every cell whole and the
// distribution as it was within the copy's few microseconds. Storage is fixed
// when a kind or place is first seen; after that recording allocates nothing.
import Glibc
import KVM
import Synchronization

/// The HdrHistogram cell layout of `LatencyHistogram` (lowest discernible
/// value 1, highest `LatencyHistogram.highestTrackable`), so that live cells
/// can be turned back into a `LatencyHistogram` exactly.
struct HistogramLayout: Sendable {
    let halfMagnitude: Int
    let leadingZeroCountBase: Int
    let subBucketMask: UInt64
    let cellCount: Int

    init(significantDigits: Int) {
        var singleUnitResolution: UInt64 = 2
        for _ in 0..<significantDigits { singleUnitResolution *= 10 }
        var magnitude = 0
        while (UInt64(1) << magnitude) < singleUnitResolution { magnitude += 1 }
        halfMagnitude = max(magnitude, 1) - 1
        leadingZeroCountBase = 64 - magnitude
        subBucketMask = (UInt64(1) << magnitude) - 1
        var smallestUntrackable = UInt64(1) << magnitude
        var buckets = 1
        while smallestUntrackable <= LatencyHistogram.highestTrackable {
            smallestUntrackable <<= 1
            buckets += 1
        }
        cellCount = (buckets + 1) << halfMagnitude
    }

    /// Two significant digits (exit kinds).
    static let precise = HistogramLayout(significantDigits: 2)
    /// One significant digit (places).
    static let coarse = HistogramLayout(significantDigits: 1)

    /// The cell of a value already clamped to 1…highestTrackable.
    @inline(__always)
    func cell(of value: UInt64) -> Int {
        let bucket = leadingZeroCountBase - (value | subBucketMask).leadingZeroBitCount
        let subBucket = Int(truncatingIfNeeded: value >> UInt64(bucket))
        return ((bucket + 1) << halfMagnitude) + subBucket - (1 << halfMagnitude)
    }

    /// The lowest value that falls in `cell`.
    func lowestValue(ofCell cell: Int) -> UInt64 {
        let half = 1 << halfMagnitude
        var bucket = (cell >> halfMagnitude) - 1
        var subBucket = (cell & (half - 1)) + half
        if bucket < 0 {
            subBucket -= half
            bucket = 0
        }
        return UInt64(subBucket) << UInt64(bucket)
    }

    @inline(__always)
    static func clamped(_ nanoseconds: UInt64) -> UInt64 {
        Swift.min(Swift.max(nanoseconds, 1), LatencyHistogram.highestTrackable)
    }
}

/// Adds to a cell that only the calling thread writes: a plain load and
/// store, no locked instruction.
@inline(__always)
private func bump(_ cell: borrowing Atomic<UInt64>, by amount: UInt64) {
    cell.store(cell.load(ordering: .relaxed) &+ amount, ordering: .relaxed)
}

/// The two latency distributions of one exit kind or place, as live cells.
/// `cells` is the layout's cell count (`HistogramLayout.cellCount`).
final class LiveLatencies<let cells: Int>: Sendable {
    private let layout: HistogramLayout
    private let inKVMRun: InlineArray<cells, Atomic<UInt64>>
    private let handling: InlineArray<cells, Atomic<UInt64>>
    private let inKVMRunTotal = Atomic<UInt64>(0)
    private let handlingTotal = Atomic<UInt64>(0)
    /// One past the highest cell either distribution used: a copy reads no further.
    private let cellsInUse = Atomic<Int>(0)
    /// The largest values recorded (clamped): HdrHistogram reports its top percentiles up to them.
    private let inKVMRunMax = Atomic<UInt64>(0)
    private let handlingMax = Atomic<UInt64>(0)

    init(layout: HistogramLayout) {
        self.layout = layout
        inKVMRun = InlineArray { _ in Atomic(0) }
        handling = InlineArray { _ in Atomic(0) }
    }

    /// Writer only (the vCPU's thread).
    @inline(__always)
    func record(runNanoseconds: UInt64, handlingNanoseconds: UInt64) {
        let run = HistogramLayout.clamped(runNanoseconds), handled = HistogramLayout.clamped(handlingNanoseconds)
        let runCell = layout.cell(of: run)
        let handlingCell = layout.cell(of: handled)
        bump(inKVMRun[runCell], by: 1)
        bump(handling[handlingCell], by: 1)
        bump(inKVMRunTotal, by: runNanoseconds)
        bump(handlingTotal, by: handlingNanoseconds)
        let used = Swift.max(runCell, handlingCell) + 1
        if used > cellsInUse.load(ordering: .relaxed) { cellsInUse.store(used, ordering: .relaxed) }
        if run > inKVMRunMax.load(ordering: .relaxed) { inKVMRunMax.store(run, ordering: .relaxed) }
        if handled > handlingMax.load(ordering: .relaxed) { handlingMax.store(handled, ordering: .relaxed) }
    }

    /// The cells as they are now (each one whole).
    func copy() -> RawLatencies {
        let used = Swift.min(cellsInUse.load(ordering: .relaxed), cells)
        var raw = RawLatencies(inKVMRunTotal: inKVMRunTotal.load(ordering: .relaxed),
                               handlingTotal: handlingTotal.load(ordering: .relaxed),
                               inKVMRunMax: inKVMRunMax.load(ordering: .relaxed),
                               handlingMax: handlingMax.load(ordering: .relaxed))
        raw.inKVMRun.reserveCapacity(used)
        raw.handling.reserveCapacity(used)
        for cell in 0..<used {
            raw.inKVMRun.append(inKVMRun[cell].load(ordering: .relaxed))
            raw.handling.append(handling[cell].load(ordering: .relaxed))
        }
        return raw
    }
}

/// A copy of one kind's or place's cells, turned into histograms once the copy is known good.
struct RawLatencies {
    var inKVMRun: [UInt64] = []
    var handling: [UInt64] = []
    var inKVMRunTotal: UInt64
    var handlingTotal: UInt64
    var inKVMRunMax: UInt64
    var handlingMax: UInt64

    func latencies(layout: HistogramLayout, precise: Bool) -> ExitLatencies {
        func histogram(_ counts: [UInt64], total: UInt64, max: UInt64) -> LatencyHistogram {
            var histogram = LatencyHistogram(precise: precise)
            let top = counts.lastIndex { $0 > 0 }
            for (cell, count) in counts.enumerated() where count > 0 {
                // One value of the top cell is the largest recorded, as in the original.
                if cell == top, layout.cell(of: max) == cell {
                    if count > 1 { histogram.record(layout.lowestValue(ofCell: cell), count: count - 1) }
                    histogram.record(max, count: 1)
                } else {
                    histogram.record(layout.lowestValue(ofCell: cell), count: count)
                }
            }
            histogram.setTotal(total)
            return histogram
        }
        return ExitLatencies(inKVMRun: histogram(inKVMRun, total: inKVMRunTotal, max: inKVMRunMax),
                             handling: histogram(handling, total: handlingTotal, max: handlingMax))
    }
}

typealias LiveKindLatencies = LiveLatencies<3840>
typealias LivePlaceLatencies = LiveLatencies<528>

/// A place and its live latencies, published once.
final class LivePlace: Sendable {
    let place: ExitPlace
    let latencies = LivePlaceLatencies(layout: .coarse)
    init(_ place: ExitPlace) { self.place = place }
}

/// Per-kind exit counters (`ExitStatistics`' fields) and the sequence lock
/// around every exit's update of the whole accounting. The writer makes the
/// sequence odd, updates the cells, makes it even; a reader copies the cells
/// between two reads of an even, unchanged sequence and otherwise tries
/// again, so every copy is one the writer left whole.
final class ExitCounters: Sendable {
    static let kinds = 16
    private static let fields = 4
    private let sequence = Atomic<UInt64>(0)
    /// count, run ns, handling ns, max handling ns, per kind.
    private let cells: InlineArray<64, Atomic<UInt64>>

    init() { cells = InlineArray { _ in Atomic(0) } }

    /// Opens an update: readers that copy meanwhile try again (writer only).
    @inline(__always)
    func beginUpdate() -> UInt64 {
        let sequenceBefore = sequence.load(ordering: .relaxed)
        sequence.store(sequenceBefore &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        return sequenceBefore
    }

    /// Closes the update `beginUpdate` opened.
    @inline(__always)
    func endUpdate(_ sequenceBefore: UInt64) {
        sequence.store(sequenceBefore &+ 2, ordering: .releasing)
    }

    /// Counts one exit; inside an update (writer only).
    @inline(__always)
    func record(_ kind: Int, runNanoseconds: UInt64, handlingNanoseconds: UInt64) {
        let base = kind * Self.fields
        bump(cells[base], by: 1)
        bump(cells[base + 1], by: runNanoseconds)
        bump(cells[base + 2], by: handlingNanoseconds)
        if handlingNanoseconds > cells[base + 3].load(ordering: .relaxed) {
            cells[base + 3].store(handlingNanoseconds, ordering: .relaxed)
        }
    }

    /// The sequence before a copy; odd while the writer is in an update.
    func sequenceBeforeCopy() -> UInt64 { sequence.load(ordering: .acquiring) }

    /// Whether a copy made since `sequenceBeforeCopy` returned `before` is whole.
    func copyIsWhole(since before: UInt64) -> Bool {
        atomicMemoryFence(ordering: .acquiring)
        return before & 1 == 0 && sequence.load(ordering: .relaxed) == before
    }

    /// A whole copy; `attempts` counts the copies it took (tests).
    func read(attempts: inout Int) -> ExitStatistics {
        var buckets = Array(repeating: ExitStatistics.Bucket(), count: Self.kinds)
        while true {
            attempts += 1
            // A writer preempted inside its update holds the sequence odd:
            // give it the core instead of spinning against it.
            if attempts % 64 == 0 { sched_yield() }
            let before = sequenceBeforeCopy()
            guard before & 1 == 0 else { continue }
            for kind in 0..<Self.kinds {
                let base = kind * Self.fields
                buckets[kind] = ExitStatistics.Bucket(count: cells[base].load(ordering: .relaxed),
                                                      handlingNanoseconds: cells[base + 2].load(ordering: .relaxed),
                                                      maxHandlingNanoseconds: cells[base + 3].load(ordering: .relaxed),
                                                      runNanoseconds: cells[base + 1].load(ordering: .relaxed))
            }
            if copyIsWhole(since: before) { return ExitStatistics(buckets: buckets) }
        }
    }
}

/// A vCPU's live exit profile: per-kind and per-place latency cells.
final class LiveExitProfile: Sendable {
    private let kinds: InlineArray<16, AtomicLazyReference<LiveKindLatencies>>
    private let places: InlineArray<256, AtomicLazyReference<LivePlace>>
    /// Places published so far (a reader reads this many slots).
    private let placeCount = Atomic<Int>(0)
    private let other = LivePlaceLatencies(layout: .coarse)

    init() {
        kinds = InlineArray { _ in AtomicLazyReference() }
        places = InlineArray { _ in AtomicLazyReference() }
    }

    /// The kind's cells, created on its first exit (writer only).
    @inline(__always)
    func kind(_ kind: Int) -> LiveKindLatencies {
        if let known = kinds[kind].load() { return known }
        return kinds[kind].storeIfNil(LiveKindLatencies(layout: .precise))
    }

    /// Publishes a new place in the next slot; nil when every slot is taken (writer only).
    func publish(_ place: ExitPlace) -> LivePlace? {
        let slot = placeCount.load(ordering: .relaxed)
        guard slot < ExitProfile.maxPlaces else { return nil }
        let live = places[slot].storeIfNil(LivePlace(place))
        placeCount.store(slot + 1, ordering: .releasing)
        return live
    }

    /// Exits beyond the place cap (writer only).
    var overflow: LivePlaceLatencies { other }

    /// Copies the profile between two sequence reads of `counters`, so that
    /// kinds and places agree; the copy is larger than the counters', so
    /// after `maxAttempts` copies that each met an update the last one is
    /// taken as it is (kinds and places may then differ by the exits
    /// recorded during it). The vCPU never waits either way.
    func read(consistentWith counters: ExitCounters, maxAttempts: Int = 64) -> (profile: ExitProfile, whole: Bool) {
        var attempt = 0
        while true {
            attempt += 1
            let before = counters.sequenceBeforeCopy()
            var kindCopies: [(Int, RawLatencies)] = []
            for kind in 0..<ExitCounters.kinds {
                if let live = kinds[kind].load() { kindCopies.append((kind, live.copy())) }
            }
            var placeCopies: [(ExitPlace, RawLatencies)] = []
            for slot in 0..<placeCount.load(ordering: .acquiring) {
                // A place is published just before its first exit is counted: one with none yet is left out.
                if let live = places[slot].load() {
                    let raw = live.latencies.copy()
                    if raw.handling.contains(where: { $0 > 0 }) { placeCopies.append((live.place, raw)) }
                }
            }
            let otherCopy = other.copy()
            let whole = counters.copyIsWhole(since: before)
            guard whole || attempt >= maxAttempts else { continue }
            var profile = ExitProfile()
            for (kind, raw) in kindCopies { profile.setKind(kind, raw.latencies(layout: .precise, precise: true)) }
            for (place, raw) in placeCopies { profile.setPlace(place, raw.latencies(layout: .coarse, precise: false)) }
            profile.setOther(otherCopy.latencies(layout: .coarse, precise: false))
            return (profile, whole)
        }
    }
}

/// What only the recording thread keeps: where each place's cells are, and
/// the last place recorded (a guest looping on one MSR or port costs no hashing).
struct PlaceDirectory {
    private var slots: [ExitPlace: LivePlace] = [:]
    private var last: LivePlace?

    init() { slots.reserveCapacity(ExitProfile.maxPlaces) }

    /// The place's cells; nil past the cap.
    @inline(__always)
    mutating func cells(for place: ExitPlace, in profile: LiveExitProfile) -> LivePlace? {
        if let last, last.place == place { return last }
        if let known = slots[place] {
            last = known
            return known
        }
        guard let fresh = profile.publish(place) else { return nil }
        slots[place] = fresh
        last = fresh
        return fresh
    }
}
