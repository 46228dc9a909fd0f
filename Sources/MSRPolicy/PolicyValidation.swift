// PolicyValidation: the errors a policy can have (located, printed like a
// compiler's) and the semantic checks shared by the TOML parser and by
// policies built in Swift: per-rule checks (x2APIC, reserved bits, provider,
// log on kernel rules), overlaps between rules, and the default's consistency.
import KVMABI

/// One problem in a policy, at a place in its file.
public struct PolicyError: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String

    public init(location: SourceLocation, message: String) {
        self.location = location; self.message = message
    }

    /// `file:line:column: error: message`; line 0 means "no position" (a rule
    /// built in Swift), printed as `file: error: message`.
    public var description: String {
        if location.line <= 0 { return "\(location.file): error: \(message)" }
        return "\(location): error: \(message)"
    }
}

/// Every problem found in a policy (never empty when thrown), in file order.
public struct PolicyErrors: Error, Sendable, Hashable, CustomStringConvertible {
    public var errors: [PolicyError]

    public init(_ errors: [PolicyError]) { self.errors = errors }

    /// One error per line.
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

extension MSRPolicy {
    /// The problems of a policy built in Swift (or merged from a profile):
    /// the same semantic checks the parser applies, located at each rule's
    /// `location`, or at `file` with no line for rules that have none.
    public func validationErrors(file: String = "<policy>", knownProviders: Set<String>? = nil) -> [PolicyError] {
        var errors: [PolicyError] = []
        func at(_ rule: MSRRule) -> SourceLocation {
            rule.location ?? SourceLocation(file: file, line: 0, column: 0)
        }
        func prefix(_ rule: MSRRule) -> String {
            rule.location == nil ? "rule for \(PolicyChecks.describe(rule.first, rule.last)): " : ""
        }
        if let message = PolicyChecks.defaultProblem(action: defaultAction, scope: defaultScope) {
            errors.append(PolicyError(location: SourceLocation(file: file, line: 0, column: 0), message: message))
        }
        for rule in rules {
            for problem in PolicyChecks.ruleProblems(rule, knownProviders: knownProviders) {
                errors.append(PolicyError(location: at(rule), message: prefix(rule) + problem.message))
            }
        }
        for overlap in PolicyChecks.overlaps(rules) {
            errors.append(PolicyError(location: at(overlap.later),
                                      message: prefix(overlap.later) + PolicyChecks.overlapMessage(overlap, file: file)))
        }
        return errors
    }

    /// `self` when `validationErrors` finds nothing; otherwise all of them.
    public func validated(file: String = "<policy>", knownProviders: Set<String>? = nil) throws(PolicyErrors) -> MSRPolicy {
        let errors = validationErrors(file: file, knownProviders: knownProviders)
        if !errors.isEmpty { throw PolicyErrors(errors) }
        return self
    }
}

/// The semantic checks, independent of where the policy came from.
enum PolicyChecks {
    /// Which part of a rule a problem is about (the parser points at that key).
    enum Field { case target, value, provider, log }

    struct Problem { var field: Field; var message: String }

    struct Overlap { var earlier: MSRRule; var later: MSRRule; var first: UInt32; var last: UInt32 }

    /// "0x000000ce (MSR_PLATFORM_INFO)" or "0x00000010–0x00000020".
    static func describe(_ first: UInt32, _ last: UInt32) -> String {
        if first == last {
            if let name = MSRCatalogue.name(first) { return "\(MSRCatalogue.hex(first)) (\(name))" }
            return MSRCatalogue.hex(first)
        }
        return "\(MSRCatalogue.hex(first))–\(MSRCatalogue.hex(last))"
    }

    /// `kernel` for every MSR no rule names contradicts a filter that denies them all.
    static func defaultProblem(action: DefaultAction, scope: DefaultScope) -> String? {
        guard action == .kernel, scope == .all else { return nil }
        return "default action \"kernel\" with applies_to = \"all\" is a contradiction: applies_to = \"all\" "
            + "takes every unnamed MSR away from KVM, action \"kernel\" gives it back; use applies_to = \"unknown\" "
            + "or a user-space default (\"gp\", \"ignore\")"
    }

