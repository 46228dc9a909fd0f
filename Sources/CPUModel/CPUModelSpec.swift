// CPUModel: what the user wrote after --cpu, parsed. "host", a built-in
// model name or a model file path, then comma-separated modifiers in
// Deflect's or QEMU's spelling: +f, -f, f=on|off, vendor=..., and QEMU's
// family=, model=, stepping=, model-id= overrides. `max` is `host`;
// `enforce` and `check` are accepted and do nothing (Deflect always
// enforces).

/// What the user wrote after --cpu: "host", a built-in name, a file path, each with ",+f" ",-f"; QEMU spellings.
public struct CPUModelSpec: Codable, Sendable, Hashable, CustomStringConvertible {
    /// "host", a built-in model's name, or a model file's path.
    public var base: String
    /// Feature additions and removals in the order written, by Linux name.
    public var changes: [FeatureChange]
    /// `vendor=` as written (must equal the model's and the host's vendor).
    public var vendor: String?
    /// QEMU's `family=`, `model=`, `stepping=` overrides.
    public var family: Int?
    public var model: Int?
    public var stepping: Int?
    /// QEMU's `model-id=`: the brand string.
    public var brand: String?

    public struct FeatureChange: Codable, Sendable, Hashable {
        public var feature: String
        public var enabled: Bool
        public init(feature: String, enabled: Bool) { self.feature = feature; self.enabled = enabled }
    }

    public init(base: String, changes: [FeatureChange] = [], vendor: String? = nil, family: Int? = nil,
                model: Int? = nil, stepping: Int? = nil, brand: String? = nil) {
        self.base = base; self.changes = changes; self.vendor = vendor
        self.family = family; self.model = model; self.stepping = stepping; self.brand = brand
    }

    public var isHost: Bool { base == "host" }

    /// The base is a model file: it names a path (a '/' or a .toml ending).
    public var isFile: Bool { base.contains("/") || base.hasSuffix(".toml") }

    /// Normalised: Linux feature names, `+`/`-`, QEMU overrides last.
    public var description: String {
        var parts = [base]
        parts += changes.map { ($0.enabled ? "+" : "-") + $0.feature }
        if let vendor { parts.append("vendor=\(vendor)") }
        if let family { parts.append("family=\(family)") }
        if let model { parts.append("model=\(model)") }
        if let stepping { parts.append("stepping=\(stepping)") }
        if let brand { parts.append("model-id=\(brand)") }
        return parts.joined(separator: ",")
    }

    /// The longest model-id QEMU or CPUID can carry (leaves 0x80000002-4).
    static let maxBrandBytes = 48

    public static func parse(_ text: String) throws(CPUModelError) -> CPUModelSpec {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingSpaces() }
        guard let first = parts.first, !first.isEmpty else {
            throw CPUModelError("--cpu needs a model: host, a built-in model (\(CPUModels.names.joined(separator: ", "))) or a model file")
        }
        var spec = CPUModelSpec(base: try baseName(first))
        for part in parts.dropFirst() {
            try spec.apply(modifier: part, in: text)
        }
        return spec
    }

    /// `max` is QEMU's "everything the accelerator can give": the host.
    private static func baseName(_ word: String) throws(CPUModelError) -> String {
        if word == "host" || word == "max" { return "host" }
        if word.contains("/") || word.hasSuffix(".toml") { return word }
        if CPUModels.definition(named: word) != nil { return word }
        let lowered = word.lowercased()
        if lowered == "host" || lowered == "max" { return "host" }
        if CPUModels.definition(named: lowered) != nil { return lowered }
        var message = "unknown CPU model \"\(word)\"; built-in models: host, \(CPUModels.names.joined(separator: ", "))"
        message += " (a model file is a path: ./\(word).toml)"
        throw CPUModelError(message)
    }

    private mutating func apply(modifier part: String, in text: String) throws(CPUModelError) {
        guard !part.isEmpty else { throw CPUModelError("empty modifier in --cpu \"\(text)\" (two commas, or one at the end)") }
        if let sign = part.first, sign == "+" || sign == "-" {
            try change(String(part.dropFirst()), enabled: sign == "+", in: text)
            return
        }
        guard let equals = part.firstIndex(of: "=") else {
            switch part.lowercased() {
            case "enforce", "check": return     // always on in Deflect
            default: try change(part, enabled: true, in: text)  // QEMU's bare "feature" means feature=on
            }
            return
        }
        let key = part[..<equals].lowercased().trimmingSpaces()
        let value = String(part[part.index(after: equals)...]).trimmingSpaces()
        switch key {
        case "vendor":
            guard !value.isEmpty, value.utf8.count <= 12, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                throw CPUModelError("vendor=\(value): a vendor string is 1 to 12 printable ASCII characters, e.g. GenuineIntel or AuthenticAMD")
            }
            vendor = value
        case "family": family = try Self.number(value, key: key, limit: 0xFF + 0xF)
        case "model": model = try Self.number(value, key: key, limit: 0xFF)
        case "stepping": stepping = try Self.number(value, key: key, limit: 0xF)
        case "model_id", "model-id":
            guard value.utf8.count <= Self.maxBrandBytes else {
                throw CPUModelError("model-id is \(value.utf8.count) bytes; CPUID carries at most \(Self.maxBrandBytes)")
            }
            brand = value
        case "enforce", "check":
            guard Self.isOn(value) != nil else { throw CPUModelError("\(key)=\(value): expected on or off") }
        default:
            guard let enabled = Self.isOn(value) else {
                throw CPUModelError("\(part): a feature takes on or off (\(key)=on, \(key)=off), or write +\(key) / -\(key)")
            }
            try change(key, enabled: enabled, in: text)
        }
    }

    private mutating func change(_ spelling: String, enabled: Bool, in text: String) throws(CPUModelError) {
        guard !spelling.isEmpty else { throw CPUModelError("\(enabled ? "+" : "-") without a feature name in --cpu \"\(text)\"") }
        if let owner = CPUFeatures.ownedElsewhere[spelling.lowercased().replacingSeparators()] {
            throw CPUModelError("\(spelling) is not a model feature: \(owner)")
        }
        guard let name = CPUFeatures.canonicalName(spelling) else {
            var message = "unknown CPU feature \"\(spelling)\""
            if let close = CPUFeatures.suggestion(for: spelling) { message += "; did you mean \(close)?" }
            throw CPUModelError(message + " (names are Linux's /proc/cpuinfo flags; QEMU's spellings work too)")
        }
        changes.append(FeatureChange(feature: name, enabled: enabled))
    }

    /// QEMU's boolean words.
    static func isOn(_ value: String) -> Bool? {
        switch value.lowercased() {
        case "on", "true", "yes", "1": return true
        case "off", "false", "no", "0": return false
        default: return nil
        }
    }

    /// A decimal or 0x-hexadecimal number up to `limit`.
    static func number(_ text: String, key: String, limit: Int) throws(CPUModelError) -> Int {
        let lowered = text.lowercased()
        let value = lowered.hasPrefix("0x") ? Int(lowered.dropFirst(2), radix: 16) : Int(lowered)
        guard let value, value >= 0, value <= limit else {
            throw CPUModelError("\(key)=\(text): expected a number from 0 to \(limit) (decimal or 0x...)")
        }
        return value
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
