// Migration: one side of a migration stream: frames over a byte stream with
// the sequence numbers of both directions, the session keys that replace the
// pre-shared key after the handshake, and the message exchanges both sides
// share (a state message in frames, a refusal or abort read as an error).
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
    /// Frames this side writes and reads: with the pre-shared key until the
    /// handshake is done, then with the connection's keys (`startSession`).
    public private(set) var sendCodec: FrameCodec
    public private(set) var receiveCodec: FrameCodec
    private var sendSequence: UInt64 = 0
    private var receiveSequence: UInt64 = 0
    /// Payload bytes sent so far (progress, bandwidth).
    public private(set) var bytesSent: UInt64 = 0
    /// Memory messages are built here, frame after frame, without reallocating.
    private var frameBuffer: [UInt8] = []

    public init(stream: any MigrationByteStream, key: MigrationKey?, maximumPayload: Int = FrameCodec.defaultMaximumPayload) {
        self.stream = stream
        sendCodec = FrameCodec(key: key, maximumPayload: maximumPayload)
        receiveCodec = sendCodec
    }

    public var authenticated: Bool { sendCodec.key != nil }

    /// From now on, frames in each direction are authenticated with that
    /// direction's key derived from the pre-shared key and both nonces
    /// (nothing changes without a key). `isSender`: this side sent the hello.
    public func startSession(senderNonce: [UInt8], receiverNonce: [UInt8], isSender: Bool) {
        guard let key = sendCodec.key else { return }
        let keys = key.sessionKeys(senderNonce: senderNonce, receiverNonce: receiverNonce)
        sendCodec = FrameCodec(key: isSender ? keys.senderToReceiver : keys.receiverToSender, maximumPayload: sendCodec.maximumPayload)
        receiveCodec = FrameCodec(key: isSender ? keys.receiverToSender : keys.senderToReceiver, maximumPayload: receiveCodec.maximumPayload)
    }

    /// The sender's handshake: the hello, the receiver's accept (its
    /// nonce), then the session keys.
    public func handshake(_ hello: MigrationHello) throws(MigrationError) {
        try send(.hello, hello.encoded())
        let accept = try expect(.accept, during: "the handshake")
        guard accept.payload.count == SessionNonce.size else {
            throw .malformed("an accept carries a \(SessionNonce.size)-byte nonce, this one \(accept.payload.count) bytes")
        }
        startSession(senderNonce: hello.nonce, receiverNonce: accept.payload, isSender: true)
    }

    /// The receiver's side of the handshake once `hello` is checked: accept
    /// with a fresh nonce, then the session keys.
    public func accept(_ hello: MigrationHello) throws(MigrationError) {
        let nonce = SessionNonce.random()
        try send(.accept, nonce)
        startSession(senderNonce: hello.nonce, receiverNonce: nonce, isSender: false)
    }

    /// Sends one frame. `authenticate: false` sends a refusal a peer with
    /// another key can still read.
    public func send(_ kind: MessageKind, _ payload: [UInt8] = [], more: Bool = false,
                     authenticate: Bool = true) throws(MigrationError) {
        let bytes = try sendCodec.encode(kind, payload: payload, sequence: sendSequence, more: more, authenticate: authenticate)
        try stream.write(bytes)
        sendSequence += 1
        bytesSent += UInt64(bytes.count)
    }

    /// Sends a memory message built in place in a reused buffer: the pages
    /// go from `copy` into the frame once, and the CRC and HMAC are computed
    /// there (no payload array, no second copy). `ranges` are the runs in
    /// order; `copy(index, &buffer)` appends run `index`'s page bytes.
    public func sendPages(_ ranges: [PageRun], copy: (Int, inout [UInt8]) throws -> Void) throws {
        frameBuffer.removeAll(keepingCapacity: true)
        frameBuffer.reserveCapacity(FrameCodec.headerSize + PagesMessage.payloadSize(ranges) + FrameCodec.checksumSize + FrameCodec.macSize)
        frameBuffer += repeatElement(0, count: FrameCodec.headerSize)
        ByteWriter.put(UInt32(ranges.count), into: &frameBuffer)
        for (index, range) in ranges.enumerated() {
            ByteWriter.put(range.guestPhysicalAddress, into: &frameBuffer)
            ByteWriter.put(range.pageCount, into: &frameBuffer)
            let start = frameBuffer.count
            try copy(index, &frameBuffer)
            guard frameBuffer.count - start == Int(range.pageCount) * Int(PageRange.pageSize) else {
                throw MigrationError.malformed("page run \(index) gave \(frameBuffer.count - start) bytes for \(range.pageCount) pages")
            }
        }
        try sendCodec.seal(&frameBuffer, .pages, sequence: sendSequence)
        try stream.write(frameBuffer)
        sendSequence += 1
        bytesSent += UInt64(frameBuffer.count)
    }

    /// The next frame, checked (CRC, HMAC, sequence number).
    public func receive(during what: String) throws(MigrationError) -> MigrationFrame {
        let headerBytes = try stream.read(exactly: FrameCodec.headerSize, during: what)
        let header = try receiveCodec.decodeHeader(headerBytes)
        let rest = try stream.read(exactly: header.remainingBytes, during: what)
        let frame = try receiveCodec.decodeBody(header: header, headerBytes: headerBytes, rest: rest)
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
            let end = min(bytes.count, offset + sendCodec.maximumPayload)
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
