// KVM: a TAP network device for virtio-net's host side — /dev/net/tun opened
// as an existing or new TAP (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, so each
// frame crosses with the 12-byte virtio_net_hdr_v1), non-blocking, with the
// offloads the kernel accepts. Lives here because it is a C-shim ioctl.
internal import CKVM
import Glibc

public final class TapDevice: @unchecked Sendable {
    /// Offloads as TUNSETOFFLOAD's TUN_F_* bits.
    public struct Offloads: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let checksum = Offloads(rawValue: CKVM_TUN_F_CSUM)
        public static let tso4 = Offloads(rawValue: CKVM_TUN_F_TSO4)
        public static let tso6 = Offloads(rawValue: CKVM_TUN_F_TSO6)
        public static let tsoECN = Offloads(rawValue: CKVM_TUN_F_TSO_ECN)
        public static let ufo = Offloads(rawValue: CKVM_TUN_F_UFO)
    }

    /// Why a TAP could not be opened (one line with the reason).
    public struct OpenError: Error, CustomStringConvertible {
        public let name: String
        public let errno: Int32
        public var description: String {
            let reason = String(cString: strerror(errno))
            switch errno {
            case EPERM, EACCES: return "cannot open TAP \(name): \(reason) (needs CAP_NET_ADMIN, or a TAP owned by this user)"
            case ENOENT: return "cannot open TAP \(name): /dev/net/tun is missing"
            case ENAMETOOLONG: return "cannot open TAP \(name): the name is longer than 15 bytes"
            default: return "cannot open TAP \(name): \(reason)"
            }
        }
    }

    public let fd: CInt
    public let name: String
    /// What the kernel accepted of the offloads asked for.
    public let offloads: Offloads

    /// Opens (or creates) the TAP `name`, asking for `offloads`.
    public init(name: String, offloads: Offloads) throws(OpenError) {
        var accepted: UInt32 = 0
        let result = ckvm_tap_open(name, offloads.rawValue, &accepted)
        guard result >= 0 else { throw OpenError(name: name, errno: -result) }
        fd = result
        self.name = name
        self.offloads = Offloads(rawValue: accepted)
    }

    deinit { close(fd) }

    /// The offloads frames read from the TAP may use (the driver's).
    @discardableResult
    public func setReceiveOffloads(_ offloads: Offloads) -> Bool {
        ckvm_tap_set_offloads(fd, offloads.rawValue) == 0
    }

    /// Writes one frame (header included); false when the TAP would not take it.
    public func write(_ bytes: [UInt8]) -> Bool {
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        return written == bytes.count
    }

    /// The next frame (header included), nil when none waits.
    public func read(maximum: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return Array(buffer.prefix(count))
    }
}
