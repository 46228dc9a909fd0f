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
    public static func parse(_ text: String) throws(DiskOptionError) -> DiskConfiguration {
        var path: String?, readOnly = false, serial = ""
        var seen: Set<String> = []
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw DiskOptionError("--disk \(text): \"\(field)\" is not KEY=VALUE (path=FILE[,readonly=on][,serial=ID])")
            }
            let key = String(parts[0]), value = String(parts[1])
            guard seen.insert(key).inserted else { throw DiskOptionError("--disk \(text): \(key) given twice") }
            switch key {
            case "path":
                guard !value.isEmpty else { throw DiskOptionError("--disk \(text): path is empty") }
                path = value
            case "readonly":
                switch value {
                case "on", "true": readOnly = true
                case "off", "false": readOnly = false
                default: throw DiskOptionError("--disk \(text): readonly=\(value) (on or off)")
                }
            case "serial":
                guard value.utf8.count <= maximumSerialBytes, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
                    throw DiskOptionError("--disk \(text): serial must be at most \(maximumSerialBytes) printable ASCII characters")
                }
                serial = value
            default:
                throw DiskOptionError("--disk \(text): unknown key \(key) (path, readonly, serial)")
            }
        }
        guard let path else { throw DiskOptionError("--disk \(text): path=FILE is required") }
        return DiskConfiguration(path: path, readOnly: readOnly, serial: serial)
    }
}

/// A malformed `--disk` value (usage error, status 64).
public struct DiskOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
