// PolicyParser: the TOML policy file → `MSRPolicy`, with every problem
// reported at file:line:column (all of them, not just the first). Owns the
// file format (described below and in docs/policy-format.md); the TOML
// syntax itself is TOMLReader's.

/// A parsed policy file.
///
/// The file format (TOML):
///
/// ```toml
/// profile = "intel-skylake-server"   # optional CPU-model profile (names checked by the caller)
///
/// [default]                # optional; defaults: action = "kernel", applies_to = "unknown", log = false
/// action = "gp"            # gp | ignore | kernel
/// applies_to = "unknown"   # unknown: MSRs KVM does not implement (the per-VM ignore_msrs)
///                          # all: every MSR no rule names (the filter denies them by default)
/// log = true               # every access that reaches the default becomes an event
///
/// [[rule]]
/// msr = "MSR_PLATFORM_INFO"          # a catalogue name, or a number: 0xce / 206 / "0xce"
/// action = "emulate"                 # kernel | emulate | ignore | deny | computed | host
/// value = 0x0000_0800_0000_1000      # emulate: initial value; ignore: the value reads return (default 0)
/// scope = "vm"                       # emulate: vcpu (default) | vm
/// writable = 0x0                     # emulate: bits a write may change (default all ones)
/// reserved = "0xffff_0000_0000_0000" # emulate: bits whose setting raises #GP (default 0)
/// writes = "read-only"               # emulate: read-write (default) | read-only | write-ignored
/// log = true                         # every access to this rule becomes an event (not for kernel)
///
/// [[rule]]
/// range = ["0x4b564d00", "0x4b564dff"]   # inclusive first and last; numbers or strings
/// action = "deny"
///
/// [[rule]]
/// msr = 0x611
/// action = "computed"
/// provider = "rapl-package-energy"       # a built-in value provider
/// ```
///
/// Numbers: TOML integers are signed 64-bit, so a value of 2^63 or more must
/// be written as a string; a string holding `0x…`, `0o…`, `0b…` or decimal
/// digits (with `_` separators) is accepted wherever a number is.
///
/// Checked, each error located: unknown keys (top level, `[default]`,
/// `[[rule]]`); unknown actions, scopes, write behaviours, default actions
/// and `applies_to` values; a rule with both or neither of `msr`/`range`;
/// unknown MSR names (with the closest catalogue name); inverted ranges;
/// overlapping rules (both locations named); keys that do not belong to the
/// rule's action (`provider` on `emulate`, `log` on `kernel`, …); `computed`
/// without `provider`; an `emulate` initial value that sets its own reserved
/// bits; user-space actions on the x2APIC MSRs 0x800–0x8ff (KVM never
/// filters them); `action = "kernel"` with `applies_to = "all"`; and, when
/// the caller passes the sets, unknown provider and profile names.
/// `writable` and `reserved` may overlap: a reserved bit raises #GP whether
/// or not it is writable.
public struct PolicyDocument: Sendable {
    /// The policy as written; a named profile's rules are merged in later by `CPUProfiles`.
    public var policy: MSRPolicy
    /// The file name used in locations.
    public var file: String
    /// Where `profile = …` was written, for errors found when the profile is merged.
    public var profileLocation: SourceLocation?

    /// The CPU-model profile the file names (stored in `policy.profile`).
    public var profile: String? { policy.profile }

    public init(policy: MSRPolicy, file: String, profileLocation: SourceLocation? = nil) {
        self.policy = policy; self.file = file; self.profileLocation = profileLocation
    }
}

/// Reads policy files; see `PolicyDocument` for the format.
public enum PolicyParser {
    /// Parses and validates a policy file's text.
    /// - Parameters:
    ///   - file: the name printed in error locations.
    ///   - knownProviders: value-provider names `computed` rules may use; nil skips the check.
    ///   - knownProfiles: CPU-model profile names `profile` may take; nil skips the check.
    /// - Throws: every problem found, in file order.
    public static func parse(_ text: String, file: String, knownProviders: Set<String>? = nil,
                             knownProfiles: Set<String>? = nil) throws(PolicyErrors) -> PolicyDocument {
        let toml: TOMLReader.Document
        switch TOMLReader.read(text) {
        case .success(let document): toml = document
        case .failure(let syntax):
            throw PolicyErrors([PolicyError(location: SourceLocation(file: file, line: syntax.line, column: syntax.column),
                                            message: syntax.message)])
        }
        var parser = Parser(file: file, map: SourceMap(toml), knownProviders: knownProviders)
        let document = parser.document(toml.root, knownProfiles: knownProfiles)
        if !parser.errors.isEmpty {
            // Stable sort: the tree walk visits keys alphabetically, people read files top-down.
            let ordered = parser.errors.enumerated().sorted {
                ($0.element.location.line, $0.element.location.column, $0.offset)
                    < ($1.element.location.line, $1.element.location.column, $1.offset)
            }.map(\.element)
            throw PolicyErrors(ordered)
        }
        return document
    }

