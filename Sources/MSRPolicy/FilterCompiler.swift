// FilterCompiler: policy → what KVM needs to route MSR accesses: the
// KVM_X86_SET_MSR_FILTER contents (default allow/deny, ≤ 16 bitmap ranges of
// ≤ 12,288 MSRs each) and the KVM_CAP_X86_USER_SPACE_MSR exit-reason mask.
// Pure values; the KVM layer copies them into the C structures.
import KVMABI

/// The filter and exit mask for one policy.
public struct CompiledFilter: Sendable, Equatable {
    /// What KVM_X86_SET_MSR_FILTER installs.
    public var filter: MSRFilter
    /// `args[0]` of KVM_CAP_X86_USER_SPACE_MSR: which refusals exit to user space.
    public var exitReasons: MSRExitReasons

    public init(filter: MSRFilter, exitReasons: MSRExitReasons) {
        self.filter = filter; self.exitReasons = exitReasons
    }

    public init(defaultAllow: Bool, ranges: [MSRFilterRange], exitReasons: MSRExitReasons) {
        self.init(filter: MSRFilter(default: defaultAllow ? .allow : .deny, ranges: ranges), exitReasons: exitReasons)
    }

    public var defaultAllow: Bool { filter.defaultAllow }
    public var ranges: [MSRFilterRange] { filter.ranges }

    /// Whether KVM lets a guest access to `index` through to its own MSR code
    /// (a policy's ranges cover reads and writes alike).
    public func allows(_ index: UInt32) -> Bool { filter.allows(index, write: false) }
}

/// Why a policy cannot become a filter.
public enum FilterCompileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The MSRs that need bits span more windows of 12,288 than KVM's 16 ranges.
    /// `alternative` is how many ranges the policy would need with the other
    /// `applies_to`, which moves the bits to the other kind of rule.
    case tooManyRanges(needed: Int, firstUnfitted: UInt32, scope: DefaultScope, alternative: Int?)
    /// A user-space rule covers x2APIC MSRs, which KVM never filters.
    case x2APICRule(MSRRule)
    /// Two rules name the same MSR.
    case overlappingRules(MSRRule, MSRRule)
    /// A rule whose first index is above its last.
    case invertedRange(MSRRule)
    /// `kernel` default with applies_to `all` (deny everything, then let KVM decide).
    case kernelDefaultForAll

    public var description: String {
        switch self {
        case let .tooManyRanges(needed, firstUnfitted, scope, alternative):
            let bits = scope == .unknown
                ? "the deny bits of the user-space rules (applies_to = \"unknown\" lets KVM have every other MSR)"
                : "the allow bits of the \"kernel\" rules (applies_to = \"all\" denies every other MSR)"
            var text = "the policy needs \(needed) MSR filter ranges but KVM takes at most \(MSRFilter.maxRanges) "
                + "(each spans at most \(MSRFilter.maxMSRsPerRange) MSRs); the ranges carry \(bits). "
                + "MSR \(MSRCatalogue.describe(firstUnfitted)) is the first that does not fit. "
                + "Merge nearby rules into range rules, or drop rules far from the others"
            let other = scope == .unknown ? "all" : "unknown"
            if let alternative {
                text += alternative <= MSRFilter.maxRanges
                    ? "; with applies_to = \"\(other)\" (which changes what unnamed MSRs do) it would need \(alternative)"
                    : "; applies_to = \"\(other)\" would not help (it would need \(alternative))"
            }
            return text
        case .x2APICRule(let rule):
            return "\(where_(rule))rule for \(PolicyChecks.describe(rule.first, rule.last)) takes x2APIC MSRs "
                + "0x00000800–0x000008ff to user space, but KVM never filters them"
        case let .overlappingRules(a, b):
            return "\(where_(b))rule for \(PolicyChecks.describe(b.first, b.last)) overlaps the rule for "
                + "\(PolicyChecks.describe(a.first, a.last))\(a.location.map { " at \($0)" } ?? "")"
        case .invertedRange(let rule):
            return "\(where_(rule))rule range is inverted: \(MSRCatalogue.hex(rule.first)) > \(MSRCatalogue.hex(rule.last))"
        case .kernelDefaultForAll:
            return "default action \"kernel\" cannot apply to all MSRs: the filter would deny them and then hand them back to KVM"
        }
    }

    private func where_(_ rule: MSRRule) -> String { rule.location.map { "\($0): " } ?? "" }
}

