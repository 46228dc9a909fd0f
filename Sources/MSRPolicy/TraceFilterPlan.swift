// TraceFilterPlan: the MSR filter of `deflect trace`. Every filterable MSR
// exits to user space until the guest's first access in each direction; from
// then on that MSR and direction pass through the filter, so KVM executes the
// guest's own access with the checks it applies to guests (a host-initiated
// KVM_GET/SET_MSRS would skip them). Pure value; the VMM installs its filter.
import KVMABI

/// Which MSRs (per direction) the trace has seen and now leaves to KVM.
public struct TraceFilterPlan: Sendable, Equatable {
    /// FILTER for first accesses; UNKNOWN and INVAL so that every access KVM
    /// refuses the guest still reaches the trace (and is answered with #GP,
    /// exactly what KVM would have done).
    public static let exitReasons = MSRExitReasons.all

    public private(set) var allowedReads: Set<UInt32> = []
    public private(set) var allowedWrites: Set<UInt32> = []
    /// The allowed MSRs no longer fit in 16 ranges: the filter allows
    /// everything, and only the accesses KVM refuses are still seen.
    public private(set) var saturated = false

    public init() {}

    /// Whether the filter already lets this MSR and direction through.
    public func allows(_ index: UInt32, write: Bool) -> Bool {
        saturated || (write ? allowedWrites : allowedReads).contains(index)
    }

    /// Lets `index` through for one direction; returns the filter to install.
    public mutating func allow(_ index: UInt32, write: Bool) -> CompiledFilter {
        if write { allowedWrites.insert(index) } else { allowedReads.insert(index) }
        if !saturated, Self.ranges(reads: allowedReads, writes: allowedWrites) == nil { saturated = true }
        return filter
    }

    /// The filter for the current state.
    public var filter: CompiledFilter {
        guard !saturated, let ranges = Self.ranges(reads: allowedReads, writes: allowedWrites) else {
            return CompiledFilter(defaultAllow: true, ranges: [], exitReasons: Self.exitReasons)
        }
        // KVM rejects a default-deny filter without ranges; an all-deny range is neutral.
        let neutral = MSRFilterRange(base: 0, count: 1, bitmap: [UInt8](repeating: 0, count: 8))
        return CompiledFilter(defaultAllow: false, ranges: ranges.isEmpty ? [neutral] : ranges,
                              exitReasons: Self.exitReasons)
    }

    /// Allow-bit ranges for reads (READ flag) and writes (WRITE flag), packed
    /// greedily per direction; nil when they need more than 16 ranges.
    static func ranges(reads: Set<UInt32>, writes: Set<UInt32>) -> [MSRFilterRange]? {
        var result: [MSRFilterRange] = []
        for (indices, flag) in [(reads, MSRFilterRange.read), (writes, MSRFilterRange.write)] {
            let sorted = indices.sorted()
            let windows = FilterCompiler.packWindows(sorted.map { (first: $0, last: $0) })
            guard result.count + windows.total <= MSRFilter.maxRanges else { return nil }
            for window in windows.starts {
                let count = window.last - window.base + 1
                var bitmap = [UInt8](repeating: 0, count: MSRFilterRange.bitmapByteCount(for: count))
                for index in sorted where index >= window.base && index <= window.last {
                    let n = Int(index - window.base)
                    bitmap[n / 8] |= 1 << UInt8(n % 8)
                }
                result.append(MSRFilterRange(flags: flag, base: window.base, count: count, bitmap: bitmap))
            }
        }
        return result
    }
}
