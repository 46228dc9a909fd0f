// MSRPolicy: anything that covers an inclusive range of MSR indices (policy
// rules, the runtime's compiled rules), and the two questions asked of a
// sorted list of them, answered once: which one covers an index, and which
// ones overlap.

/// An inclusive range of MSR indices.
protocol MSRSpan {
    var first: UInt32 { get }
    var last: UInt32 { get }
}

extension Array where Element: MSRSpan {
    /// The element covering `index` in an array sorted by `first` without
    /// overlaps, by binary search; nil when none does.
    func span(covering index: UInt32) -> Element? {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid].last < index { low = mid + 1 } else { high = mid }
        }
        return low < count && self[low].first <= index && index <= self[low].last ? self[low] : nil
    }
}

extension MSRRule: MSRSpan {}
