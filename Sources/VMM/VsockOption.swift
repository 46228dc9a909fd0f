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

    public static func parse(_ text: String) throws(DeviceOptionError) -> VsockConfiguration {
        var cid: UInt64?, socket: String?
        try DeviceOption.forEachField(text, option: "--vsock", keys: ["cid", "socket"],
                                      syntax: "cid=N,socket=PATH") { key, value, refuse throws(DeviceOptionError) in
            if key == "cid" {
                guard let number = UInt64(value), cidRange.contains(number) else {
                    throw refuse("cid=\(value) is not a guest CID (3 to 4294967294)")
                }
                cid = number
            } else {
                // A Unix socket path has at most 107 bytes; PATH_PORT must fit too.
                guard !value.isEmpty, value.utf8.count <= 96 else { throw refuse("socket must be a path of 1 to 96 bytes") }
                socket = value
            }
        }
        guard let cid else { throw DeviceOptionError("--vsock \(text): cid=N is required") }
        guard let socket else { throw DeviceOptionError("--vsock \(text): socket=PATH is required") }
        return VsockConfiguration(cid: cid, socket: socket)
    }
}