    /// The keys each part of the file takes.
    static let topKeys = ["profile", "default", "rule"]
    static let defaultKeys = ["action", "applies_to", "log"]
    static let ruleKeys = ["msr", "range", "action", "value", "scope", "writable", "reserved", "writes", "log", "provider"]
    /// Keys beyond msr/range/action that each action takes.
    static let actionKeys: [String: [String]] = [
        "kernel": [],
        "emulate": ["value", "scope", "writable", "reserved", "writes", "log"],
        "ignore": ["value", "log"],
        "deny": ["log"],
        "computed": ["provider", "log"],
        "host": ["log"],
    ]
    static let actionNames = ["kernel", "emulate", "ignore", "deny", "computed", "host"]
}

// MARK: - Parsing the tree

/// One parse: the tree walk, with errors collected as it goes.
struct Parser {
    let file: String
    let map: SourceMap
    let knownProviders: Set<String>?
    /// The array of tables the rules are in: `rule` in a policy, `msr` in a CPU model file.
    var rulesKey = "rule"
    var errors: [PolicyError] = []

    init(file: String, map: SourceMap, knownProviders: Set<String>?) {
        self.file = file; self.map = map; self.knownProviders = knownProviders
    }

    mutating func error(_ position: SourceMap.Position, _ message: String) {
        errors.append(PolicyError(location: location(position), message: message))
    }

    func location(_ position: SourceMap.Position) -> SourceLocation {
        SourceLocation(file: file, line: position.line, column: position.column)
    }

    mutating func document(_ root: [String: Node], knownProfiles: Set<String>?) -> PolicyDocument {
        for key in root.keys.sorted() where !PolicyParser.topKeys.contains(key) {
            error(map.topKey(key), unknownKey(key, in: "the top level", expected: PolicyParser.topKeys))
        }

        var profile: String?
        var profileLocation: SourceLocation?
        if let node = root["profile"] {
            let at = map.topValue("profile")
            profileLocation = location(at)
            if case .string(let name) = node, !name.isEmpty {
                if let known = knownProfiles, !known.contains(name) {
                    error(at, PolicyChecks.unknownName("CPU-model profile", name, known))
                }
                profile = name
            } else {
                error(at, "profile must be a non-empty string naming a CPU-model profile, found \(describe(node))")
            }
        }

        var defaultAction = DefaultAction.kernel, defaultScope = DefaultScope.unknown, logDefault = false
        if let node = root["default"] {
            if case .table(let table) = node {
                (defaultAction, defaultScope, logDefault) = parseDefault(table)
            } else {
                error(map.topValue("default"), "default must be a table ([default]), found \(describe(node))")
            }
        }

        var rules: [MSRRule] = []
        if let node = root["rule"] {
            if case .array(let elements) = node {
                for (index, element) in elements.enumerated() {
                    if let rule = parseRule(element, index: index) { rules.append(rule) }
                }
            } else {
                error(map.topValue("rule"), "rule must be an array of tables ([[rule]]), found \(describe(node))")
            }
        }
        for overlap in PolicyChecks.overlaps(rules) {
            let at = overlap.later.location ?? location(SourceMap.Position(line: 1, column: 1))
            errors.append(PolicyError(location: at, message: PolicyChecks.overlapMessage(overlap, file: file)))
        }

        let policy = MSRPolicy(rules: rules, defaultAction: defaultAction, defaultScope: defaultScope,
                               logDefault: logDefault, profile: profile)
        return PolicyDocument(policy: policy, file: file, profileLocation: profileLocation)
    }

