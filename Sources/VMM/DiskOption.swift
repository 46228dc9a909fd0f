// VMM: `--disk path=FILE[,readonly=on][,serial=ID][,direct=on][,ioeventfd=off]`
// in cloud-hypervisor's key=value device syntax (ioeventfd is QEMU's
// property name), parsed into a virtio-blk disk's configuration.
import Glibc

/// One virtio-blk disk the machine gets.
public struct DiskConfiguration: Sendable, Equatable, Codable {
    public var path: String
    public var readOnly: Bool
    /// What VIRTIO_BLK_T_GET_ID answers (at most 20 bytes).
    public var serial: String
    /// `direct=on`: the file opened with O_DIRECT (QEMU's cache=none).
    public var direct: Bool
    /// `ioeventfd=off`: queue notifications exit to user space on the vCPU
    /// thread instead of signalling the device's worker from the kernel.
    public var ioEventFD: Bool

    public init(path: String, readOnly: Bool = false, serial: String = "", direct: Bool = false, ioEventFD: Bool = true) {
        self.path = path; self.readOnly = readOnly; self.serial = serial; self.direct = direct; self.ioEventFD = ioEventFD
    }

    private enum CodingKeys: String, CodingKey { case path, readOnly, serial, direct, ioEventFD }

    /// Snapshots from before `direct` and `ioeventfd` lack them: the defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(path: try c.decode(String.self, forKey: .path), readOnly: try c.decode(Bool.self, forKey: .readOnly),
                  serial: try c.decode(String.self, forKey: .serial),
                  direct: try c.decodeIfPresent(Bool.self, forKey: .direct) ?? false,
                  ioEventFD: try c.decodeIfPresent(Bool.self, forKey: .ioEventFD) ?? true)
    }

    /// The longest serial VIRTIO_BLK_T_GET_ID can carry.
    public static let maximumSerialBytes = 20

    /// Parses the option's value. Errors are one line naming the option.
    public static func parse(_ text: String) throws(DeviceOptionError) -> DiskConfiguration {
        var path: String?, readOnly = false, serial = "", direct = false, ioEventFD = true
        try DeviceOption.forEachField(text, option: "--disk", keys: ["path", "readonly", "serial", "direct", "ioeventfd"],
                                      syntax: "path=FILE[,readonly=on][,serial=ID][,direct=on][,ioeventfd=off]") { key, value, refuse throws(DeviceOptionError) in
            switch key {
            case "path":
                guard !value.isEmpty else { throw refuse("path is empty") }
                path = value
            case "readonly": readOnly = try DeviceOption.switchValue(value, key: key, refuse: refuse)
            case "direct": direct = try DeviceOption.switchValue(value, key: key, refuse: refuse)
            case "ioeventfd": ioEventFD = try DeviceOption.switchValue(value, key: key, refuse: refuse)
            default:
                guard value.utf8.count <= maximumSerialBytes, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    throw refuse("serial must be at most \(maximumSerialBytes) printable ASCII characters")
                }
                serial = value
            }
        }
        guard let path else { throw DeviceOptionError("--disk \(text): path=FILE is required") }
        return DiskConfiguration(path: path, readOnly: readOnly, serial: serial, direct: direct, ioEventFD: ioEventFD)
    }
}
