// MigrationTests: the frame format byte for byte (golden frames computed
// independently: Python's struct, CRC-64/Jones and hmac), and every way a
// frame can be wrong: a flipped bit, a cut, an oversized length, an unknown
// type or flag, a wrong key, a frame out of sequence.
import Foundation
import Migration
import Testing

/// Bytes to hex, for readable golden comparisons.
func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

func bytes(hex text: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        out.append(UInt8(text[index..<next], radix: 16) ?? 0)
        index = next
    }
    return out
}

let testKey = try! MigrationKey(fileContents: Array("0123456789abcdef0123456789abcdef\n".utf8))

@Suite("Migration frames")
struct FramingTests {
    @Test func aRefusalFrameIsByteForByteTheDocumentedLayout() throws {
        let frame = try FrameCodec(key: nil).encode(.refuse, payload: Array("no".utf8), sequence: 1)
        #expect(hex(frame) == "030000000200000001000000000000006e6f949c4753297015e6")
        let decoded = try FrameCodec(key: nil).decode(frame)
        #expect(decoded == MigrationFrame(kind: .refuse, sequence: 1, payload: Array("no".utf8)))
    }

    @Test func anAuthenticatedFrameCarriesHMACSHA256OverHeaderAndPayload() throws {
        let frame = try FrameCodec(key: testKey).encode(.runningAck, payload: [], sequence: 5)
        #expect(hex(frame) == "070001000000000005000000000000007faf82f0b78675d869e279dd7b9dc15abf8ce8a0621c496ca1336efaad5dc80a88c6a24cf1316e8e")
        let decoded = try FrameCodec(key: testKey).decode(frame)
        #expect(decoded.authenticated && decoded.kind == .runningAck && decoded.sequence == 5)
    }

    /// The commit's two messages (protocol version 2): golden bytes from
    /// Python's struct and a bit-wise CRC-64/Jones.
    @Test func readyAndGoAreByteForByteTheDocumentedLayout() throws {
        let ready = try FrameCodec(key: nil).encode(.ready, payload: [], sequence: 2)
        #expect(hex(ready) == "09000000000000000200000000000000be591f935798869c")
        let go = try FrameCodec(key: nil).encode(.go, payload: [], sequence: 7)
        #expect(hex(go) == "0a000000000000000700000000000000f57abcd7c17cce05")
        #expect(try FrameCodec(key: nil).decode(go) == MigrationFrame(kind: .go, sequence: 7, payload: []))
        #expect(MessageKind.ready.description == "ready" && MessageKind.go.description == "go")
    }

    @Test func everyFlippedBitIsRefused() throws {
        for codec in [FrameCodec(key: nil), FrameCodec(key: testKey)] {
            let frame = try codec.encode(.pages, payload: Array(0..<40), sequence: 9)
            for bit in 0..<(frame.count * 8) {
                var damaged = frame
                damaged[bit / 8] ^= 1 << UInt8(bit % 8)
                #expect(throws: MigrationError.self) { try codec.decode(damaged) }
            }
        }
    }

    @Test func aPayloadBitFlipIsAChecksumMismatch() throws {
        var frame = try FrameCodec(key: nil).encode(.state, payload: Array(repeating: 7, count: 100), sequence: 3)
        frame[FrameCodec.headerSize + 50] ^= 0x10
        #expect(throws: MigrationError.checksumMismatch(sequence: 3)) { try FrameCodec(key: nil).decode(frame) }
    }

    @Test func aTruncatedFrameIsRefusedAtEveryLength() throws {
        let frame = try FrameCodec(key: testKey).encode(.state, payload: Array(repeating: 1, count: 64), sequence: 0)
        for length in 0..<frame.count {
            #expect(throws: MigrationError.self) { try FrameCodec(key: testKey).decode(Array(frame[0..<length])) }
        }
    }