    // MARK: [default]

    private mutating func parseDefault(_ table: [String: Node]) -> (DefaultAction, DefaultScope, Bool) {
        for key in table.keys.sorted() where !PolicyParser.defaultKeys.contains(key) {
            error(map.defaultKey(key), unknownKey(key, in: "[default]", expected: PolicyParser.defaultKeys))
        }
        var action = DefaultAction.kernel, scope = DefaultScope.unknown, log = false
        var actionOK = true, scopeOK = true
        if let node = table["action"] {
            if let parsed: DefaultAction = keyword(node, key: "action", at: map.defaultValue("action"), what: "default action") {
                action = parsed
            } else { actionOK = false }
        }
        if let node = table["applies_to"] {
            if let parsed: DefaultScope = keyword(node, key: "applies_to", at: map.defaultValue("applies_to"), what: "applies_to value") {
                scope = parsed
            } else { scopeOK = false }
        }
        if let node = table["log"] { log = bool(node, key: "log", at: map.defaultValue("log")) ?? false }
        if actionOK, scopeOK, let message = PolicyChecks.defaultProblem(action: action, scope: scope) {
            error(table["action"] != nil ? map.defaultValue("action") : map.defaultValue("applies_to"), message)
        }
        return (action, scope, log)
    }

    // MARK: [[rule]]

    mutating func parseRule(_ node: Node, index: Int) -> MSRRule? {
        let header = map.ruleHeader(index)
        guard case .table(let table) = node else {
            error(header, "each rule must be a table ([[\(rulesKey)]]), found \(describe(node))")
            return nil
        }
        let errorsBefore = errors.count
        for key in table.keys.sorted() where !PolicyParser.ruleKeys.contains(key) {
            error(map.ruleKey(index, key), unknownKey(key, in: "[[\(rulesKey)]]", expected: PolicyParser.ruleKeys))
        }

        // Which MSRs.
        var first: UInt32?, last: UInt32?
        switch (table["msr"], table["range"]) {
        case (nil, nil):
            error(header, "rule names no MSR: give msr = <name or number> or range = [first, last]")
        case (.some, .some):
            error(map.ruleKey(index, "range"), "rule has both msr and range; give exactly one of them")
        case (.some(let msr), nil):
            if let value = msrIndex(msr, key: "msr", at: map.ruleValue(index, "msr")) { first = value; last = value }
        case (nil, .some(let range)):
            let at = map.ruleValue(index, "range")
            if case .array(let bounds) = range, bounds.count == 2 {
                first = msrIndex(bounds[0], key: "range", at: at)
                last = msrIndex(bounds[1], key: "range", at: at)
            } else {
                error(at, "range must be an array of two MSRs [first, last] (inclusive), found \(describe(range))")
            }
        }

        // The action, and the keys that belong to it.
        guard let actionNode = table["action"] else {
            error(header, "rule has no action; expected one of: \(PolicyParser.actionNames.joined(separator: ", "))")
            return nil
        }
        let actionAt = map.ruleValue(index, "action")
        guard case .string(let word) = actionNode else {
            error(actionAt, "action must be a string, found \(describe(actionNode))")
            return nil
        }
        guard let allowed = PolicyParser.actionKeys[word] else {
            error(actionAt, unknownWord(word, what: "action", expected: PolicyParser.actionNames))
            return nil
        }
        for key in table.keys.sorted() where PolicyParser.ruleKeys.contains(key) && !["msr", "range", "action"].contains(key)
            && !allowed.contains(key) {
            let takes = allowed.isEmpty ? "it takes no other keys" : "it takes: \(allowed.joined(separator: ", "))"
            let why = word == "kernel" && key == "log"
                ? " (KVM handles those accesses without exiting to user space, so there is nothing to log)" : ""
            error(map.ruleKey(index, key), "\(key) does not apply to action \"\(word)\"\(why); \(takes)")
        }

        let log = table["log"].flatMap { bool($0, key: "log", at: map.ruleValue(index, "log")) } ?? false
        func number(_ key: String, default fallback: UInt64) -> UInt64 {
            guard allowed.contains(key), let node = table[key] else { return fallback }
            return value(node, key: key, at: map.ruleValue(index, key)) ?? fallback
        }
        let action: MSRAction
        switch word {
        case "emulate":
            var emulation = Emulation(initialValue: number("value", default: 0),
                                      writableMask: number("writable", default: .max),
                                      reservedMask: number("reserved", default: 0))
            if let node = table["scope"],
               let scope: EmulationScope = keyword(node, key: "scope", at: map.ruleValue(index, "scope"), what: "scope") {
                emulation.scope = scope
            }
            if let node = table["writes"],
               let writes: WriteBehaviour = keyword(node, key: "writes", at: map.ruleValue(index, "writes"), what: "writes value") {
                emulation.writes = writes
            }
            action = .emulate(emulation)
        case "ignore":
            action = .ignore(readValue: number("value", default: 0))
        case "deny":
            action = .deny
        case "computed":
            var provider = ""
            if let node = table["provider"] {
                if case .string(let name) = node, !name.isEmpty { provider = name }
                else { error(map.ruleValue(index, "provider"), "provider must be a non-empty string, found \(describe(node))") }
            } else {
                error(header, "action \"computed\" needs provider = \"<name>\" (the built-in value provider that computes reads)")
            }
            action = .computed(provider: provider)
        case "host":
            action = .host
        default:
            action = .kernel
        }
        guard errors.count == errorsBefore, let first, let last else { return nil }

        let rule = MSRRule(first: first, last: last, action: action, log: log, location: location(header))
        for problem in PolicyChecks.ruleProblems(rule, knownProviders: knownProviders) {
            let at: SourceMap.Position
            switch problem.field {
            case .target: at = map.ruleValue(index, table["msr"] != nil ? "msr" : "range")
            case .value: at = map.ruleValue(index, "value")
            case .provider: at = map.ruleValue(index, "provider")
            case .log: at = map.ruleKey(index, "log")
            }
            error(at, problem.message)
        }
        return rule
    }

