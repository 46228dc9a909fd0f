// Migration: the framing of the migration stream (docs/migration-protocol.md).
// Every message is one frame:
//
//   +0       type        u16   MessageKind
//   +2       flags       u16   bit 0 HMAC trailer present, bit 1 more (a state
//                              message continues in the next frame)
//   +4       length      u32   payload bytes, at most maximumPayload
//   +8       sequence    u64   0, 1, 2 ... per direction
//   +16      payload     length bytes
//   +16+n    CRC-64      u64   CRC-64/Jones over bytes 0 ..< 16+n
//   +24+n    HMAC-SHA256 32 bytes over bytes 0 ..< 16+n (only with flag bit 0)
//
// All integers little-endian. A reader checks the header (type, flags,
// length within the limit) before it reads the payload, so a hostile peer
// cannot make it allocate more than the limit.
import Crypto
import Snapshot

/// What a frame carries.
public enum MessageKind: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 1
    case accept = 2
    case refuse = 3
    case pages = 4
    case state = 5
    case complete = 6
    case runningAck = 7
    case abort = 8
    case ready = 9
    case go = 10

    public var description: String {
        switch self {
        case .hello: "hello"
        case .accept: "accept"
        case .refuse: "refuse"
        case .pages: "pages"
        case .state: "state"
        case .complete: "complete"
        case .runningAck: "running-ack"
        case .abort: "abort"
        case .ready: "ready"
        case .go: "go"
        }
    }
}

/// A pre-shared key: the hello and accept of a keyed stream carry an
/// HMAC-SHA256 made with it, every later frame one made with a key derived
/// from it and both sides' nonces, and a receiver with a key accepts no
/// other stream.
public struct MigrationKey: Sendable {
    /// Shorter keys are refused (128 bits).
    public static let minimumBytes = 16
    let symmetricKey: SymmetricKey

    /// The key in a --psk-file: its bytes, less one trailing newline.
    public init(fileContents: [UInt8]) throws(MigrationError) {
        var bytes = fileContents
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count >= Self.minimumBytes else {
            throw .authenticationMismatch("the pre-shared key has \(bytes.count) bytes; at least \(Self.minimumBytes) are needed")
        }
        symmetricKey = SymmetricKey(data: bytes)
    }

    init(symmetricKey: SymmetricKey) { self.symmetricKey = symmetricKey }

    /// The keys of one connection, one per direction: HKDF-SHA256 with this
    /// key as input, the sender's nonce then the receiver's as salt, and the
    /// direction as info. A frame recorded from another connection (other
    /// nonces) or reflected back to its sender (the other direction) fails
    /// its HMAC.
    public func sessionKeys(senderNonce: [UInt8], receiverNonce: [UInt8]) -> (senderToReceiver: MigrationKey, receiverToSender: MigrationKey) {
        func derive(_ direction: String) -> MigrationKey {
            MigrationKey(symmetricKey: HKDF<SHA256>.deriveKey(inputKeyMaterial: symmetricKey, salt: senderNonce + receiverNonce,
                                                              info: Array("deflect migration v2 \(direction)".utf8), outputByteCount: 32))
        }
        return (derive("sender to receiver"), derive("receiver to sender"))
    }
}

/// The 32 random bytes each side puts into a connection (the sender's in
/// its hello, the receiver's as the accept's payload): its keys derive from
/// both, so no frame of another connection verifies in this one.
public enum SessionNonce {
    public static let size = 32

    public static func random() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<size).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }
}

/// One decoded frame.
public struct MigrationFrame: Sendable, Equatable {
    public var kind: MessageKind
    /// More frames of this state message follow.
    public var more: Bool
    public var sequence: UInt64
    public var payload: [UInt8]
    /// The frame carried an HMAC that verified.
    public var authenticated: Bool

    public init(kind: MessageKind, more: Bool = false, sequence: UInt64, payload: [UInt8], authenticated: Bool = false) {
        (self.kind, self.more, self.sequence, self.payload, self.authenticated) = (kind, more, sequence, payload, authenticated)
    }
}

/// Encodes and decodes frames; with a key, every frame carries an HMAC-SHA256.
public struct FrameCodec: Sendable {
    public static let headerSize = 16
    public static let checksumSize = 8
    public static let macSize = 32
    /// Largest payload of one frame (16 MiB): the receiver never buffers more
    /// than this for one frame.
    public static let defaultMaximumPayload = 16 << 20
    static let flagAuthenticated: UInt16 = 1 << 0
    static let flagMore: UInt16 = 1 << 1

    public let key: MigrationKey?
    public let maximumPayload: Int

    public init(key: MigrationKey?, maximumPayload: Int = Self.defaultMaximumPayload) {
        self.key = key
        self.maximumPayload = maximumPayload
    }

