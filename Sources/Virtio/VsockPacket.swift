// VsockPacket.swift — the virtio-vsock wire format (virtio 1.2 §5.10.6):
// the 44-byte little-endian virtio_vsock_hdr, its operations and flags, and
// the event the event queue carries.

/// struct virtio_vsock_hdr.
public struct VsockHeader: Sendable, Equatable {
    public static let size = 44

    public enum Operation: UInt16, Sendable {
        case request = 1, response = 2, reset = 3, shutdown = 4, readWrite = 5, creditUpdate = 6, creditRequest = 7
    }

    /// VIRTIO_VSOCK_TYPE_STREAM, the only type offered.
    public static let streamType: UInt16 = 1
    /// VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE and _SEND.
    public static let shutdownReceive: UInt32 = 1
    public static let shutdownSend: UInt32 = 2
    public static let shutdownBoth: UInt32 = 3

    public var sourceCID: UInt64 = 0
    public var destinationCID: UInt64 = 0
    public var sourcePort: UInt32 = 0
    public var destinationPort: UInt32 = 0
    public var length: UInt32 = 0
    public var type: UInt16 = VsockHeader.streamType
    public var operation: UInt16 = 0
    public var flags: UInt32 = 0
    public var bufferAllocation: UInt32 = 0
    public var forwardCount: UInt32 = 0

    public init(sourceCID: UInt64 = 0, destinationCID: UInt64 = 0, sourcePort: UInt32 = 0, destinationPort: UInt32 = 0,
                length: UInt32 = 0, type: UInt16 = VsockHeader.streamType, operation: Operation, flags: UInt32 = 0,
                bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.operation = operation.rawValue
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    /// Parses the first 44 bytes (nil when there are fewer).
    public init?(bytes: [UInt8]) {
        guard bytes.count >= Self.size else { return nil }
        func field(_ offset: Int, _ width: Int) -> UInt64 { SplitQueue.little(bytes, offset, width) }
        sourceCID = field(0, 8)
        destinationCID = field(8, 8)
        sourcePort = UInt32(field(16, 4))
        destinationPort = UInt32(field(20, 4))
        length = UInt32(field(24, 4))
        type = UInt16(field(28, 2))
        operation = UInt16(field(30, 2))
        flags = UInt32(field(32, 4))
        bufferAllocation = UInt32(field(36, 4))
        forwardCount = UInt32(field(40, 4))
    }

    public var bytes: [UInt8] {
        func little(_ value: UInt64, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        return little(sourceCID, 8) + little(destinationCID, 8) + little(UInt64(sourcePort), 4) + little(UInt64(destinationPort), 4)
            + little(UInt64(length), 4) + little(UInt64(type), 2) + little(UInt64(operation), 2) + little(UInt64(flags), 4)
            + little(UInt64(bufferAllocation), 4) + little(UInt64(forwardCount), 4)
    }
}