    @Test func anOversizedLengthIsRefusedFromTheHeaderAlone() throws {
        let codec = FrameCodec(key: nil, maximumPayload: 1024)
        var header = try codec.encode(.pages, payload: [], sequence: 0)
        header[4...7] = [0xFF, 0xFF, 0xFF, 0xFF][...]
        #expect(throws: MigrationError.frameTooLarge(length: 0xFFFF_FFFF, limit: 1024)) {
            try codec.decodeHeader(Array(header[0..<FrameCodec.headerSize]))
        }
        #expect(throws: MigrationError.frameTooLarge(length: 1025, limit: 1024)) {
            try codec.encode(.pages, payload: Array(repeating: 0, count: 1025), sequence: 0)
        }
    }

    @Test func aShortKeyIsRefused() {
        #expect(throws: MigrationError.self) { try MigrationKey(fileContents: Array("short key\n".utf8)) }
    }

    @Test func unknownTypesAndFlagsAreRefused() throws {
        let codec = FrameCodec(key: nil)
        var frame = try codec.encode(.accept, payload: [], sequence: 0)
        frame[0] = 0x42
        #expect(throws: MigrationError.unknownFrameType(0x42)) { try codec.decode(frame) }
        frame = try codec.encode(.accept, payload: [], sequence: 0)
        frame[2] = 0x80
        #expect(throws: MigrationError.unknownFrameFlags(0x80)) { try codec.decode(frame) }
    }

    @Test func aWrongKeyFailsAuthenticationAndAMissingKeyIsAMismatch() throws {
        let other = try MigrationKey(fileContents: Array("another key, 32 bytes long......".utf8))
        let frame = try FrameCodec(key: testKey).encode(.hello, payload: [1, 2, 3], sequence: 0)
        #expect(throws: MigrationError.authenticationFailed(sequence: 0)) { try FrameCodec(key: other).decode(frame) }
        #expect(throws: MigrationError.self) { try FrameCodec(key: nil).decode(frame) }
        let plain = try FrameCodec(key: nil).encode(.hello, payload: [1, 2, 3], sequence: 0)
        #expect(throws: MigrationError.self) { try FrameCodec(key: testKey).decode(plain) }
        // A refusal is still read (its reason shown) whatever the keys.
        let refusal = try FrameCodec(key: other).encode(.refuse, payload: Array("wrong key".utf8), sequence: 0)
        #expect(try FrameCodec(key: testKey).decode(refusal).payload == Array("wrong key".utf8))
    }
}

/// An in-memory byte stream: what one side wrote, the other reads.
final class MemoryStream: MigrationByteStream {
    var written: [UInt8] = []
    var incoming: [UInt8]

    init(incoming: [UInt8] = []) { self.incoming = incoming }

    func write(_ bytes: [UInt8]) throws(MigrationError) { written += bytes }

    func read(exactly count: Int, during what: String) throws(MigrationError) -> [UInt8] {
        guard incoming.count >= count else { throw .connectionClosed(what) }
        defer { incoming.removeFirst(count) }
        return Array(incoming.prefix(count))
    }
}

@Suite("Migration connection")
struct ConnectionTests {
    @Test func framesArriveInSequenceAndAStateSpansFrames() throws {
        let sender = MigrationConnection(stream: MemoryStream(), key: testKey, maximumPayload: 100)
        try sender.send(.hello, [1])
        let state = (0..<250).map { UInt8(truncatingIfNeeded: $0) }
        try sender.sendState(state)
        try sender.send(.complete)
        let wire = (sender.stream as? MemoryStream)?.written ?? []
        let receiver = MigrationConnection(stream: MemoryStream(incoming: wire), key: testKey, maximumPayload: 100)
        #expect(try receiver.expect(.hello, during: "test").payload == [1])
        let first = try receiver.expect(.state, during: "test")
        #expect(first.more)
        #expect(try receiver.receiveState(startingWith: first, limit: 1000) == state)
        _ = try receiver.expect(.complete, during: "test")
        #expect(throws: MigrationError.connectionClosed("test")) { try receiver.receive(during: "test") }
    }