    // MARK: Values

    /// An MSR index: a number, a numeric string, or a catalogue name.
    private mutating func msrIndex(_ node: Node, key: String, at: SourceMap.Position) -> UInt32? {
        if case .string(let text) = node, let firstChar = text.trimmingSpaces().first, !firstChar.isNumber {
            if let index = MSRCatalogue.index(named: text.trimmingSpaces()) { return index }
            var message = "unknown MSR name \"\(text)\""
            if let close = MSRCatalogue.suggestion(for: text) { message += "; did you mean \"\(close)\"?" }
            error(at, message + " (or write the MSR's number, e.g. \(key) = 0xce)")
            return nil
        }
        guard let number = value(node, key: key, at: at) else { return nil }
        guard let index = UInt32(exactly: number) else {
            error(at, "MSR index \(PolicyNumbers.hex64(number)) does not fit in 32 bits")
            return nil
        }
        return index
    }

    /// A 64-bit unsigned number: a non-negative integer or a numeric string.
    private mutating func value(_ node: Node, key: String, at: SourceMap.Position) -> UInt64? {
        switch node {
        case .int(let int):
            if let value = UInt64(exactly: int) { return value }
            error(at, "\(key) = \(int) is negative; values are unsigned 64-bit (write all ones as \"0xffff_ffff_ffff_ffff\")")
        case .string(let text):
            if let value = PolicyNumbers.parse(text) { return value }
            error(at, "\(key) = \"\(text)\" is not a 64-bit number (expected an integer, or a string of 0x-hex, 0o-octal, 0b-binary or decimal digits)")
        default:
            error(at, "\(key) must be a number, found \(describe(node))")
        }
        return nil
    }

    private mutating func bool(_ node: Node, key: String, at: SourceMap.Position) -> Bool? {
        if case .bool(let value) = node { return value }
        error(at, "\(key) must be true or false, found \(describe(node))")
        return nil
    }

    /// One of an enum's spellings.
    private mutating func keyword<T: RawRepresentable & CaseIterable>(_ node: Node, key: String, at: SourceMap.Position,
                                                                      what: String) -> T? where T.RawValue == String {
        let expected = T.allCases.map(\.rawValue)
        guard case .string(let word) = node else {
            error(at, "\(key) must be a string, one of: \(expected.joined(separator: ", ")); found \(describe(node))")
            return nil
        }
        if let value = T(rawValue: word) { return value }
        error(at, unknownWord(word, what: what, expected: expected))
        return nil
    }