/// Compiles policies into filters.
public enum FilterCompiler {

    /// The filter for `policy`.
    ///
    /// - `applies_to = "unknown"`: default allow; every MSR of a user-space
    ///   rule is a deny bit; exits: FILTER, plus UNKNOWN | INVAL when the
    ///   default is `gp`/`ignore` or logged (so Deflect sees what KVM refuses).
    /// - `applies_to = "all"`: default deny; `kernel` rules are allow bits;
    ///   exits: FILTER | UNKNOWN | INVAL.
    ///
    /// Only the MSRs whose answer differs from the filter default need bits.
    /// They are covered by a greedy sweep over the sorted indices: each range
    /// starts at the first uncovered MSR that needs a bit and spans 12,288 MSRs,
    /// then is trimmed to the last MSR in it that needs one. Starting every
    /// window at the leftmost uncovered point is optimal for covering points
    /// with the fewest fixed-width windows (exchange argument), so when this
    /// needs more than 16 ranges, no packing fits. Bits inside a range that no
    /// rule names take the default's answer (which is the filter default).
    public static func compile(_ policy: MSRPolicy) throws(FilterCompileError) -> CompiledFilter {
        if policy.defaultScope == .all && policy.defaultAction == .kernel { throw .kernelDefaultForAll }
        let rules = policy.rules
        for rule in rules where rule.first > rule.last { throw .invertedRange(rule) }
        if let overlap = PolicyChecks.overlaps(rules).first { throw .overlappingRules(overlap.earlier, overlap.later) }
        let x2 = MSRCatalogue.x2APICRange
        for rule in rules where rule.action.isUserSpace && rule.first <= x2.upperBound && rule.last >= x2.lowerBound {
            throw .x2APICRule(rule)
        }

        let defaultAllow = policy.defaultScope == .unknown
        let windows = packWindows(neededIntervals(rules, defaultAllow: defaultAllow))
        if windows.total > MSRFilter.maxRanges {
            // The other applies_to moves the bits to the other kind of rule
            // (default deny always needs at least one range).
            let other = max(packWindows(neededIntervals(rules, defaultAllow: !defaultAllow)).total, defaultAllow ? 1 : 0)
            throw .tooManyRanges(needed: windows.total, firstUnfitted: windows.starts[MSRFilter.maxRanges].base,
                                 scope: policy.defaultScope, alternative: other)
        }

        var ranges = windows.starts.map { window in
            bitmapRange(base: window.base, last: window.last, policy: policy)
        }
        // KVM rejects a default-deny filter without ranges (EINVAL); a
        // one-MSR range carrying the policy's own answer changes nothing.
        if !defaultAllow && ranges.isEmpty { ranges = [bitmapRange(base: 0, last: 0, policy: policy)] }

        let exits: MSRExitReasons
        if defaultAllow {
            let wantsRefusals = policy.defaultAction != .kernel || policy.logDefault
            exits = wantsRefusals ? .all : .filter
        } else {
            exits = .all
        }
        return CompiledFilter(defaultAllow: defaultAllow, ranges: ranges, exitReasons: exits)
    }

    // MARK: - Implementation

