// PolicyParser: the TOML policy file → `MSRPolicy`, with every problem
// reported at file:line:column (all of them, not just the first). Owns the
// file format (described below and in docs/policy-format.md) and the source
// scanner that finds where keys were written, which TOMLKit does not report.

internal import TOMLKit

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
        let root: [String: Node]
        switch TOMLReader.read(text) {
        case .success(let table): root = table
        case .failure(let syntax):
            throw PolicyErrors([PolicyError(location: SourceLocation(file: file, line: syntax.line, column: syntax.column),
                                            message: syntax.message)])
        }
        var parser = Parser(file: file, map: SourceMap(text), knownProviders: knownProviders)
        let document = parser.document(root, knownProfiles: knownProfiles)
        if !parser.errors.isEmpty {
            // Stable sort: TOMLKit hands keys over alphabetically, people read files top-down.
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

/// A TOML value, copied out of TOMLKit so the rest of the parser is plain Swift.
indirect enum Node {
    case int(Int)
    case string(String)
    case bool(Bool)
    case array([Node])
    case table([String: Node])
    case other(String)

    var typeName: String {
        switch self {
        case .int: return "integer"
        case .string: return "string"
        case .bool: return "boolean"
        case .array: return "array"
        case .table: return "table"
        case .other(let name): return name
        }
    }
}

/// The one place that talks to TOMLKit.
enum TOMLReader {
    struct SyntaxError: Error { var line: Int; var column: Int; var message: String }

    static func read(_ text: String) -> Result<[String: Node], SyntaxError> {
        if let unsafeInput = rejectBeforeTOMLKit(text) { return .failure(unsafeInput) }
        do {
            let table = try TOMLTable(string: text)
            return .success(convert(table))
        } catch let error as TOMLParseError {
            var message = "TOML syntax: " + error.description
            if error.description.contains("not representable in 64 bits") {
                message += "; numbers of 2^63 and above must be written as strings, e.g. \"0xffff_ffff_ffff_ffff\""
            }
            return .failure(SyntaxError(line: max(1, error.source.begin.line), column: max(1, error.source.begin.column),
                                        message: message))
        } catch {
            return .failure(SyntaxError(line: 1, column: 1, message: "TOML syntax: \(error)"))
        }
    }

    /// Input that must not reach toml++ (3.x, bundled by TOMLKit 0.6):
    /// - a table header whose first character after `[`/`[[` is neither a key
    ///   character, a quote nor `]` (e.g. `[,default]`, or `[[` at the end of
    ///   a line) trips an assertion in
    ///   `parser::parse_key()` (abort in debug builds, undefined behaviour via
    ///   `__builtin_assume` in release builds); found by the fuzz test;
    /// - an array element that starts with `}` (e.g. `range = [}1, 2]`) trips
    ///   the assertion in `parser::parse_value()`, and so would whitespace
    ///   other than space, tab and line breaks there; TOML allows no other
    ///   whitespace or control characters outside strings, so they are refused
    ///   everywhere outside strings and comments;
    /// - a NUL character, which would silently cut the text short (it is passed as a C string).
    static func rejectBeforeTOMLKit(_ text: String) -> SyntaxError? {
        if let hazard = headerOrNULHazard(text) { return hazard }
        return valueHazard(text)
    }

    /// The character-level half: strings, comments and brackets are tracked so
    /// only characters between values are judged.
    private static func valueHazard(_ text: String) -> SyntaxError? {
        let chars = Array(text)
        var line = 1, lineStart = 0
        var stack: [Character] = []       // open '[' (arrays) and '{' (inline tables) inside values
        var afterEquals = false           // on a top-level `key =` line, so '[' opens an array
        var expectingElement = false      // just after an array's '[' or ','
        var i = 0
        func error(_ at: Int, _ message: String) -> SyntaxError {
            SyntaxError(line: line, column: at - lineStart + 1, message: "TOML syntax: " + message)
        }
        while i < chars.count {
            let c = chars[i]
            if c == "\n" || c == "\r\n" {
                if stack.isEmpty { afterEquals = false }
                line += 1; i += 1; lineStart = i
                continue
            }
            if c == " " || c == "\t" { i += 1; continue }
            if c == "#" {
                while i < chars.count, chars[i] != "\n", chars[i] != "\r\n" { i += 1 }
                continue
            }
            if c == "\"" || c == "'" {
                // Skip the string, counting the lines a multi-line one spans.
                let triple = i + 2 < chars.count && chars[i + 1] == c && chars[i + 2] == c
                i += triple ? 3 : 1
                while i < chars.count {
                    if c == "\"" && chars[i] == "\\" { i += 2; continue }
                    if chars[i] == "\n" || chars[i] == "\r\n" {
                        if !triple { break }  // unterminated: toml++ reports it
                        line += 1; lineStart = i + 1
                    }
                    if chars[i] == c && (!triple || (i + 2 < chars.count && chars[i + 1] == c && chars[i + 2] == c)) {
                        i += triple ? 3 : 1
                        // A closing triple may be followed by up to two more quotes belonging to the string.
                        while triple, i < chars.count, chars[i] == c { i += 1 }
                        break
                    }
                    i += 1
                }
                expectingElement = false
                continue
            }
            if c.isWhitespace || c.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                let code = String(c.unicodeScalars.first?.value ?? 0, radix: 16, uppercase: true)
                return error(i, "character U+\(String(repeating: "0", count: max(0, 4 - code.count)) + code) is not allowed outside strings")
            }
            switch c {
            case "[":
                if stack.isEmpty && !afterEquals {
                    // A table header: skip to its end (the line-based check judged its start).
                    while i < chars.count, chars[i] != "\n", chars[i] != "\r\n", chars[i] != "#" { i += 1 }
                    continue
                }
                stack.append("["); expectingElement = true
            case "{":
                stack.append("{"); expectingElement = false
            case "}":
                if expectingElement { return error(i, "expected a value or ']', found '}'") }
                if stack.last == "{" { stack.removeLast() }
            case "]":
                if stack.last == "[" { stack.removeLast() }
                expectingElement = false
            case ",":
                expectingElement = stack.last == "["
            case "=":
                if stack.isEmpty { afterEquals = true }
                expectingElement = false
            default:
                expectingElement = false
            }
            i += 1
        }
        return nil
    }

    /// The line-level half: table-header starts and NUL characters.
    private static func headerOrNULHazard(_ text: String) -> SyntaxError? {
        var lineNumber = 0
        var openString: String?
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let chars = Array(line)
            if let nul = chars.firstIndex(of: "\0") {
                return SyntaxError(line: lineNumber, column: nul + 1, message: "policy files must not contain NUL characters")
            }
            if let delimiter = openString {
                if SourceMap.count(delimiter, in: chars) % 2 == 1 { openString = nil }
                continue
            }
            var i = 0
            while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
            if i < chars.count, chars[i] == "[" {
                var j = i + 1
                if j < chars.count, chars[j] == "[" { j += 1 }
                while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
                let found = j < chars.count ? "'\(chars[j])'" : "the end of the line"
                let keyStart = j < chars.count
                    && ((chars[j].isASCII && (chars[j].isLetter || chars[j].isNumber))
                        || ["_", "-", "\"", "'", "]"].contains(chars[j]))
                if !keyStart {
                    return SyntaxError(line: lineNumber, column: j + 1,
                                       message: "TOML syntax: a table header must start with a key, found \(found)")
                }
                continue
            }
            for delimiter in ["\"\"\"", "'''"] where SourceMap.count(delimiter, in: chars) % 2 == 1 {
                openString = delimiter
            }
        }
        return nil
    }

    private static func convert(_ table: TOMLTable) -> [String: Node] {
        var result: [String: Node] = [:]
        for (key, value) in table { result[key] = convert(value) }
        return result
    }

    private static func convert(_ value: TOMLValueConvertible) -> Node {
        switch value.type {
        case .int: return value.int.map(Node.int) ?? .other("integer")
        case .string: return value.string.map(Node.string) ?? .other("string")
        case .bool: return value.bool.map(Node.bool) ?? .other("boolean")
        case .array: return .array(value.array.map { $0.map(convert) } ?? [])
        case .table: return value.table.map { .table(convert($0)) } ?? .other("table")
        case .double: return .other("floating-point number")
        case .date: return .other("date")
        case .time: return .other("time")
        case .dateTime: return .other("date-time")
        }
    }
}