    private func unknownWord(_ word: String, what: String, expected: [String]) -> String {
        var message = "unknown \(what) \"\(word)\""
        if let close = PolicyChecks.closest(word, in: expected) { message += "; did you mean \"\(close)\"?" }
        return message + " (expected one of: \(expected.joined(separator: ", ")))"
    }

    private func unknownKey(_ key: String, in place: String, expected: [String]) -> String {
        var message = "unknown key \"\(key)\" in \(place)"
        if let close = PolicyChecks.closest(key, in: expected) { message += "; did you mean \"\(close)\"?" }
        return message + " (expected: \(expected.joined(separator: ", ")))"
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .string(let text): return "the string \"\(text)\""
        case .int(let int): return "the integer \(int)"
        case .bool(let value): return "\(value)"
        default: return "a \(node.typeName)"
        }
    }
}

// MARK: - Rules embedded in other files

extension PolicyParser {
    /// The `[[key]]` MSR rules of another TOML file format (a CPU model
    /// file's `[[msr]]`), parsed and checked exactly as a policy's `[[rule]]`s,
    /// overlaps included. Returns the rules and every problem, located.
    package static func parseRules(in document: TOMLReader.Document, key: String, file: String,
                                   knownProviders: Set<String>? = nil) -> (rules: [MSRRule], errors: [PolicyError]) {
        var parser = Parser(file: file, map: SourceMap(document, rulesKey: key), knownProviders: knownProviders)
        parser.rulesKey = key
        var rules: [MSRRule] = []
        if let node = document.root[key] {
            if case .array(let elements) = node {
                for (index, element) in elements.enumerated() {
                    if let rule = parser.parseRule(element, index: index) { rules.append(rule) }
                }
            } else {
                parser.error(parser.map.topValue(key), "\(key) must be an array of tables ([[\(key)]]), found \(parser.describe(node))")
            }
        }
        for overlap in PolicyChecks.overlaps(rules) {
            let at = overlap.later.location ?? parser.location(SourceMap.Position(line: 1, column: 1))
            parser.errors.append(PolicyError(location: at, message: PolicyChecks.overlapMessage(overlap, file: file)))
        }
        return (rules, parser.errors)
    }
}

// MARK: - Where keys were written

/// Where the parts of the policy were written, from the TOML reader's
/// record: `[[rule]]` headers in order (the Nth header is the Nth rule),
/// `[default]`, and the `key = value` lines in each. Keys inside inline
/// tables are not recorded; lookups fall back to the nearest enclosing
/// header or key.
struct SourceMap {
    typealias Position = TOMLReader.Position

    private let top: TOMLReader.Section
    private let defaultTable: TOMLReader.Section?
    private let rules: [TOMLReader.Section]

    /// `rulesKey`: the array of tables that holds the rules (`rule` in a
    /// policy file, `msr` in a CPU model file).
    init(_ document: TOMLReader.Document, rulesKey: String = "rule") {
        top = document.top
        defaultTable = document.tables[["default"]]
        rules = document.arraysOfTables[[rulesKey]] ?? []
    }

    // Lookups, each falling back to something sensible.

    func topKey(_ key: String) -> Position { top.keys[key]?.key ?? top.header }
    func topValue(_ key: String) -> Position { top.keys[key]?.value ?? top.header }

    func defaultKey(_ key: String) -> Position {
        defaultTable?.keys[key]?.key ?? top.keys["default.\(key)"]?.key ?? defaultHeader
    }
    func defaultValue(_ key: String) -> Position {
        defaultTable?.keys[key]?.value ?? top.keys["default.\(key)"]?.value ?? defaultHeader
    }
    private var defaultHeader: Position { defaultTable?.header ?? top.keys["default"]?.value ?? top.header }

    func ruleHeader(_ n: Int) -> Position {
        n < rules.count ? rules[n].header : (top.keys["rule"]?.value ?? top.header)
    }
    func ruleKey(_ n: Int, _ key: String) -> Position {
        (n < rules.count ? rules[n].keys[key]?.key : nil) ?? ruleHeader(n)
    }
    func ruleValue(_ n: Int, _ key: String) -> Position {
        (n < rules.count ? rules[n].keys[key]?.value : nil) ?? ruleHeader(n)
    }
}
