// NetBackend.swift — where a virtio-net device's Ethernet frames go and come
// from: a protocol (send a frame, hand over the next received one, the MAC
// address, the offloads the host side takes), the MAC address type the
// `mac=` option parses, and an in-memory back end for tests. The VMM's TAP
// back end (/dev/net/tun with IFF_VNET_HDR, TUNSETVNETHDRSZ 12,
// TUNSETOFFLOAD) implements the same protocol.

/// A 48-bit Ethernet address.
public struct MACAddress: Sendable, Equatable, Codable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Six bytes; nil for any other count.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// "52:54:00:12:34:56" (six two-digit hex bytes, ':' or '-' between).
    public init?(_ text: String) {
        let parts = text.split(separator: text.contains("-") ? "-" : ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isHexDigit) }) else { return nil }
        let values = parts.compactMap { UInt8($0, radix: 16) }
        guard values.count == 6 else { return nil }
        bytes = values
    }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }

    /// Multicast addresses cannot be a station's own.
    public var isMulticast: Bool { bytes[0] & 1 != 0 }
}

/// Offloads the host side of the link takes (a TAP that accepted
/// TUNSETOFFLOAD with the matching TUN_F_* bits). Each is offered to the
/// driver in both directions; TSO, ECN and UFO only together with checksum
/// offload, as the virtio feature dependencies require.
public struct NetOffloads: OptionSet, Sendable, Codable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let checksum = NetOffloads(rawValue: 1 << 0)
    public static let tso4 = NetOffloads(rawValue: 1 << 1)
    public static let tso6 = NetOffloads(rawValue: 1 << 2)
    public static let ecn = NetOffloads(rawValue: 1 << 3)
    public static let ufo = NetOffloads(rawValue: 1 << 4)
    public static let all: NetOffloads = [.checksum, .tso4, .tso6, .ecn, .ufo]
}

/// One frame as it crosses the back end: `header` is the 12-byte
/// virtio_net_hdr_v1 when the back end takes offloads, else empty.
public struct NetFrame: Sendable, Equatable {
    public var header: [UInt8]
    public var frame: [UInt8]

    public init(header: [UInt8] = [], frame: [UInt8]) {
        self.header = header
        self.frame = frame
    }
}

/// The host side of a virtio-net link.
public protocol NetBackend: AnyObject {
    var macAddress: MACAddress { get }
    /// What the host side takes; empty means frames cross without a header.
    var offloads: NetOffloads { get }
    /// Sends one frame (with its header when `offloads` is not empty); false
    /// when the back end could not take it (the frame is dropped and counted).
    func send(frame: [UInt8], header: [UInt8]) -> Bool
    /// The next frame waiting for the guest, nil when none is. The device
    /// pulls only when it has somewhere to put it or drops it.
    func receive() -> NetFrame?
    /// The offloads the driver accepted for frames it receives: the back end
    /// must not hand over frames that need others (TUNSETOFFLOAD).
    func enableReceiveOffloads(_ offloads: NetOffloads)
}

/// A link held in memory: sent frames are recorded; frames for the guest
/// wait in a bounded queue that drops its oldest when full.
public final class InMemoryNetBackend: NetBackend {
    public let macAddress: MACAddress
    public let offloads: NetOffloads
    public let capacity: Int
    public private(set) var sent: [NetFrame] = []
    public private(set) var receiveOffloads: NetOffloads = []
    /// Frames the full queue pushed out.
    public private(set) var overflowDrops = 0
    /// Makes every later send fail (a full TAP).
    public var refusesSends = false
    private var waiting: [NetFrame] = []
    private var firstWaiting = 0

    public init(macAddress: MACAddress, offloads: NetOffloads = [], capacity: Int = 256) {
        self.macAddress = macAddress
        self.offloads = offloads
        self.capacity = max(1, capacity)
    }

    /// Frames waiting for the guest.
    public var waitingCount: Int { waiting.count - firstWaiting }

    /// A frame arrives from the host side.
    public func deliver(_ frame: NetFrame) {
        if waitingCount >= capacity {
            firstWaiting += 1
            overflowDrops += 1
        }
        waiting.append(frame)
        compact()
    }

    public func send(frame: [UInt8], header: [UInt8]) -> Bool {
        guard !refusesSends else { return false }
        sent.append(NetFrame(header: header, frame: frame))
        return true
    }

    public func receive() -> NetFrame? {
        guard firstWaiting < waiting.count else { return nil }
        let frame = waiting[firstWaiting]
        firstWaiting += 1
        compact()
        return frame
    }

    public func enableReceiveOffloads(_ offloads: NetOffloads) { receiveOffloads = offloads }

    /// Drops consumed slots once they are half the array.
    private func compact() {
        guard firstWaiting > 0, firstWaiting * 2 >= waiting.count else { return }
        waiting.removeFirst(firstWaiting)
        firstWaiting = 0
    }
}
