// MSRPolicy: per-MSR accounting for `--stats` and `deflect trace` — how often
// each MSR was read and written, its first and last value, the outcomes and
// the last RIP — with a bounded number of tracked MSRs, merged across vCPUs,
// and rendered as an aligned text table or one JSON document.
import KVMABI

/// Accesses of one vCPU (or, after `merge`, of a whole VM). Each vCPU thread
/// owns one, so there are no locks; merge them when the run ends.
///
/// Memory is bounded: at most `maxTrackedMSRs` MSRs get an entry; accesses
/// to further MSRs only add to the `other` counters. `record` allocates only
/// the first time it sees an MSR (its entry) or a new outcome word for that
/// MSR; after that it updates in place.
public struct MSRStatistics: Sendable, Equatable {
    public static let maxTrackedMSRs = 8192

    public struct Entry: Sendable, Equatable {
        public var index: UInt32
        public var reads: UInt64
        public var writes: UInt64
        /// The value of the first access (read result or value written).
        public var firstValue: UInt64
        /// The value of the last access.
        public var lastValue: UInt64
        /// The value the first read returned (meaningful when `reads > 0`):
        /// what a reproducing policy should start an emulated MSR at.
        public var firstReadValue: UInt64
        /// Accesses per outcome word (e.g. "emulated", "default-gp").
        public var outcomes: [String: UInt64]
        public var lastRIP: UInt64?

        public init(index: UInt32, reads: UInt64 = 0, writes: UInt64 = 0, firstValue: UInt64 = 0, lastValue: UInt64 = 0,
                    firstReadValue: UInt64 = 0, outcomes: [String: UInt64] = [:], lastRIP: UInt64? = nil) {
            self.index = index; self.reads = reads; self.writes = writes; self.firstValue = firstValue
            self.lastValue = lastValue; self.firstReadValue = firstReadValue; self.outcomes = outcomes
            self.lastRIP = lastRIP
        }

        /// Outcomes, most frequent first (ties by name), e.g. "emulated×3 reserved-gp×1".
        public var outcomeSummary: String {
            outcomes.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\($0.key)×\($0.value)" }.joined(separator: " ")
        }
    }

    /// Accesses to MSRs beyond the tracking limit, in one bucket.
    public struct Other: Sendable, Equatable {
        public var reads: UInt64 = 0
        public var writes: UInt64 = 0
        public var outcomes: [String: UInt64] = [:]
        public init() {}
        public var isEmpty: Bool { reads == 0 && writes == 0 }
    }

    /// Slot in `storage` per tracked MSR.
    private var slots: [UInt32: Int] = [:]
    private var storage: [Entry] = []
    /// The last MSR recorded and its outcome's position: a guest loop on one
    /// MSR then costs no hashing at all. Cleared whenever a position could move.
    private var lastSlot = -1
    private var lastIndex: UInt32 = 0
    private var lastOutcome = ""
    private var lastOutcomePosition: [String: UInt64].Index?
    public private(set) var other = Other()

    public init() {}

    /// A copy that shares no storage with `self`: taken by a reader under
    /// the recording thread's lock, it leaves that thread's next record to
    /// update in place instead of copying what the reader still holds.
    public func independentCopy() -> MSRStatistics {
        func own(_ counts: [String: UInt64]) -> [String: UInt64] {
            var fresh: [String: UInt64] = [:]
            fresh.reserveCapacity(counts.count)
            for (outcome, count) in counts { fresh[outcome] = count }
            return fresh
        }
        var copy = MSRStatistics()
        copy.storage.reserveCapacity(storage.count)
        for var entry in storage {
            entry.outcomes = own(entry.outcomes)
            copy.storage.append(entry)
        }
        copy.slots.reserveCapacity(slots.count)
        for (index, slot) in slots { copy.slots[index] = slot }
        copy.other = other
        copy.other.outcomes = own(other.outcomes)
        return copy
    }

    /// Entries sorted by MSR index.
    public var entries: [Entry] { storage.sorted { $0.index < $1.index } }

    /// The entry of one MSR, if tracked.
    public func entry(for index: UInt32) -> Entry? { slots[index].map { storage[$0] } }

    public mutating func record(index: UInt32, access: MSRAccess, value: UInt64, outcome: String, rip: UInt64?) {
        let isWrite: Bool
        if case .write = access { isWrite = true } else { isWrite = false }
        let cached = lastSlot >= 0 && lastIndex == index
        if let slot = cached ? lastSlot : slots[index] {
            // In place: `storage` and the entry's dictionary stay uniquely
            // referenced, so nothing is copied.
            if !cached { lastSlot = slot; lastIndex = index; lastOutcomePosition = nil }
            if isWrite {
                storage[slot].writes &+= 1
            } else {
                if storage[slot].reads == 0 { storage[slot].firstReadValue = value }
                storage[slot].reads &+= 1
            }
            storage[slot].lastValue = value
            if let known = (lastOutcomePosition != nil && lastOutcome == outcome) ? lastOutcomePosition
                                                                                 : storage[slot].outcomes.index(forKey: outcome) {
                storage[slot].outcomes.values[known] &+= 1
                lastOutcome = outcome
                lastOutcomePosition = known
            } else {
                storage[slot].outcomes[outcome] = 1   // an insert may move every position
                lastOutcomePosition = nil
            }
            if let rip { storage[slot].lastRIP = rip }
        } else if storage.count < Self.maxTrackedMSRs {
            slots[index] = storage.count
            storage.append(Entry(index: index, reads: isWrite ? 0 : 1, writes: isWrite ? 1 : 0, firstValue: value,
                                 lastValue: value, firstReadValue: isWrite ? 0 : value, outcomes: [outcome: 1],
                                 lastRIP: rip))
        } else {
            if isWrite { other.writes &+= 1 } else { other.reads &+= 1 }
            other.outcomes[outcome, default: 0] &+= 1
        }
    }