/// One parse: the tree walk, with errors collected as it goes.
struct Parser {
    let file: String
    let map: SourceMap
    let knownProviders: Set<String>?
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

    private mutating func parseRule(_ node: Node, index: Int) -> MSRRule? {
        let header = map.ruleHeader(index)
        guard case .table(let table) = node else {
            error(header, "each rule must be a table ([[rule]]), found \(describe(node))")
            return nil
        }
        let errorsBefore = errors.count
        for key in table.keys.sorted() where !PolicyParser.ruleKeys.contains(key) {
            error(map.ruleKey(index, key), unknownKey(key, in: "[[rule]]", expected: PolicyParser.ruleKeys))
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

    private func describe(_ node: Node) -> String {
        switch node {
        case .string(let text): return "the string \"\(text)\""
        case .int(let int): return "the integer \(int)"
        case .bool(let value): return "\(value)"
        default: return "a \(node.typeName)"
        }
    }
}

// MARK: - Where keys were written

/// Positions of tables and keys in the source text. TOMLKit reports positions
/// only for syntax errors, so the text is scanned line by line: `[[rule]]`
/// headers in order (the Nth header is the Nth rule), `[default]`, and
/// `key = value` lines within each table's span. The text has already parsed
/// as TOML, so the scan only has to skip comments and multi-line strings.
/// Anything not found falls back to the nearest enclosing header.
struct SourceMap {
    struct Position: Sendable, Hashable { var line: Int; var column: Int }
    struct KeySpot { var key: Position; var value: Position }
    struct Table { var header: Position; var keys: [String: KeySpot] = [:] }

    private(set) var top = Table(header: Position(line: 1, column: 1))
    private(set) var defaultTable: Table?
    private(set) var rules: [Table] = []

    init(_ text: String) {
        enum Current { case top, defaults, rule(Int), other }
        var current = Current.top
        var openString: String?  // the delimiter of a multi-line string being skipped
        var lineNumber = 0
        // "\r\n" is a single Character in Swift, so split on both spellings.
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            let chars = Array(line)
            if let delimiter = openString {
                if Self.count(delimiter, in: chars) % 2 == 1 { openString = nil }
                continue
            }
            var i = 0
            while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
            guard i < chars.count, chars[i] != "#" else { continue }
            let start = Position(line: lineNumber, column: i + 1)
            if chars[i] == "[" {
                let isArray = i + 1 < chars.count && chars[i + 1] == "["
                let name = Self.headerName(chars, from: i + (isArray ? 2 : 1))
                if isArray && name == "rule" {
                    rules.append(Table(header: start)); current = .rule(rules.count - 1)
                } else if !isArray && name == "default" {
                    defaultTable = Table(header: start); current = .defaults
                } else {
                    current = .other
                }
                continue
            }
            guard let (key, valueColumn) = Self.keyAndValue(chars, from: i) else { continue }
            let spot = KeySpot(key: start, value: Position(line: lineNumber, column: valueColumn))
            switch current {
            case .top: if top.keys[key] == nil { top.keys[key] = spot }
            case .defaults: if defaultTable?.keys[key] == nil { defaultTable?.keys[key] = spot }
            case .rule(let n): if rules[n].keys[key] == nil { rules[n].keys[key] = spot }
            case .other: break
            }
            let rest = Array(chars[(valueColumn - 1)...])
            for delimiter in ["\"\"\"", "'''"] where Self.count(delimiter, in: rest) % 2 == 1 {
                openString = delimiter
            }
        }
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

    // Scanning helpers.

    /// The trimmed text between the opening bracket(s) and the closing `]`.
    private static func headerName(_ chars: [Character], from start: Int) -> String {
        var end = start
        while end < chars.count, chars[end] != "]" { end += 1 }
        return String(chars[min(start, end)..<end]).trimmingSpaces()
    }

    /// The key (dotted parts joined by ".") and the 1-based column of its value, if the line is `key = value`.
    private static func keyAndValue(_ chars: [Character], from start: Int) -> (String, Int)? {
        var i = start
        var parts: [String] = []
        while true {
            guard i < chars.count else { return nil }
            if chars[i] == "\"" || chars[i] == "'" {
                let quote = chars[i]
                var j = i + 1
                while j < chars.count, chars[j] != quote { j += quote == "\"" && chars[j] == "\\" ? 2 : 1 }
                guard j < chars.count else { return nil }
                parts.append(String(chars[(i + 1)..<j])); i = j + 1
            } else {
                var j = i
                while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" || chars[j] == "-" { j += 1 }
                guard j > i else { return nil }
                parts.append(String(chars[i..<j])); i = j
            }
            while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
            guard i < chars.count else { return nil }
            if chars[i] == "." {
                i += 1
                while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
                continue
            }
            break
        }
        guard chars[i] == "=" else { return nil }
        i += 1
        while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
        return (parts.joined(separator: "."), min(i, chars.count - 1) + 1)
    }

    /// Non-overlapping occurrences of `needle` (a delimiter inside a comment
    /// is rare and at worst shifts the positions found after it).
    static func count(_ needle: String, in chars: [Character]) -> Int {
        let pattern = Array(needle)
        var n = 0, i = 0
        while i + pattern.count <= chars.count {
            if Array(chars[i..<(i + pattern.count)]) == pattern { n += 1; i += pattern.count } else { i += 1 }
        }
        return n
    }
}