    /// A memory message built in place (`sendPages`: one copy into a reused
    /// buffer, CRC and HMAC over it) is byte for byte the frame of the
    /// payload-array path (`PagesMessage.encode` + `encode`), over eight
    /// messages of two runs each. (How much faster it is was measured in a
    /// release build, not here: timing a debug build in a unit test took
    /// 77 s of the suite and asserted nothing.)
    @Test func pagesBuiltInPlaceAreTheSameFramesWithFewerCopies() throws {
        let memory = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let pagesPerMessage = 1024
        let messages = memory.count / (pagesPerMessage * 4096)
        func runs(_ message: Int) -> [PageRun] {
            // Two runs per message: its first page alone, then the rest.
            let base = UInt64(message * pagesPerMessage * 4096)
            return [PageRun(guestPhysicalAddress: base, pageCount: 1),
                    PageRun(guestPhysicalAddress: base + 4096, pageCount: UInt32(pagesPerMessage - 1))]
        }
        for key in [nil, testKey] {
            let arrays = MigrationConnection(stream: MemoryStream(), key: key)
            for message in 0..<messages {
                let ranges = runs(message).map { run in
                    let start = Int(run.guestPhysicalAddress)
                    let bytes = Array(memory[start..<(start + Int(run.pageCount) * 4096)])
                    return PageRange(guestPhysicalAddress: run.guestPhysicalAddress, pageCount: run.pageCount, bytes: bytes[...])
                }
                try arrays.send(.pages, PagesMessage.encode(ranges))
            }
            let inPlace = MigrationConnection(stream: MemoryStream(), key: key)
            for message in 0..<messages {
                let list = runs(message)
                try inPlace.sendPages(list) { index, buffer in
                    let start = Int(list[index].guestPhysicalAddress)
                    buffer += memory[start..<(start + Int(list[index].pageCount) * 4096)]
                }
            }
            let expected = (arrays.stream as? MemoryStream)?.written ?? []
            #expect(expected.count > memory.count)
            #expect((inPlace.stream as? MemoryStream)?.written == expected)
            #expect(inPlace.bytesSent == arrays.bytesSent)
        }
    }

