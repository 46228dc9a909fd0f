// AMLEncodingTests.swift — each AML encoding against bytes computed by hand
// from ACPI 6.5 chapter 20: integers in their smallest form, PkgLength at
// every size boundary, names with root/parent prefixes and 1, 2 or more
// segments, strings, buffers, packages, EISA IDs, Name, Scope, Device,
// Method and Return; and every kind of input the encoder must refuse.

import Testing
import ACPI

@Suite struct AMLEncodingTests {
    static let integerCases: [(UInt64, [UInt8])] = [
        (0, [0x00]),                                                 // ZeroOp
        (1, [0x01]),                                                 // OneOp
        (2, [0x0A, 0x02]),                                           // BytePrefix
        (0xFF, [0x0A, 0xFF]),
        (0x100, [0x0B, 0x00, 0x01]),                                 // WordPrefix
        (0xFFFF, [0x0B, 0xFF, 0xFF]),
        (0x1_0000, [0x0C, 0x00, 0x00, 0x01, 0x00]),                  // DWordPrefix
        (0xFFFF_FFFF, [0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
        (0x1_0000_0000, [0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]), // QWordPrefix
        (0xFFFF_FFFF_FFFF_FFFE, [0x0E, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        (UInt64.max, [0xFF]),                                        // OnesOp
    ]

    static let pkgLengthCases: [(Int, [UInt8])] = [
        (0, [0x01]),               // the length counts the PkgLength byte itself
        (62, [0x3F]),              // 63: the most one byte holds
        (63, [0x41, 0x04]),        // 65 = 0x041: lead 0x40 | 0x1, then 0x04
        (4093, [0x4F, 0xFF]),      // 4095 = 0xFFF: the most two bytes hold
        (4094, [0x81, 0x00, 0x01]), // 4097 = 0x1001 in three bytes
        ((1 << 20) - 4, [0x8F, 0xFF, 0xFF]),       // 0xFFFFF
        ((1 << 20) - 3, [0xC1, 0x00, 0x00, 0x01]), // 0x100001 in four bytes
        ((1 << 28) - 5, [0xCF, 0xFF, 0xFF, 0xFF]), // 2^28 − 1: the largest
    ]

    static let nameCases: [(String, [UInt8])] = [
        ("_S5", [0x5F, 0x53, 0x35, 0x5F]),
        ("COM1", [0x43, 0x4F, 0x4D, 0x31]),
        ("\\_SB", [0x5C, 0x5F, 0x53, 0x42, 0x5F]),
        ("\\_SB.PCI0", [0x5C, 0x2E, 0x5F, 0x53, 0x42, 0x5F, 0x50, 0x43, 0x49, 0x30]),
        ("\\_SB.PCI0.COM1", [0x5C, 0x2F, 0x03, 0x5F, 0x53, 0x42, 0x5F, 0x50, 0x43, 0x49, 0x30, 0x43, 0x4F, 0x4D, 0x31]),
        ("^^FOO", [0x5E, 0x5E, 0x46, 0x4F, 0x4F, 0x5F]),
        ("^A.B", [0x5E, 0x2E, 0x41, 0x5F, 0x5F, 0x5F, 0x42, 0x5F, 0x5F, 0x5F]),
        ("\\", [0x5C, 0x00]),       // the root: RootChar, NullName
        ("^", [0x5E, 0x00]),
    ]

    static let eisaCases: [(String, UInt32)] = [
        ("PNP0501", 0x0105_D041),
        ("PNP0A03", 0x030A_D041),
        ("PNP0B00", 0x000B_D041),
        ("PNP0C02", 0x020C_D041),
        ("PNP0103", 0x0301_D041),
        ("QEMU0002", 0),      // not an EISA ID (eight characters): refused below
    ]

    @Test(arguments: integerCases)
    func integersTakeTheSmallestEncoding(value: UInt64, bytes: [UInt8]) throws {
        #expect(try AML.integer(value).encode() == bytes)
    }

    @Test(arguments: pkgLengthCases)
    func pkgLengthAtItsBoundaries(content: Int, bytes: [UInt8]) throws {
        let encoded = try AMLPkgLength.encode(contentLength: content)
        #expect(encoded == bytes)
        let decoded = try #require(AMLPkgLength.decode(encoded))
        #expect(decoded.size == encoded.count)
        #expect(decoded.length == content + encoded.count)
    }

    @Test func pkgLengthRefusesWhatFourBytesCannotHold() {
        #expect(throws: AMLError.tooLong("PkgLength", length: 1 << 28, limit: AMLPkgLength.maximum)) {
            try AMLPkgLength.encode(contentLength: (1 << 28) - 4)
        }
        #expect(throws: AMLError.self) { try AMLPkgLength.encode(contentLength: -1) }
    }

    @Test func pkgLengthRoundTripsEveryFewLengths() throws {
        for content in stride(from: 0, to: 1 << 21, by: 97) {
            let encoded = try AMLPkgLength.encode(contentLength: content)
            let decoded = try #require(AMLPkgLength.decode(encoded))
            #expect(decoded.length == content + encoded.count && decoded.size == encoded.count)
            // Smallest: one byte fewer would not hold the value.
            if encoded.count > 1 { #expect(content + encoded.count - 1 >= [0x40, 0x1000, 0x10_0000][encoded.count - 2]) }
        }
    }

    @Test(arguments: nameCases)
    func namesEncode(path: String, bytes: [UInt8]) throws {
        #expect(try AMLName(path).encoded == bytes)
        #expect(try AML.reference(path).encode() == bytes)
    }

    @Test(arguments: ["", "1ABC", "ABCDE", "abc", "A..B", "A.", "\\^A", "_S-5", "PCI0.", "É"])
    func badNamesAreRefused(path: String) {
        #expect(throws: AMLError.self) { try AMLName(path) }
        #expect(throws: AMLError.self) { try AML.name(path, .zero).encode() }
    }

    @Test func stringsAreNulTerminatedASCII() throws {
        #expect(try AML.string("ab").encode() == [0x0D, 0x61, 0x62, 0x00])
        #expect(try AML.string("").encode() == [0x0D, 0x00])
        #expect(throws: AMLError.invalidString("é")) { try AML.string("é").encode() }
        #expect(throws: AMLError.self) { try AML.string("a\u{0}b").encode() }
    }

    @Test func buffersCarryTheirSize() throws {
        // BufferOp, PkgLength 6 (itself, BufferSize 0A 03, 3 bytes), bytes.
        #expect(try AML.buffer([1, 2, 3]).encode() == [0x11, 0x06, 0x0A, 0x03, 0x01, 0x02, 0x03])
        #expect(try AML.buffer([]).encode() == [0x11, 0x02, 0x00])
        // 300 bytes: BufferSize is a word (3 bytes), PkgLength two bytes:
        // 2 + 3 + 300 = 305 = 0x131, lead 0x40 | 0x1, then 0x13.
        let big = try AML.buffer([UInt8](repeating: 0xAA, count: 300)).encode()
        #expect(Array(big.prefix(6)) == [0x11, 0x41, 0x13, 0x0B, 0x2C, 0x01])
        #expect(big.count == 306)
    }

    @Test func packagesCountTheirElements() throws {
        #expect(try AML.package([.one, .one, .zero, .zero]).encode() == [0x12, 0x06, 0x04, 0x01, 0x01, 0x00, 0x00])
        #expect(try AML.package([]).encode() == [0x12, 0x02, 0x00])
        #expect(try AML.package([.integer(0x1234), .string("A"), .reference("\\_SB")]).encode()
                    == [0x12, 0x0D, 0x03, 0x0B, 0x34, 0x12, 0x0D, 0x41, 0x00, 0x5C, 0x5F, 0x53, 0x42, 0x5F])
        let too = AML.package([AML](repeating: .zero, count: 256))
        #expect(throws: AMLError.tooLong("Package elements", length: 256, limit: 255)) { try too.encode() }
    }

    @Test(arguments: eisaCases)
    func eisaIDsCompress(id: String, value: UInt32) throws {
        guard id.count == 7 else {
            #expect(throws: AMLError.invalidEISAID(id)) { try EISAID.compress(id) }
            return
        }
        #expect(try EISAID.compress(id) == value)
        #expect(try AML.eisaID(id).encode() == [0x0C] + (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) })
    }

    @Test(arguments: ["pnp0501", "PNP050", "PNP05G1", "PN10501", "PNP0a03", ""])
    func badEISAIDsAreRefused(id: String) {
        #expect(throws: AMLError.invalidEISAID(id)) { try AML.eisaID(id).encode() }
    }

    @Test func nameScopeDeviceMethodReturn() throws {
        #expect(try AML.name("_S5", .package([.zero, .zero, .zero, .zero])).encode()
                    == [0x08, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00])
        // ScopeOp, PkgLength 6 (itself + 5-byte name), \_SB_.
        #expect(try AML.scope("\\_SB", []).encode() == [0x10, 0x06, 0x5C, 0x5F, 0x53, 0x42, 0x5F])
        // ExtOpPrefix DeviceOp, PkgLength 11, COM1, Name (_UID, One).
        #expect(try AML.device("COM1", [.uid(1)]).encode()
                    == [0x5B, 0x82, 0x0B, 0x43, 0x4F, 0x4D, 0x31, 0x08, 0x5F, 0x55, 0x49, 0x44, 0x01])
        // MethodOp, PkgLength 9, _STA, flags 0, ReturnOp BytePrefix 0x0F.
        #expect(try AML.method("_STA", [.return(.integer(0x0F))]).encode()
                    == [0x14, 0x09, 0x5F, 0x53, 0x54, 0x41, 0x00, 0xA4, 0x0A, 0x0F])
        // Flags: 2 arguments | Serialized (bit 3) | sync level 3 << 4.
        #expect(try AML.method("FOO", argCount: 2, serialized: true, syncLevel: 3, []).encode()
                    == [0x14, 0x06, 0x46, 0x4F, 0x4F, 0x5F, 0x3A])
        #expect(throws: AMLError.self) { try AML.method("FOO", argCount: 8, serialized: false, syncLevel: 0, []).encode() }
        #expect(throws: AMLError.self) { try AML.method("FOO", argCount: 0, serialized: false, syncLevel: 16, []).encode() }
        #expect(try AML.return(.reference("^COM1")).encode() == [0xA4, 0x5E, 0x43, 0x4F, 0x4D, 0x31])
    }

    @Test func deviceObjectsFollowTheConventions() throws {
        #expect(try AML.hid("PNP0501").encode() == [0x08, 0x5F, 0x48, 0x49, 0x44, 0x0C, 0x41, 0xD0, 0x05, 0x01])
        #expect(try AML.hid("ACPI0010").encode()
                    == [0x08, 0x5F, 0x48, 0x49, 0x44, 0x0D] + Array("ACPI0010".utf8) + [0x00])
        #expect(try AML.adr(0x0001_0002).encode() == [0x08, 0x5F, 0x41, 0x44, 0x52, 0x0C, 0x02, 0x00, 0x01, 0x00])
        #expect(try AML.sta().encode() == [0x08, 0x5F, 0x53, 0x54, 0x41, 0x0A, 0x0F])
        let device = AML.device("RTC", hid: "PNP0B00", status: 0x0F, resources: [.irqNoFlags([8])])
        #expect(device == .device("RTC", [.hid("PNP0B00"), .sta(), .crs([.irqNoFlags([8])])]))
    }

    @Test func nestedLengthsAreComputedAcrossTheOneByteLimit() throws {
        // A device whose body passes 63 bytes takes a two-byte PkgLength,
        // and the scope around it counts both.
        let names = (0..<8).map { AML.name("N\($0)", .integer(0x1234_5678)) }  // 10 bytes each
        let device = try AML.device("BIG", names).encode()
        #expect(device.count == 2 + 2 + 4 + 80)
        let length = try #require(AMLPkgLength.decode(device.dropFirst(2)))
        #expect(length.size == 2 && length.length == device.count - 2)
        let scope = try AML.scope("\\_SB", [.device("BIG", names)]).encode()
        let scopeLength = try #require(AMLPkgLength.decode(scope.dropFirst()))
        #expect(scopeLength.length == scope.count - 1)
        #expect(Array(scope.suffix(device.count)) == device)
    }
}
