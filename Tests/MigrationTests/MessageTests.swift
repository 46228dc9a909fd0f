// MigrationTests: the hello and its check against the receiving host, page
// ranges and their limits, migration addresses.
import Migration
import Snapshot
import Testing

let intel = SnapshotHost(vendor: "GenuineIntel", family: 6, model: 0x8F, stepping: 8)
let limits = MigrationLimits(memoryBytes: (1 << 20)...(3 << 30), vcpuCount: 1...64, maximumStateBytes: 256 << 20)

@Suite("Migration messages")
struct MessageTests {
    @Test func theHelloRoundTripsInItsDocumentedSize() throws {
        let hello = MigrationHello(kvmAPIVersion: 12, host: intel, memoryBytes: 64 << 20, vcpuCount: 4, authenticated: true)
        let bytes = hello.encoded()
        #expect(bytes.count == MigrationHello.fixedSize)
        #expect(Array(bytes[0..<8]) == Array("DFLCTMIG".utf8))
        #expect(hex(Array(bytes[8..<16])) == "030000000c000000")
        #expect(hex(Array(bytes[88..<92])) == "00000000", "no CPU model: the host's CPUID")
        #expect(Array(bytes[56..<88]) == hello.nonce && hello.nonce.count == 32)
        #expect(hello.nonce != MigrationHello(kvmAPIVersion: 12, host: intel, memoryBytes: 64 << 20, vcpuCount: 4, authenticated: true).nonce)
        #expect(try MigrationHello(decoding: bytes) == hello)
        #expect(throws: MigrationError.self) { try MigrationHello(decoding: Array(bytes.dropLast())) }
        // A version 1 sender's hello (56 bytes, no nonce): refused by its version.
        var versionOne = Array(bytes[0..<56])
        versionOne[8] = 1
        #expect(throws: MigrationError.malformed("protocol version 1 is not supported (this receiver speaks version 3)")) {
            try MigrationHello(decoding: versionOne)
        }
        // A version 2 sender's hello (88 bytes, no CPU model): refused by its version too.
        var versionTwo = Array(bytes[0..<88])
        versionTwo[8] = 2
        #expect(throws: MigrationError.malformed("protocol version 2 is not supported (this receiver speaks version 3)")) {
            try MigrationHello(decoding: versionTwo)
        }
        var badMagic = bytes
        badMagic[0] = 0
        #expect(throws: MigrationError.self) { try MigrationHello(decoding: badMagic) }
    }

    @Test func theHelloCarriesTheCPUModelWithItsLength() throws {
        let model = Array(#"{"name":"x86-64-v2"}"#.utf8)
        let hello = MigrationHello(kvmAPIVersion: 12, host: intel, memoryBytes: 64 << 20, vcpuCount: 1,
                                   authenticated: false, cpuModel: model)
        let bytes = hello.encoded()
        #expect(bytes.count == MigrationHello.fixedSize + model.count)
        #expect(hex(Array(bytes[88..<92])) == String(format4: model.count))
        #expect(try MigrationHello(decoding: bytes).cpuModel == model)
        // A length that does not match the payload, either way, and one over the limit.
        #expect(throws: MigrationError.self) { try MigrationHello(decoding: Array(bytes.dropLast())) }
        #expect(throws: MigrationError.self) { try MigrationHello(decoding: bytes + [0]) }
        var huge = Array(bytes[0..<88])
        huge += [0x01, 0x00, 0x01, 0x00]  // 65537 bytes
        #expect(throws: MigrationError.malformed("the hello's CPU model is 65537 bytes, more than 65536")) {
            try MigrationHello(decoding: huge + [UInt8](repeating: 0x20, count: 65537))
        }
    }

    @Test func theReceiverRefusesWhatItCannotRunWithTheReason() {
        func refusal(_ change: (inout MigrationHello) -> Void, keyed: Bool = false) -> String? {
            var hello = MigrationHello(kvmAPIVersion: 12, host: intel, memoryBytes: 64 << 20, vcpuCount: 1, authenticated: false)
            change(&hello)
            return hello.refusal(host: intel, kvmAPIVersion: 12, limits: limits, keyed: keyed)
        }
        #expect(refusal { _ in } == nil)
        #expect(refusal { $0.host.vendor = "AuthenticAMD" }?.contains("AuthenticAMD CPU") == true)
        #expect(refusal { $0.kvmAPIVersion = 13 }?.contains("KVM API 13") == true)
        // Version 1 had no commit (ready, go): its sender could resume a guest running here.
        #expect(refusal { $0.protocolVersion = 1 }?.contains("protocol version 1") == true)
        #expect(refusal { $0.memoryBytes = 1 << 50 }?.contains("outside this receiver") == true)
        #expect(refusal { $0.memoryBytes = (64 << 20) + 4096 }?.contains("outside this receiver") == true)
        #expect(refusal { $0.vcpuCount = 0 }?.contains("0 vCPUs") == true)
        #expect(refusal { $0.vcpuCount = 100_000 }?.contains("100000 vCPUs") == true)
        #expect(refusal({ _ in }, keyed: true)?.contains("needs an authenticated stream") == true)
        #expect(refusal { $0.authenticated = true }?.contains("has none") == true)
    }

    @Test func pageRangesRoundTripAndStayInsideRAM() throws {
        let page = [UInt8](repeating: 0xAB, count: 4096)
        let ranges = [PageRange(guestPhysicalAddress: 0, pageCount: 1, bytes: page[...]),
                      PageRange(guestPhysicalAddress: 0xF000, pageCount: 2, bytes: (page + page)[...])]
        let payload = PagesMessage.encode(ranges)
        #expect(payload.count == 4 + 2 * 12 + 3 * 4096)
        #expect(try PagesMessage.decode(payload, memoryBytes: 0x11000) == ranges)
        // The last range ends past a RAM of 0x10000 bytes.
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload, memoryBytes: 0x10000) }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(Array(payload.dropLast()), memoryBytes: 0x11000) }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload + [0], memoryBytes: 0x11000) }
    }

    /// RAM below 3 GiB and from 4 GiB: pages in either range are taken; a
    /// range in the hole between them, or reaching into it, is refused.
    @Test func pageRangesMustLieInsideOneRAMRange() throws {
        let fourGiB: UInt64 = 1 << 32
        let ram = [0..<UInt64(0xC000_0000), fourGiB..<fourGiB + (1 << 30)]
        let page = [UInt8](repeating: 0x5A, count: 4096)
        func payload(_ address: UInt64, pages: UInt32 = 1) -> [UInt8] {
            PagesMessage.encode([PageRange(guestPhysicalAddress: address, pageCount: pages,
                                           bytes: Array(repeating: page, count: Int(pages)).flatMap { $0 }[...])])
        }
        #expect(try PagesMessage.decode(payload(fourGiB), ram: ram).map(\.guestPhysicalAddress) == [fourGiB])
        #expect(try PagesMessage.decode(payload(fourGiB + (1 << 30) - 4096), ram: ram).count == 1)
        #expect(try PagesMessage.decode(payload(0xBFFF_F000), ram: ram).count == 1)
        for (address, pages) in [(UInt64(0xC000_0000), UInt32(1)), (0xBFFF_F000, 2), (fourGiB - 4096, 2), (fourGiB + (1 << 30), 1)] {
            #expect(throws: MigrationError.self, "0x\(String(address, radix: 16))") {
                try PagesMessage.decode(payload(address, pages: pages), ram: ram)
            }
        }
    }

    @Test func hostileRangeClaimsAreRefusedWithoutAllocating() {
        func payload(address: UInt64, pages: UInt32, count: UInt32 = 1) -> [UInt8] {
            var bytes: [UInt8] = []
            for value in [UInt64(count)] { bytes += (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
            bytes += (0..<8).map { UInt8(truncatingIfNeeded: address >> (8 * $0)) }
            bytes += (0..<4).map { UInt8(truncatingIfNeeded: pages >> (8 * $0)) }
            return bytes
        }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload(address: UInt64.max - 4095, pages: 2), memoryBytes: 1 << 30) }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload(address: 0, pages: .max), memoryBytes: 1 << 30) }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload(address: 12, pages: 1), memoryBytes: 1 << 30) }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload(address: 0, pages: 0), memoryBytes: 1 << 30) }
        #expect(throws: MigrationError.self) { try PagesMessage.decode(payload(address: 0, pages: 1, count: .max), memoryBytes: 1 << 30) }
    }

    @Test func addressesParseWithOneReasonEach() throws {
        #expect(try MigrationAddress(parsing: "tcp:127.0.0.1:4444") == .tcp(host: "127.0.0.1", port: 4444))
        #expect(try MigrationAddress(parsing: "tcp:[::1]:80") == .tcp(host: "::1", port: 80))
        #expect(try MigrationAddress(parsing: "unix:/tmp/m.sock") == .unix(path: "/tmp/m.sock"))
        #expect(try MigrationAddress(parsing: "tcp:[::1]:80").description == "tcp:[::1]:80")
        let bad: [(String, String)] = [
            ("127.0.0.1:4444", "expected tcp:HOST:PORT or unix:PATH"),
            ("tcp:127.0.0.1", "no port"),
            ("tcp::4444", "the host is empty"),
            ("tcp:host:65536", "not a number from 0 to 65535"),
            ("tcp:host:-1", "not a number"),
            ("tcp:ho st:1", "not a host name"),
            ("unix:", "path is empty"),
            ("unix:/" + String(repeating: "a", count: 200), "longer than 107 bytes"),
        ]
        for (text, reason) in bad {
            #expect(throws: MigrationAddressError.self) { try MigrationAddress(parsing: text) }
            do {
                _ = try MigrationAddress(parsing: text)
            } catch {
                #expect(error.description.contains(reason), "\(text): \(error)")
            }
        }
    }

    @Test func onlyLoopbackAndUnixAddressesAreLocal() throws {
        #expect(try MigrationAddress(parsing: "unix:/x").isLocalOnly)
        #expect(try MigrationAddress(parsing: "tcp:127.0.0.1:1").isLocalOnly)
        #expect(try MigrationAddress(parsing: "tcp:localhost:1").isLocalOnly)
        #expect(try MigrationAddress(parsing: "tcp:[::1]:1").isLocalOnly)
        #expect(try !MigrationAddress(parsing: "tcp:0.0.0.0:1").isLocalOnly)
        #expect(try !MigrationAddress(parsing: "tcp:127.evil.example:1").isLocalOnly)
        #expect(try !MigrationAddress(parsing: "tcp:10.0.0.2:1").isLocalOnly)
    }
}

private extension String {
    /// A u32 as the four little-endian bytes' hex, as `hex` writes them.
    init(format4 value: Int) {
        self = [0, 8, 16, 24].map { shift in
            let byte = (value >> shift) & 0xFF
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }
}