    @Test func aRunGivingTheWrongNumberOfBytesIsRefused() throws {
        let connection = MigrationConnection(stream: MemoryStream(), key: nil)
        #expect(throws: MigrationError.self) {
            try connection.sendPages([PageRun(guestPhysicalAddress: 0, pageCount: 2)]) { _, buffer in buffer += [UInt8](repeating: 0, count: 4096) }
        }
        #expect((connection.stream as? MemoryStream)?.written.isEmpty == true)
    }

    @Test func aStateLargerThanTheLimitIsRefused() throws {
        let sender = MigrationConnection(stream: MemoryStream(), key: nil, maximumPayload: 100)
        try sender.sendState(Array(repeating: 0, count: 350))
        let receiver = MigrationConnection(stream: MemoryStream(incoming: (sender.stream as? MemoryStream)?.written ?? []), key: nil,
                                           maximumPayload: 100)
        let first = try receiver.expect(.state, during: "test")
        #expect(throws: MigrationError.malformed("the state is larger than the limit of 300 bytes")) {
            try receiver.receiveState(startingWith: first, limit: 300)
        }
    }

    @Test func aRepeatedOrSkippedFrameIsASequenceMismatch() throws {
        let codec = FrameCodec(key: nil)
        let zero = try codec.encode(.pages, payload: [], sequence: 0)
        let two = try codec.encode(.pages, payload: [], sequence: 2)
        let repeated = MigrationConnection(stream: MemoryStream(incoming: zero + zero), key: nil)
        _ = try repeated.receive(during: "test")
        #expect(throws: MigrationError.sequenceMismatch(expected: 1, received: 0)) { try repeated.receive(during: "test") }
        let skipped = MigrationConnection(stream: MemoryStream(incoming: zero + two), key: nil)
        _ = try skipped.receive(during: "test")
        #expect(throws: MigrationError.sequenceMismatch(expected: 1, received: 2)) { try skipped.receive(during: "test") }
    }

    /// A sender and a receiver (each a connection over one-way in-memory
    /// streams) through the handshake: hello, accept, session keys.
    private func handshake(key: MigrationKey?) throws -> (sender: MigrationConnection, receiver: MigrationConnection) {
        let sender = MigrationConnection(stream: MemoryStream(), key: key)
        let hello = MigrationHello(kvmAPIVersion: 12, host: intel, memoryBytes: 64 << 20, vcpuCount: 1, authenticated: key != nil)
        try sender.send(.hello, hello.encoded())
        let receiver = MigrationConnection(stream: MemoryStream(incoming: written(sender)), key: key)
        let received = try MigrationHello(decoding: try receiver.expect(.hello, during: "test").payload)
        try receiver.accept(received)
        let senderStream = try #require(sender.stream as? MemoryStream)
        senderStream.incoming = written(receiver)
        let accept = try sender.expect(.accept, during: "test")
        sender.startSession(senderNonce: hello.nonce, receiverNonce: accept.payload, isSender: true)
        return (sender, receiver)
    }

    private func written(_ connection: MigrationConnection) -> [UInt8] {
        let stream = connection.stream as? MemoryStream
        defer { stream?.written = [] }
        return stream?.written ?? []
    }

    /// Replay protection across connections: a frame recorded from one
    /// connection (the same key, the same sequence number) fails its HMAC in
    /// another, whose nonces differ; so does a frame reflected back to its
    /// sender; the connection's own frame verifies.
    @Test func aFrameRecordedFromOneConnectionIsRefusedInAnother() throws {
        let first = try handshake(key: testKey)
        try first.sender.send(.pages, [1, 2, 3])
        let recorded = written(first.sender)
        (first.receiver.stream as? MemoryStream)?.incoming = recorded
        #expect(try first.receiver.expect(.pages, during: "test").payload == [1, 2, 3])

        let second = try handshake(key: testKey)
        try second.sender.send(.pages, [1, 2, 3])
        let genuine = written(second.sender)
        #expect(genuine.count == recorded.count && genuine != recorded)
        let replayTarget = try #require(second.receiver.stream as? MemoryStream)
        replayTarget.incoming = recorded
        #expect(throws: MigrationError.authenticationFailed(sequence: 1)) { try second.receiver.receive(during: "test") }
        // Reflected: the sender's own frame read back by the sender.
        (second.sender.stream as? MemoryStream)?.incoming = genuine
        #expect(throws: MigrationError.authenticationFailed(sequence: 1)) { try second.sender.receive(during: "test") }
        // The genuine frame still verifies in its own connection.
        let fresh = try handshake(key: testKey)
        try fresh.sender.send(.complete)
        (fresh.receiver.stream as? MemoryStream)?.incoming = written(fresh.sender)
        #expect(try fresh.receiver.expect(.complete, during: "test").authenticated)
    }

    /// The session keys are HKDF-SHA256 (PSK as input, sender nonce then
    /// receiver nonce as salt, the direction as info): golden bytes from
    /// Python's hmac and hashlib.
    @Test func sessionKeysAreHKDFOfTheKeyAndBothNonces() throws {
        let keys = testKey.sessionKeys(senderNonce: [UInt8](repeating: 1, count: 32), receiverNonce: [UInt8](repeating: 2, count: 32))
        let frame = try FrameCodec(key: keys.senderToReceiver).encode(.go, payload: [], sequence: 3)
        #expect(hex(frame) == "0a000100000000000300000000000000dcdeeeeeb78d32be41f4f672bc82710094f006c0296c171e4ece0c9849e00a59beb50d732cc786ad")
        #expect(throws: MigrationError.authenticationFailed(sequence: 3)) { try FrameCodec(key: keys.receiverToSender).decode(frame) }
        #expect(throws: MigrationError.authenticationFailed(sequence: 3)) { try FrameCodec(key: testKey).decode(frame) }
    }

    /// Without a key the handshake still exchanges nonces; frames stay unauthenticated.
    @Test func anUnkeyedHandshakeWorksWithoutSessionKeys() throws {
        let pair = try handshake(key: nil)
        try pair.sender.send(.complete)
        (pair.receiver.stream as? MemoryStream)?.incoming = written(pair.sender)
        #expect(try !pair.receiver.expect(.complete, during: "test").authenticated)
    }

    @Test func aRefusalOrAbortBecomesTheErrorWithThePeersReason() throws {
        let codec = FrameCodec(key: nil)
        let refusal = try codec.encode(.refuse, payload: ReasonText.encode("the VM runs on a GenuineIntel CPU\nsecond line"), sequence: 0)
        let connection = MigrationConnection(stream: MemoryStream(incoming: refusal), key: nil)
        #expect(throws: MigrationError.refused("the VM runs on a GenuineIntel CPU second line")) {
            try connection.expect(.accept, during: "test")
        }
        let ack = try codec.encode(.runningAck, payload: [], sequence: 0)
        #expect(throws: MigrationError.unexpectedMessage(expected: "accept", received: "running-ack")) {
            try MigrationConnection(stream: MemoryStream(incoming: ack), key: nil).expect(.accept, during: "test")
        }
    }
}
