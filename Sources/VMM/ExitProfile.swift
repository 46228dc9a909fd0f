// VMM: exit profiling: for every exit kind, and within them every port, MSR
// (index and direction) and hypercall number, how many exits and two latency
// distributions — the time inside KVM_RUN before the exit (guest plus kernel)
// and the time user space took to handle it. HdrHistogram buckets with a fixed
// range, so recording never allocates; distinct places are capped, the rest
// are counted together as "other", so memory is bounded whatever the guest does.
import Histogram
import KVM

/// A latency distribution in nanoseconds (1 ns to 60 s; longer values count as 60 s).
public struct LatencyHistogram: Sendable {
    public static let highestTrackable: UInt64 = 60_000_000_000
    private var histogram: Histogram<UInt64>
    public private(set) var totalNanoseconds: UInt64 = 0

    /// `precise`: two significant digits (exit kinds); otherwise one (per place, ~6 %).
    public init(precise: Bool) {
        histogram = Histogram(lowestDiscernibleValue: 1, highestTrackableValue: Self.highestTrackable,
                              numberOfSignificantValueDigits: precise ? .two : .one)
    }

    @inline(__always)
    public mutating func record(_ nanoseconds: UInt64) {
        histogram.record(Swift.min(Swift.max(nanoseconds, 1), Self.highestTrackable))
        totalNanoseconds &+= nanoseconds
    }

    /// `count` values of `nanoseconds` (within range) at once, without adding to the total.
    mutating func record(_ nanoseconds: UInt64, count: UInt64) {
        histogram.record(nanoseconds, count: count)
    }

    mutating func setTotal(_ nanoseconds: UInt64) { totalNanoseconds = nanoseconds }

    public mutating func merge(_ other: LatencyHistogram) {
        histogram.add(other.histogram)
        totalNanoseconds &+= other.totalNanoseconds
    }

    public var count: UInt64 { histogram.totalCount }
    /// The value at `percentile` (0–100), to the histogram's precision; 0 when empty.
    public func percentile(_ percentile: Double) -> UInt64 { count == 0 ? 0 : histogram.valueAtPercentile(percentile) }
    public var p50: UInt64 { percentile(50) }
    public var p90: UInt64 { percentile(90) }
    public var p99: UInt64 { percentile(99) }
    public var max: UInt64 { count == 0 ? 0 : histogram.max }
    public var mean: UInt64 { count == 0 ? 0 : totalNanoseconds / count }
}

/// Count and the two latency distributions of one kind of exit or one place.
public struct ExitLatencies: Sendable {
    public var inKVMRun: LatencyHistogram
    public var handling: LatencyHistogram
    public var count: UInt64 { handling.count }

    public init(precise: Bool) {
        inKVMRun = LatencyHistogram(precise: precise)
        handling = LatencyHistogram(precise: precise)
    }

    init(inKVMRun: LatencyHistogram, handling: LatencyHistogram) {
        self.inKVMRun = inKVMRun
        self.handling = handling
    }

    @inline(__always)
    public mutating func record(runNanoseconds: UInt64, handlingNanoseconds: UInt64) {
        inKVMRun.record(runNanoseconds)
        handling.record(handlingNanoseconds)
    }

    public mutating func merge(_ other: ExitLatencies) {
        inKVMRun.merge(other.inKVMRun)
        handling.merge(other.handling)
    }
}

/// The place within an exit kind that profiling tells apart.
public enum ExitPlace: Hashable, Sendable, CustomStringConvertible {
    case port(UInt16, write: Bool)
    case msr(UInt32, write: Bool)
    case hypercall(UInt64)

    /// The place of an exit, if its kind has places.
    @inline(__always)
    public static func of(_ exit: VCPUExit) -> ExitPlace? {
        switch exit {
        case let .io(io): return .port(io.port, write: io.direction == .output)
        case let .readMSR(msr): return .msr(msr.index, write: false)
        case let .writeMSR(msr): return .msr(msr.index, write: true)
        case let .hypercall(call): return .hypercall(call.number)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case let .port(port, write): return "port 0x\(String(port, radix: 16)) \(write ? "out" : "in")"
        case let .msr(index, write): return "msr 0x\(String(index, radix: 16)) \(write ? "wr" : "rd")"
        case let .hypercall(number): return "hypercall \(number)"
        }
    }
}

/// One vCPU's exit profile. Owned by the vCPU's thread while it runs.
public struct ExitProfile: Sendable {
    /// Distinct places tracked per profile; later ones are counted as `other`.
    public static let maxPlaces = 256

    public private(set) var kinds: [ExitLatencies]
    public private(set) var places: [ExitPlace: ExitLatencies] = [:]
    /// Places beyond `maxPlaces`, together.
    public private(set) var other = ExitLatencies(precise: false)

    public init() {
        kinds = Array(repeating: ExitLatencies(precise: true), count: ExitKind.allCases.count)
        places.reserveCapacity(Self.maxPlaces)
    }

    /// Records one exit. Allocation-free once a place has been seen.
    @inline(__always)
    public mutating func record(_ kind: ExitKind, place: ExitPlace?, runNanoseconds: UInt64, handlingNanoseconds: UInt64) {
        kinds[kind.rawValue].record(runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        guard let place else { return }
        // Through the index and `values`: mutating `places[place]?` goes
        // through Dictionary's optional _modify, which allocates per call.
        if let slot = places.index(forKey: place) {
            places.values[slot].record(runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        } else if places.count < Self.maxPlaces {
            var fresh = ExitLatencies(precise: false)
            fresh.record(runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
            places[place] = fresh
        } else {
            other.record(runNanoseconds: runNanoseconds, handlingNanoseconds: handlingNanoseconds)
        }
    }

    public subscript(kind: ExitKind) -> ExitLatencies { kinds[kind.rawValue] }

    // Filling a copy of a live profile (LiveExitProfile.read).
    mutating func setKind(_ kind: Int, _ latencies: ExitLatencies) { kinds[kind] = latencies }
    mutating func setPlace(_ place: ExitPlace, _ latencies: ExitLatencies) { places[place] = latencies }
    mutating func setOther(_ latencies: ExitLatencies) { other = latencies }

    public var totalExits: UInt64 { kinds.reduce(0) { $0 &+ $1.count } }

    /// Adds another vCPU's profile (the merged one keeps the place cap too).
    public mutating func merge(_ profile: ExitProfile) {
        // Empty kinds add nothing; skipping them saves copying and scanning their buckets.
        for i in kinds.indices where profile.kinds[i].count > 0 { kinds[i].merge(profile.kinds[i]) }
        for (place, latencies) in profile.places {
            if places[place] != nil {
                places[place]?.merge(latencies)
            } else if places.count < Self.maxPlaces {
                places[place] = latencies
            } else {
                other.merge(latencies)
            }
        }
        if profile.other.count > 0 { other.merge(profile.other) }
    }

    /// Places, hottest first.
    public func hottestPlaces(limit: Int = .max) -> [(place: ExitPlace, latencies: ExitLatencies)] {
        places.map { (place: $0.key, latencies: $0.value) }
            .sorted { $0.latencies.count != $1.latencies.count ? $0.latencies.count > $1.latencies.count
                                                                 : $0.place.description < $1.place.description }
            .prefix(limit).map { $0 }
    }
}
