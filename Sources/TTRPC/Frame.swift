// TTRPC: the ttrpc frame (containerd/ttrpc channel.go): a 10-byte header —
// payload length (uint32 big-endian), stream id (uint32 big-endian), message
// type (1 request, 2 response), flags — then the payload, at most 4 MiB.

/// The kind of message a frame carries.
public enum TTRPCMessageType: UInt8, Sendable {
    case request = 1
    case response = 2
}

/// Why bytes are not a frame Deflect accepts.
public enum TTRPCFrameError: Error, Equatable, CustomStringConvertible, Sendable {
    case truncated(have: Int, need: Int)
    case oversize(length: Int)
    case unknownMessageType(UInt8)

    public var description: String {
        switch self {
        case .truncated(let have, let need): return "truncated ttrpc frame: \(have) of \(need) bytes"
        case .oversize(let length): return "ttrpc frame of \(length) bytes exceeds the \(TTRPCFrame.maximumPayload)-byte limit"
        case .unknownMessageType(let type): return "unknown ttrpc message type \(type)"
        }
    }
}

/// One ttrpc frame.
public struct TTRPCFrame: Equatable, Sendable {
    public static let headerSize = 10
    /// ttrpc's messageLengthMax: 4 MiB.
    public static let maximumPayload = 4 << 20

    public var streamID: UInt32
    public var type: TTRPCMessageType
    public var flags: UInt8
    public var payload: [UInt8]

    public init(streamID: UInt32, type: TTRPCMessageType, flags: UInt8 = 0, payload: [UInt8]) {
        self.streamID = streamID
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    /// The header's fields, once 10 bytes have arrived; the payload follows.
    public struct Header: Equatable, Sendable {
        public var length: Int
        public var streamID: UInt32
        public var type: TTRPCMessageType
        public var flags: UInt8
    }

    /// Decodes a header; refuses lengths over the limit before any payload is read.
    public static func decodeHeader(_ bytes: [UInt8]) throws(TTRPCFrameError) -> Header {
        guard bytes.count >= headerSize else { throw .truncated(have: bytes.count, need: headerSize) }
        let length = Int(bigEndian32(bytes, at: 0))
        guard length <= maximumPayload else { throw .oversize(length: length) }
        guard let type = TTRPCMessageType(rawValue: bytes[8]) else { throw .unknownMessageType(bytes[8]) }
        return Header(length: length, streamID: bigEndian32(bytes, at: 4), type: type, flags: bytes[9])
    }

    /// Decodes one whole frame from exactly its bytes.
    public static func decode(_ bytes: [UInt8]) throws(TTRPCFrameError) -> TTRPCFrame {
        let header = try decodeHeader(bytes)
        let need = headerSize + header.length
        guard bytes.count >= need else { throw .truncated(have: bytes.count, need: need) }
        return TTRPCFrame(streamID: header.streamID, type: header.type, flags: header.flags,
                          payload: Array(bytes[headerSize..<need]))
    }

    /// The frame's bytes on the wire.
    public func encoded() throws(TTRPCFrameError) -> [UInt8] {
        guard payload.count <= Self.maximumPayload else { throw .oversize(length: payload.count) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerSize + payload.count)
        appendBigEndian32(UInt32(payload.count), to: &bytes)
        appendBigEndian32(streamID, to: &bytes)
        bytes.append(type.rawValue)
        bytes.append(flags)
        bytes.append(contentsOf: payload)
        return bytes
    }

    private static func bigEndian32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    private func appendBigEndian32(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}
