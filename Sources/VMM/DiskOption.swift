// VMM: `--disk path=FILE[,readonly=on][,serial=ID]` in cloud-hypervisor's
// key=value device syntax, parsed into a virtio-blk disk's configuration,
// and the file checks made before the guest starts.
import Glibc

/// One virtio-blk disk the machine gets.
public struct DiskConfiguration: Sendable, Equatable, Codable {
    public var path: String
    public var readOnly: Bool
    /// What VIRTIO_BLK_T_GET_ID answers (at most 20 bytes).
    public var serial: String

    public init(path: String, readOnly: Bool = false, serial: String = "") {
        self.path = path; self.readOnly = readOnly; self.serial = serial
    }

    /// The longest serial VIRTIO_BLK_T_GET_ID can carry.
    public static let maximumSerialBytes = 20

    /// Parses the option's value. Errors are one line naming the option.
    public static func parse(_ text: String) throws(DeviceOptionError) -> DiskConfiguration {
        var path: String?, readOnly = false, serial = ""
        try DeviceOption.forEachField(text, option: "--disk", keys: ["path", "readonly", "serial"],
                                      syntax: "path=FILE[,readonly=on][,serial=ID]") { key, value, refuse throws(DeviceOptionError) in
            switch key {
            case "path":
                guard !value.isEmpty else { throw refuse("path is empty") }
                path = value
            case "readonly":
                switch value {
                case "on", "true": readOnly = true
                case "off", "false": readOnly = false
                default: throw refuse("readonly=\(value) (on or off)")
                }
            default:
                guard value.utf8.count <= maximumSerialBytes, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    throw refuse("serial must be at most \(maximumSerialBytes) printable ASCII characters")
                }
                serial = value
            }
        }
        guard let path else { throw DeviceOptionError("--disk \(text): path=FILE is required") }
        return DiskConfiguration(path: path, readOnly: readOnly, serial: serial)
    }
}
