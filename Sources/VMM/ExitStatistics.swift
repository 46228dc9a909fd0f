// VMM: exit accounting: per exit kind, how many and how long user space spent
// handling them. Each vCPU's live counters (`ExitCounters`) are copied into
// one; the machine merges them when the run ends.
import KVM

/// Counts and handling times per exit kind.
public struct ExitStatistics: Sendable, Equatable {
    public struct Bucket: Sendable, Equatable {
        public var count: UInt64 = 0
        /// Time from KVM_RUN returning until the exit was handled.
        public var handlingNanoseconds: UInt64 = 0
        public var maxHandlingNanoseconds: UInt64 = 0
        /// Time spent inside the KVM_RUN calls that ended with this kind
        /// (guest execution plus the kernel's part of the exit).
        public var runNanoseconds: UInt64 = 0
    }

    public private(set) var buckets: [Bucket]

    public init() { buckets = Array(repeating: Bucket(), count: ExitKind.allCases.count) }

    init(buckets: [Bucket]) { self.buckets = buckets }

    @inline(__always)
    public mutating func record(_ kind: ExitKind, runNanoseconds: UInt64, handlingNanoseconds: UInt64) {
        buckets[kind.rawValue].count &+= 1
        buckets[kind.rawValue].runNanoseconds &+= runNanoseconds
        buckets[kind.rawValue].handlingNanoseconds &+= handlingNanoseconds
        if handlingNanoseconds > buckets[kind.rawValue].maxHandlingNanoseconds {
            buckets[kind.rawValue].maxHandlingNanoseconds = handlingNanoseconds
        }
    }

    public subscript(kind: ExitKind) -> Bucket { buckets[kind.rawValue] }

    public var totalExits: UInt64 { buckets.reduce(0) { $0 &+ $1.count } }

    public mutating func merge(_ other: ExitStatistics) {
        for i in buckets.indices {
            buckets[i].count &+= other.buckets[i].count
            buckets[i].handlingNanoseconds &+= other.buckets[i].handlingNanoseconds
            buckets[i].runNanoseconds &+= other.buckets[i].runNanoseconds
            buckets[i].maxHandlingNanoseconds = max(buckets[i].maxHandlingNanoseconds, other.buckets[i].maxHandlingNanoseconds)
        }
    }

    /// The `--stats` table: kinds with at least one exit, most frequent first.
    public func table(title: String = "exits") -> String {
        let rows = ExitKind.allCases.filter { self[$0].count > 0 }.sorted { self[$0].count > self[$1].count }
        var lines = [pad("\(title)", 16) + lpad("count", 10) + lpad("handle µs", 12) + lpad("mean ns", 10) + lpad("max ns", 10) + lpad("in KVM_RUN µs", 15)]
        for kind in rows {
            let b = self[kind]
            let mean = b.count > 0 ? b.handlingNanoseconds / b.count : 0
            lines.append(pad(kind.description, 16) + lpad("\(b.count)", 10) + lpad(micro(b.handlingNanoseconds), 12)
                         + lpad("\(mean)", 10) + lpad("\(b.maxHandlingNanoseconds)", 10) + lpad(micro(b.runNanoseconds), 15))
        }
        lines.append(pad("total", 16) + lpad("\(totalExits)", 10))
        return lines.joined(separator: "\n")
    }

    private func micro(_ ns: UInt64) -> String {
        let tenths = ns / 100
        return "\(tenths / 10).\(tenths % 10)"
    }
    private func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
    private func lpad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(1, n - s.count)) + s }
}