    /// Sorted, merged inclusive intervals of MSRs whose answer differs from the
    /// filter default: user-space rules under default allow, kernel rules under
    /// default deny. x2APIC MSRs never need bits (KVM ignores the filter there).
    static func neededIntervals(_ rules: [MSRRule], defaultAllow: Bool) -> [(first: UInt32, last: UInt32)] {
        let x2 = MSRCatalogue.x2APICRange
        var result: [(first: UInt32, last: UInt32)] = []
        func add(_ first: UInt32, _ last: UInt32) {
            guard first <= last else { return }
            if let previous = result.last, UInt64(first) <= UInt64(previous.last) + 1 {
                result[result.count - 1].last = max(previous.last, last)
            } else {
                result.append((first, last))
            }
        }
        for rule in rules.sorted(by: { $0.first < $1.first }) where rule.action.isUserSpace == defaultAllow && rule.first <= rule.last {
            if rule.last < x2.lowerBound || rule.first > x2.upperBound {
                add(rule.first, rule.last)
            } else {
                if rule.first < x2.lowerBound { add(rule.first, x2.lowerBound - 1) }
                if rule.last > x2.upperBound { add(x2.upperBound + 1, rule.last) }
            }
        }
        return result
    }

    /// The greedy windows: the first `MSRFilter.maxRanges + 1` (trimmed), and how many in all.
    /// Runs of full windows inside one long interval are counted arithmetically,
    /// so a rule over the whole 32-bit space costs no more than a short one.
    static func packWindows(_ intervals: [(first: UInt32, last: UInt32)]) -> (starts: [(base: UInt32, last: UInt32)], total: Int) {
        let width = UInt64(MSRFilter.maxMSRsPerRange)
        var starts: [(base: UInt32, last: UInt32)] = []
        var total = 0
        var cursor: UInt64 = 0  // everything below is covered
        var i = 0
        func record(_ base: UInt64, _ last: UInt64) {
            total += 1
            // Both fit in UInt32: they lie within a rule's [first, last].
            if starts.count <= MSRFilter.maxRanges, let b = UInt32(exactly: base), let l = UInt32(exactly: last) { starts.append((b, l)) }
        }
        while i < intervals.count {
            let base = max(cursor, UInt64(intervals[i].first))
            let intervalLast = UInt64(intervals[i].last)
            if intervalLast - base + 1 > width {
                // Whole windows, each entirely needed.
                let full = (intervalLast - base + 1) / width
                let recordable = min(full, UInt64(MSRFilter.maxRanges + 1 - min(starts.count, MSRFilter.maxRanges + 1)))
                for k in 0..<recordable { record(base + k * width, base + (k + 1) * width - 1) }
                total += Int(full - recordable)
                cursor = base + full * width
                if cursor > intervalLast { i += 1 }
                continue
            }
            let end = base + width - 1
            var lastNeeded = intervalLast
            i += 1
            while i < intervals.count, UInt64(intervals[i].first) <= end {
                if UInt64(intervals[i].last) <= end {
                    lastNeeded = UInt64(intervals[i].last); i += 1
                } else {
                    lastNeeded = end; cursor = end + 1; break
                }
            }
            record(base, lastNeeded)
        }
        return (starts, total)
    }

    /// A range over [base, last] whose bits are the policy's answers.
    static func bitmapRange(base: UInt32, last: UInt32, policy: MSRPolicy) -> MSRFilterRange {
        let count = last - base + 1
        let bytes = MSRFilterRange.bitmapByteCount(for: count)
        var bitmap = [UInt8](repeating: 0, count: bytes)
        for n in 0..<Int(count) where allowedByPolicy(base + UInt32(n), policy) {
            bitmap[n / 8] |= 1 << UInt8(n % 8)
        }
        return MSRFilterRange(base: base, count: count, bitmap: bitmap)
    }

    /// The policy's own answer: does KVM handle this MSR?
    static func allowedByPolicy(_ index: UInt32, _ policy: MSRPolicy) -> Bool {
        if MSRCatalogue.x2APICRange.contains(index) { return true }
        if let rule = policy.rule(for: index) { return !rule.action.isUserSpace }
        return policy.defaultScope == .unknown
    }
}
