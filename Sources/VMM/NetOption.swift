// VMM: `--net tap=NAME[,mac=MAC]` in cloud-hypervisor's key=value device
// syntax, parsed into a virtio-net device's configuration.
import Virtio

/// One virtio-net device on a TAP.
public struct NetConfiguration: Sendable, Equatable, Codable {
    public var tap: String
    public var mac: MACAddress

    /// QEMU's first NIC address (52:54:00:12:34:56), the last byte counting up per device.
    public static func defaultMAC(index: Int) -> MACAddress {
        MACAddress(bytes: [0x52, 0x54, 0x00, 0x12, 0x34, UInt8(truncatingIfNeeded: 0x56 + index)])!
    }

    public init(tap: String, mac: MACAddress) {
        self.tap = tap; self.mac = mac
    }

    /// Parses the option's value (`index`: which --net this is, for the default MAC).
    public static func parse(_ text: String, index: Int) throws(NetOptionError) -> NetConfiguration {
        var tap: String?, mac: MACAddress?
        var seen: Set<String> = []
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw NetOptionError("--net \(text): \"\(field)\" is not KEY=VALUE (tap=NAME[,mac=MAC])")
            }
            let key = String(parts[0]), value = String(parts[1])
            guard seen.insert(key).inserted else { throw NetOptionError("--net \(text): \(key) given twice") }
            switch key {
            case "tap":
                guard !value.isEmpty, value.utf8.count <= 15, !value.contains("/") else {
                    throw NetOptionError("--net \(text): tap must be an interface name of 1 to 15 bytes")
                }
                tap = value
            case "mac":
                guard let parsed = MACAddress(value), !parsed.isMulticast else {
                    throw NetOptionError("--net \(text): mac=\(value) is not a unicast MAC address (52:54:00:12:34:56)")
                }
                mac = parsed
            default:
                throw NetOptionError("--net \(text): unknown key \(key) (tap, mac)")
            }
        }
        guard let tap else { throw NetOptionError("--net \(text): tap=NAME is required") }
        return NetConfiguration(tap: tap, mac: mac ?? defaultMAC(index: index))
    }
}

/// A malformed `--net` value (usage error, status 64).
public struct NetOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