    static func ruleProblems(_ rule: MSRRule, knownProviders: Set<String>?) -> [Problem] {
        var problems: [Problem] = []
        if rule.first > rule.last {
            problems.append(Problem(field: .target, message:
                "inverted range: first \(MSRCatalogue.hex(rule.first)) is above last \(MSRCatalogue.hex(rule.last))"))
        }
        // KVM's filter lookup returns "allowed" for 0x800–0x8ff before it looks
        // at any range, so a user-space action there could never take effect.
        let x2 = MSRCatalogue.x2APICRange
        if rule.action.isUserSpace, rule.first <= x2.upperBound, rule.last >= x2.lowerBound {
            problems.append(Problem(field: .target, message:
                "MSRs \(describe(max(rule.first, x2.lowerBound), min(rule.last, x2.upperBound))) are x2APIC registers, "
                + "which KVM never filters (the in-kernel APIC always handles them), so action \"\(rule.action.keyword)\" "
                + "cannot apply there; leave 0x00000800–0x000008ff out of the rule (split the range around it)"))
        }
        switch rule.action {
        case .emulate(let emulation):
            let clash = emulation.initialValue & emulation.reservedMask
            if clash != 0 {
                problems.append(Problem(field: .value, message:
                    "initial value \(PolicyNumbers.hex64(emulation.initialValue)) sets reserved bits "
                    + "\(PolicyNumbers.hex64(clash)) (reserved = \(PolicyNumbers.hex64(emulation.reservedMask))): "
                    + "the MSR would start in a state a guest write could never produce"))
            }
        case .computed(let provider):
            if provider.isEmpty {
                problems.append(Problem(field: .provider, message: "action \"computed\" needs a provider name"))
            } else if let known = knownProviders, !known.contains(provider) {
                problems.append(Problem(field: .provider, message: unknownName("value provider", provider, known)))
            }
        case .kernel:
            // KVM answers these accesses itself; user space never sees them to log.
            if rule.log {
                problems.append(Problem(field: .log, message:
                    "log = true has no effect on a \"kernel\" rule: KVM handles those accesses without exiting to user space"))
            }
        case .ignore, .deny, .host:
            break
        }
        return problems
    }

    /// Overlapping pairs, each reported once against a rule it overlaps
    /// (sweep over rules sorted by first index, keeping the one reaching furthest).
    static func overlaps(_ rules: [MSRRule]) -> [Overlap] {
        let sorted = rules.enumerated().sorted {
            ($0.element.first, $0.offset) < ($1.element.first, $1.offset)
        }.map(\.element)
        var result: [Overlap] = []
        var reach: MSRRule?
        for rule in sorted where rule.first <= rule.last {
            if let widest = reach, rule.first <= widest.last {
                let (earlier, later) = isBefore(widest, rule) ? (widest, rule) : (rule, widest)
                result.append(Overlap(earlier: earlier, later: later, first: rule.first, last: min(rule.last, widest.last)))
            }
            if let widest = reach, widest.last >= rule.last { continue }
            reach = rule
        }
        return result
    }

    static func overlapMessage(_ overlap: Overlap, file: String) -> String {
        let other = overlap.earlier.location.map { "the rule at \($0)" }
            ?? "the rule for \(describe(overlap.earlier.first, overlap.earlier.last))"
        return "rule overlaps \(other): both cover \(describe(overlap.first, overlap.last)); "
            + "each MSR may be named by one rule only"
    }

    /// "unknown value provider "x"; did you mean "y"? (known: a, b)".
    static func unknownName(_ what: String, _ name: String, _ known: Set<String>) -> String {
        var message = "unknown \(what) \"\(name)\""
        if let close = closest(name, in: known) { message += "; did you mean \"\(close)\"?" }
        if !known.isEmpty { message += " (known: \(known.sorted().joined(separator: ", ")))" }
        return message
    }

    /// The closest candidate by edit distance, when reasonably close.
    static func closest(_ name: String, in candidates: some Sequence<String>) -> String? {
        var best: (distance: Int, name: String)?
        for candidate in candidates {
            let d = MSRCatalogue.editDistance(name.lowercased(), candidate.lowercased())
            if let current = best, current.distance < d || (current.distance == d && current.name < candidate) { continue }
            best = (d, candidate)
        }
        guard let found = best, found.distance <= max(2, name.count / 3) else { return nil }
        return found.name
    }

    /// File order for located rules, otherwise index order.
    private static func isBefore(_ a: MSRRule, _ b: MSRRule) -> Bool {
        if let la = a.location, let lb = b.location { return (la.line, la.column) < (lb.line, lb.column) }
        return a.first < b.first
    }
}

/// Number spellings shared by the parser and the writer.
enum PolicyNumbers {
    /// "0x" + hex digits in groups of four from the right: 0x800_0000_1000.
    static func hex64(_ value: UInt64) -> String { groupedHex(value) }

    /// Parses "0x…", "0o…", "0b…" or decimal, with `_` separators allowed; nil if malformed or above 64 bits.
    static func parse(_ text: String) -> UInt64? {
        var body = Substring(text.trimmingSpaces().lowercased())
        var radix = 10
        if body.hasPrefix("0x") { radix = 16; body = body.dropFirst(2) }
        else if body.hasPrefix("0o") { radix = 8; body = body.dropFirst(2) }
        else if body.hasPrefix("0b") { radix = 2; body = body.dropFirst(2) }
        // Separators only between digits, as in TOML.
        guard !body.isEmpty, body.first != "_", body.last != "_", !body.contains("__") else { return nil }
        return UInt64(body.filter { $0 != "_" }, radix: radix)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (no Foundation in this module).
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
