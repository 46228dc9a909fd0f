// VMM: `--vsock cid=N,socket=PATH` in cloud-hypervisor's key=value device
// syntax, parsed into a virtio-vsock device's configuration.

/// The VM's vsock device: its context ID and the host's Unix socket.
public struct VsockConfiguration: Sendable, Equatable, Codable {
    public var cid: UInt64
    public var socket: String

    public init(cid: UInt64, socket: String) {
        self.cid = cid; self.socket = socket
    }

    /// CIDs 0–2 are the hypervisor's, the reserved one and the host's;
    /// 0xFFFFFFFF is VMADDR_CID_ANY.
    public static let cidRange: ClosedRange<UInt64> = 3...0xFFFF_FFFE

    public static func parse(_ text: String) throws(VsockOptionError) -> VsockConfiguration {
        var cid: UInt64?, socket: String?
        var seen: Set<String> = []
        for field in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw VsockOptionError("--vsock \(text): \"\(field)\" is not KEY=VALUE (cid=N,socket=PATH)")
            }
            let key = String(parts[0]), value = String(parts[1])
            guard seen.insert(key).inserted else { throw VsockOptionError("--vsock \(text): \(key) given twice") }
            switch key {
            case "cid":
                guard let number = UInt64(value), cidRange.contains(number) else {
                    throw VsockOptionError("--vsock \(text): cid=\(value) is not a guest CID (3 to 4294967294)")
                }
                cid = number
            case "socket":
                // A Unix socket path has at most 107 bytes; PATH_PORT must fit too.
                guard !value.isEmpty, value.utf8.count <= 96 else {
                    throw VsockOptionError("--vsock \(text): socket must be a path of 1 to 96 bytes")
                }
                socket = value
            default:
                throw VsockOptionError("--vsock \(text): unknown key \(key) (cid, socket)")
            }
        }
        guard let cid else { throw VsockOptionError("--vsock \(text): cid=N is required") }
        guard let socket else { throw VsockOptionError("--vsock \(text): socket=PATH is required") }
        return VsockConfiguration(cid: cid, socket: socket)
    }
}

/// A malformed `--vsock` value (usage error, status 64).
public struct VsockOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
