// PolicyWriter: an `MSRPolicy` back to the policy file format, so a policy
// built in Swift (or recorded by `deflect trace`) can be saved, read by a
// person and parsed again: parse(write(p)) == p up to locations and origins.

/// Writes policies in the format `PolicyParser` reads.
public enum PolicyWriter {
    /// The policy as TOML. Single MSRs with a catalogue name are written by
    /// name; values below 2^63 as TOML hex integers, larger ones as hex
    /// strings (TOML integers are signed 64-bit). Keys equal to their
    /// defaults are left out; a rule's `origin` becomes a comment.
    public static func toml(_ policy: MSRPolicy) -> String {
        var out = "# Deflect MSR policy\n"
        if let profile = policy.profile { out += "profile = \(quoted(profile))\n" }
        out += "\n[default]\n"
        out += "action = \(quoted(policy.defaultAction.rawValue))\n"
        out += "applies_to = \(quoted(policy.defaultScope.rawValue))\n"
        out += "log = \(policy.logDefault)\n"
        for rule in policy.rules {
            out += "\n"
            if let origin = rule.origin { out += "# origin: \(oneLine(origin))\n" }
            out += "[[rule]]\n"
            if rule.first == rule.last {
                if let name = MSRCatalogue.name(rule.first) {
                    out += "msr = \(quoted(name))  # \(MSRCatalogue.hex(rule.first))\n"
                } else {
                    out += "msr = \(MSRCatalogue.hex(rule.first))\n"
                }
            } else {
                out += "range = [\(MSRCatalogue.hex(rule.first)), \(MSRCatalogue.hex(rule.last))]\n"
            }
            out += "action = \(quoted(rule.action.keyword))\n"
            switch rule.action {
            case .emulate(let emulation):
                out += "value = \(number(emulation.initialValue))\n"
                if emulation.scope != .vcpu { out += "scope = \(quoted(emulation.scope.rawValue))\n" }
                if emulation.writableMask != .max { out += "writable = \(number(emulation.writableMask))\n" }
                if emulation.reservedMask != 0 { out += "reserved = \(number(emulation.reservedMask))\n" }
                if emulation.writes != .readWrite { out += "writes = \(quoted(emulation.writes.rawValue))\n" }
            case .ignore(let readValue):
                if readValue != 0 { out += "value = \(number(readValue))\n" }
            case .computed(let provider):
                out += "provider = \(quoted(provider))\n"
            case .kernel, .deny, .host:
                break
            }
            if rule.log { out += "log = true\n" }
        }
        return out
    }

    /// A TOML hex integer when it fits in Int64, otherwise a quoted hex string.
    static func number(_ value: UInt64) -> String {
        value <= UInt64(Int64.max) ? PolicyNumbers.hex64(value) : "\"\(PolicyNumbers.hex64(value))\""
    }

    /// A TOML basic string with the characters TOML requires escaped.
    static func quoted(_ text: String) -> String { QuotedString.quoted(text) }

    /// Comment text on one line.
    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}