    /// The frame's bytes: header, payload, CRC-64, HMAC when keyed.
    public func encode(_ kind: MessageKind, payload: [UInt8], sequence: UInt64, more: Bool = false,
                       authenticate: Bool = true) throws(MigrationError) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(Self.headerSize + payload.count + Self.checksumSize + Self.macSize)
        frame += repeatElement(0, count: Self.headerSize)
        frame += payload
        try seal(&frame, kind, sequence: sequence, more: more, authenticate: authenticate)
        return frame
    }

    /// Completes a frame built in place (a reused buffer, no payload copy):
    /// `frame` holds `headerSize` bytes to overwrite, then the payload; the
    /// header is written, the CRC-64 and the HMAC when keyed appended.
    public func seal(_ frame: inout [UInt8], _ kind: MessageKind, sequence: UInt64, more: Bool = false,
                     authenticate: Bool = true) throws(MigrationError) {
        let payloadCount = frame.count - Self.headerSize
        guard payloadCount >= 0 else { throw .malformed("a frame is at least its \(Self.headerSize)-byte header") }
        guard payloadCount <= maximumPayload else {
            throw .frameTooLarge(length: UInt64(payloadCount), limit: maximumPayload)
        }
        let keyed = authenticate ? key?.symmetricKey : nil
        var header = ByteWriter()
        header.put(kind.rawValue)
        header.put((keyed == nil ? 0 : Self.flagAuthenticated) | (more ? Self.flagMore : 0))
        header.put(UInt32(payloadCount))
        header.put(sequence)
        frame.replaceSubrange(0..<Self.headerSize, with: header.bytes)
        let signed = frame.count
        ByteWriter.put(CRC64.checksum(frame[0..<signed]), into: &frame)
        if let keyed {
            frame += HMAC<SHA256>.authenticationCode(for: frame[0..<signed], using: keyed)
        }
    }

    /// The header's fields, checked: how many bytes follow it.
    public struct Header: Sendable, Equatable {
        public var kind: MessageKind
        public var flags: UInt16
        public var length: Int
        public var sequence: UInt64

        var authenticated: Bool { flags & FrameCodec.flagAuthenticated != 0 }
        /// Payload, CRC and HMAC bytes after the header.
        public var remainingBytes: Int { length + FrameCodec.checksumSize + (authenticated ? FrameCodec.macSize : 0) }
    }

    public func decodeHeader(_ bytes: [UInt8]) throws(MigrationError) -> Header {
        guard bytes.count == Self.headerSize else { throw .malformed("a frame header is \(Self.headerSize) bytes") }
        var reader = ByteReader(bytes[...])
        let type: UInt16 = try reader.get("frame type")
        let flags: UInt16 = try reader.get("frame flags")
        let length: UInt32 = try reader.get("frame length")
        let sequence: UInt64 = try reader.get("frame sequence")
        guard let kind = MessageKind(rawValue: type) else { throw .unknownFrameType(type) }
        guard flags & ~(Self.flagAuthenticated | Self.flagMore) == 0 else { throw .unknownFrameFlags(flags) }
        guard Int(length) <= maximumPayload else { throw .frameTooLarge(length: UInt64(length), limit: maximumPayload) }
        return Header(kind: kind, flags: flags, length: Int(length), sequence: sequence)
    }

    /// The frame made of `header` (its raw bytes) and the bytes after it:
    /// CRC checked, then the HMAC (a keyed side refuses unauthenticated
    /// frames except a refusal or an abort, whose reason is still shown).
    public func decodeBody(header: Header, headerBytes: [UInt8], rest: [UInt8]) throws(MigrationError) -> MigrationFrame {
        guard rest.count == header.remainingBytes else { throw .connectionClosed("a \(header.kind) frame") }
        let signed = headerBytes + rest[0..<header.length]
        var reader = ByteReader(rest[header.length...])
        let crc: UInt64 = try reader.get("frame CRC")
        guard crc == CRC64.checksum(signed) else { throw .checksumMismatch(sequence: header.sequence) }
        let payload = Array(rest[0..<header.length])
        let frame = MigrationFrame(kind: header.kind, more: header.flags & Self.flagMore != 0, sequence: header.sequence,
                                   payload: payload, authenticated: header.authenticated)
        switch (key, header.authenticated) {
        case (nil, false):
            return frame
        case (nil, true):
            if header.kind == .refuse || header.kind == .abort { return frame }
            throw .authenticationMismatch("the sender authenticates its frames with a pre-shared key but this side has none (--psk-file)")
        case (_?, false):
            if header.kind == .refuse || header.kind == .abort { return frame }
            throw .authenticationMismatch("this side needs every frame authenticated (--psk-file) but the peer sends them without a key")
        case let (key?, true):
            let mac = Array(rest[(header.length + Self.checksumSize)...])
            guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: signed, using: key.symmetricKey) else {
                if header.kind == .refuse || header.kind == .abort {
                    return MigrationFrame(kind: header.kind, more: frame.more, sequence: frame.sequence, payload: payload)
                }
                throw .authenticationFailed(sequence: header.sequence)
            }
            return frame
        }
    }

    /// Decodes one whole frame from `bytes` (tests, and readers that have it all).
    public func decode(_ bytes: [UInt8]) throws(MigrationError) -> MigrationFrame {
        guard bytes.count >= Self.headerSize else { throw .connectionClosed("a frame header") }
        let headerBytes = Array(bytes[0..<Self.headerSize])
        let header = try decodeHeader(headerBytes)
        let rest = Array(bytes[Self.headerSize...])
        guard rest.count >= header.remainingBytes else { throw .connectionClosed("a \(header.kind) frame") }
        guard rest.count == header.remainingBytes else { throw .malformed("\(rest.count - header.remainingBytes) bytes after the frame") }
        return try decodeBody(header: header, headerBytes: headerBytes, rest: rest)
    }
}
