// VMM: `--net tap=NAME[,mac=MAC][,ioeventfd=off]` in cloud-hypervisor's
// key=value device syntax (ioeventfd is QEMU's property name), parsed into a
// virtio-net device's configuration.
import Virtio

/// One virtio-net device on a TAP.
public struct NetConfiguration: Sendable, Equatable, Codable {
    public var tap: String
    public var mac: MACAddress
    /// `ioeventfd=off`: queue notifications exit to user space on the vCPU thread.
    public var ioEventFD: Bool

    /// QEMU's first NIC address (52:54:00:12:34:56), the last byte counting up per device.
    public static func defaultMAC(index: Int) -> MACAddress {
        MACAddress(bytes: [0x52, 0x54, 0x00, 0x12, 0x34, UInt8(truncatingIfNeeded: 0x56 + index)])!
    }

    public init(tap: String, mac: MACAddress, ioEventFD: Bool = true) {
        self.tap = tap; self.mac = mac; self.ioEventFD = ioEventFD
    }

    private enum CodingKeys: String, CodingKey { case tap, mac, ioEventFD }

    /// Snapshots from before `ioeventfd` lack it: on.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(tap: try c.decode(String.self, forKey: .tap), mac: try c.decode(MACAddress.self, forKey: .mac),
                  ioEventFD: try c.decodeIfPresent(Bool.self, forKey: .ioEventFD) ?? true)
    }

    /// Parses the option's value (`index`: which --net this is, for the default MAC).
    public static func parse(_ text: String, index: Int) throws(DeviceOptionError) -> NetConfiguration {
        var tap: String?, mac: MACAddress?, ioEventFD = true
        try DeviceOption.forEachField(text, option: "--net", keys: ["tap", "mac", "ioeventfd"],
                                      syntax: "tap=NAME[,mac=MAC][,ioeventfd=off]") { key, value, refuse throws(DeviceOptionError) in
            if key == "ioeventfd" {
                ioEventFD = try DeviceOption.switchValue(value, key: key, refuse: refuse)
            } else if key == "tap" {
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
        return NetConfiguration(tap: tap, mac: mac ?? defaultMAC(index: index), ioEventFD: ioEventFD)
    }
}
