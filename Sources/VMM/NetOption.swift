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
    public static func parse(_ text: String, index: Int) throws(DeviceOptionError) -> NetConfiguration {
        var tap: String?, mac: MACAddress?
        try DeviceOption.forEachField(text, option: "--net", keys: ["tap", "mac"],
                                      syntax: "tap=NAME[,mac=MAC]") { key, value, refuse throws(DeviceOptionError) in
            if key == "tap" {
                guard !value.isEmpty, value.utf8.count <= 15, !value.contains("/") else {
                    throw refuse("tap must be an interface name of 1 to 15 bytes")
                }
                tap = value
            } else {
                guard let parsed = MACAddress(value), !parsed.isMulticast else {
                    throw refuse("mac=\(value) is not a unicast MAC address (52:54:00:12:34:56)")
                }
                mac = parsed
            }
        }
        guard let tap else { throw DeviceOptionError("--net \(text): tap=NAME is required") }
        return NetConfiguration(tap: tap, mac: mac ?? defaultMAC(index: index))
    }
}