    /// Adds `other`'s counts. `self` is taken as the earlier record: its first
    /// values stay, `other`'s last values and RIPs win (vCPUs run at the same
    /// time, so across vCPUs "first" and "last" are approximate anyway).
    public mutating func merge(_ incoming: MSRStatistics) {
        lastOutcomePosition = nil   // merging may insert outcome keys
        for entry in incoming.storage {
            if let slot = slots[entry.index] {
                if storage[slot].reads == 0, entry.reads > 0 { storage[slot].firstReadValue = entry.firstReadValue }
                storage[slot].reads &+= entry.reads
                storage[slot].writes &+= entry.writes
                storage[slot].lastValue = entry.lastValue
                if let rip = entry.lastRIP { storage[slot].lastRIP = rip }
                for (outcome, count) in entry.outcomes { storage[slot].outcomes[outcome, default: 0] &+= count }
            } else if storage.count < Self.maxTrackedMSRs {
                slots[entry.index] = storage.count
                storage.append(entry)
            } else {
                other.reads &+= entry.reads
                other.writes &+= entry.writes
                for (outcome, count) in entry.outcomes { other.outcomes[outcome, default: 0] &+= count }
            }
        }
        other.reads &+= incoming.other.reads
        other.writes &+= incoming.other.writes
        for (outcome, count) in incoming.other.outcomes { other.outcomes[outcome, default: 0] &+= count }
    }

    public static func == (a: MSRStatistics, b: MSRStatistics) -> Bool {
        a.entries == b.entries && a.other == b.other
    }

    // MARK: - Rendering

    /// An aligned text table: MSR, name, reads, writes, first, last, outcome;
    /// a final "other" row when MSRs went untracked. With `limit`, only the
    /// `limit` most-accessed MSRs are listed (in index order) and one line
    /// says how many were left out.
    public func table(name: (UInt32) -> String?, limit: Int? = nil) -> String {
        let header = ["MSR", "NAME", "READS", "WRITES", "FIRST", "LAST", "OUTCOME"]
        var shown = entries
        var omitted = 0
        if let limit, shown.count > limit {
            omitted = shown.count - limit
            shown = Array(shown.sorted { ($0.reads + $0.writes, $1.index) > ($1.reads + $1.writes, $0.index) }
                .prefix(max(0, limit))).sorted { $0.index < $1.index }
        }
        var rows: [[String]] = shown.map { e in
            [hex(e.index), name(e.index) ?? "-", String(e.reads), String(e.writes),
             hex(e.firstValue), hex(e.lastValue), e.outcomeSummary]
        }
        if omitted > 0 {
            rows.append(["…", "\(omitted) less-accessed MSRs not shown", "", "", "", "", ""])
        }
        if !other.isEmpty {
            var summary = Entry(index: 0)
            summary.outcomes = other.outcomes
            rows.append(["other", "(untracked MSRs)", String(other.reads), String(other.writes), "-", "-",
                         summary.outcomeSummary])
        }
        let all = [header] + rows
        var widths = Array(repeating: 0, count: header.count)
        for row in all { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        // Counts read best right-aligned; everything else left-aligned.
        let rightAligned: Set<Int> = [2, 3]
        var out = ""
        for row in all {
            var line = ""
            for (i, cell) in row.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                if i > 0 { line += "  " }
                if rightAligned.contains(i) { line += pad + cell }
                else if i == row.count - 1 { line += cell }   // no trailing spaces
                else { line += cell + pad }
            }
            out += line + "\n"
        }
        return out
    }

    /// One JSON document:
    /// `{"msrs":[{"msr":"0x10","index":16,"name":…|null,"reads":…,"writes":…,
    /// "first":"0x…","last":"0x…","firstRead":"0x…"|null,"lastRIP":"0x…"|null,
    /// "outcomes":{…}}…],
    /// "other":{"reads":…,"writes":…,"outcomes":{…}}}`. Values are hex strings
    /// because JSON numbers lose precision above 2^53.
    public func json(name: (UInt32) -> String?) -> String {
        var out = #"{"msrs":["#
        for (n, e) in entries.enumerated() {
            if n > 0 { out += "," }
            out += #"{"msr":"\#(hex(e.index))","index":\#(e.index),"name":"#
            out += name(e.index).map(Self.quote) ?? "null"
            out += #","reads":\#(e.reads),"writes":\#(e.writes),"first":"\#(hex(e.firstValue))","#
            out += #""last":"\#(hex(e.lastValue))","firstRead":"#
            out += e.reads > 0 ? "\"\(hex(e.firstReadValue))\"" : "null"
            out += #","lastRIP":"#
            out += e.lastRIP.map { "\"\(hex($0))\"" } ?? "null"
            out += #","outcomes":"# + Self.object(e.outcomes) + "}"
        }
        out += #"],"other":{"reads":\#(other.reads),"writes":\#(other.writes),"outcomes":"#
        out += Self.object(other.outcomes) + "}}"
        return out
    }

    private static func object(_ counts: [String: UInt64]) -> String {
        "{" + counts.sorted { $0.key < $1.key }.map { quote($0.key) + ":" + String($0.value) }
            .joined(separator: ",") + "}"
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func quote(_ s: String) -> String { QuotedString.quoted(s) }
}

