// Migration: one side of a migration stream: frames over a byte stream with
// the sequence numbers of both directions, and the message exchanges both
// sides share (a state message in frames, a refusal or abort read as an error).
/// A reliable byte stream (a socket): blocking, with a read timeout.
public protocol MigrationByteStream: AnyObject {
    func write(_ bytes: [UInt8]) throws(MigrationError)
    /// Exactly `count` bytes; `.connectionClosed` if the stream ends first,
    /// `.timedOut` if the peer stays silent longer than the timeout.
    func read(exactly count: Int, during what: String) throws(MigrationError) -> [UInt8]
}

/// Frames in both directions over one stream. Used by one thread at a time.
public final class MigrationConnection {
    public let stream: any MigrationByteStream
    public let codec: FrameCodec
    private var sendSequence: UInt64 = 0
    private var receiveSequence: UInt64 = 0
    /// Payload bytes sent so far (progress, bandwidth).
    public private(set) var bytesSent: UInt64 = 0

    public init(stream: any MigrationByteStream, key: MigrationKey?, maximumPayload: Int = FrameCodec.defaultMaximumPayload) {
        self.stream = stream
        codec = FrameCodec(key: key, maximumPayload: maximumPayload)
    }

    public var authenticated: Bool { codec.key != nil }

    /// Sends one frame. `authenticate: false` sends a refusal a peer with
    /// another key can still read.
    public func send(_ kind: MessageKind, _ payload: [UInt8] = [], more: Bool = false,
                     authenticate: Bool = true) throws(MigrationError) {
        let bytes = try codec.encode(kind, payload: payload, sequence: sendSequence, more: more, authenticate: authenticate)
        try stream.write(bytes)
        sendSequence += 1
        bytesSent += UInt64(bytes.count)
    }

    /// The next frame, checked (CRC, HMAC, sequence number).
    public func receive(during what: String) throws(MigrationError) -> MigrationFrame {
        let headerBytes = try stream.read(exactly: FrameCodec.headerSize, during: what)
        let header = try codec.decodeHeader(headerBytes)
        let rest = try stream.read(exactly: header.remainingBytes, during: what)
        let frame = try codec.decodeBody(header: header, headerBytes: headerBytes, rest: rest)
        guard frame.sequence == receiveSequence else {
            throw .sequenceMismatch(expected: receiveSequence, received: frame.sequence)
        }
        receiveSequence += 1
        return frame
    }

    /// The next frame, which must be `kind`: a refusal or abort from the
    /// peer becomes the error that carries its reason.
    public func expect(_ kind: MessageKind, during what: String) throws(MigrationError) -> MigrationFrame {
        let frame = try receive(during: what)
        return try Self.checked(frame, is: [kind])
    }

    public static func checked(_ frame: MigrationFrame, is kinds: [MessageKind]) throws(MigrationError) -> MigrationFrame {
        if kinds.contains(frame.kind) { return frame }
        switch frame.kind {
        case .refuse: throw .refused(ReasonText.decode(frame.payload))
        case .abort: throw .aborted(ReasonText.decode(frame.payload))
        default: throw .unexpectedMessage(expected: kinds.map(\.description).joined(separator: " or "), received: frame.kind.description)
        }
    }

    /// Sends a state message in as many frames as the payload limit needs.
    public func sendState(_ bytes: [UInt8]) throws(MigrationError) {
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + codec.maximumPayload)
            try send(.state, Array(bytes[offset..<end]), more: end < bytes.count)
            offset = end
        } while offset < bytes.count
    }

    /// Collects a state message that began with `first`, refusing more than
    /// `limit` bytes in all.
    public func receiveState(startingWith first: MigrationFrame, limit: Int) throws(MigrationError) -> [UInt8] {
        var frame = first
        var bytes: [UInt8] = []
        while true {
            guard bytes.count + frame.payload.count <= limit else {
                throw .malformed("the state is larger than the limit of \(limit) bytes")
            }
            bytes += frame.payload
            guard frame.more else { return bytes }
            frame = try expect(.state, during: "the state")
        }
    }

    /// Tells the peer why this side gives up; errors are ignored (the
    /// connection may be what failed).
    public func abort(_ reason: String) {
        try? send(.abort, ReasonText.encode(reason), authenticate: true)
    }
}
