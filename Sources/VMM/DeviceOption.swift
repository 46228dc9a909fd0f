// VMM: the `KEY=VALUE,…` syntax of the device options (`--disk`, `--net`,
// `--vsock`; cloud-hypervisor's): fields in order, each key known and given
// once, every refusal one line naming the option and its value.

/// A malformed device option value (usage error, status 64).
public struct DeviceOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

enum DeviceOption {
    /// Calls `body` with each field of `text`, in order. `option` is the
    /// flag ("--disk"), `keys` the keys it takes, `syntax` its form for the
    /// message about a field that is not KEY=VALUE. `refuse` inside `body`
    /// makes a one-line error for this option and value.
    static func forEachField(_ text: String, option: String, keys: [String], syntax: String,
                             _ body: (_ key: String, _ value: String, _ refuse: (String) -> DeviceOptionError) throws(DeviceOptionError) -> Void)
        throws(DeviceOptionError) {
        func refuse(_ problem: String) -> DeviceOptionError { DeviceOptionError("\(option) \(text): \(problem)") }
        var seen: Set<String> = []
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw refuse("\"\(field)\" is not KEY=VALUE (\(syntax))") }
            let key = String(parts[0])
            guard seen.insert(key).inserted else { throw refuse("\(key) given twice") }
            guard keys.contains(key) else { throw refuse("unknown key \(key) (\(keys.joined(separator: ", ")))") }
            try body(key, String(parts[1]), refuse)
        }
    }

    /// An on/off key's value (QEMU's and cloud-hypervisor's spelling; true
    /// and false too); `refuse` names the key otherwise.
    static func switchValue(_ value: String, key: String, refuse: (String) -> DeviceOptionError) throws(DeviceOptionError) -> Bool {
        switch value {
        case "on", "true": return true
        case "off", "false": return false
        default: throw refuse("\(key)=\(value) (on or off)")
        }
    }
}
