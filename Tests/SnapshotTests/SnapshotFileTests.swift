// SnapshotFileTests.swift — the snapshot state file: CRC-64 check values,
// round trips, every bit flip and every truncation detected, header errors,
// a seeded fuzz sample, CPUID decoding and the atomic write.

import Foundation
import Testing
@testable import Snapshot
import SeededRandom

/// A small but real state file: JSON and raw sections as the VMM writes them.
func sampleSnapshot() throws -> SnapshotFile {
    struct Config: Codable, Equatable { var memoryMiB: Int; var vcpus: Int; var policy: String }
    var file = SnapshotFile(kvmAPIVersion: 12, host: SnapshotHost(vendor: "GenuineIntel", family: 6, model: 0x55, stepping: 7))
    try file.append(section: "config", encoding: Config(memoryMiB: 64, vcpus: 2, policy: "default = \"deny\""))
    try file.append(section: "vcpu.0", payload: (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) })
    try file.append(section: "devices", encoding: ["serial16550@0x3f8": [1, 2, 3]])
    try file.append(section: "empty", payload: [])
    return file
}

@Suite struct CRC64Tests {
    /// Eight bytes a step gives what one byte a step gives, at every length and offset.
    @Test func slicingByEightAgreesWithTheByteWiseTable() {
        var generator = SeededGenerator(seed: 64)
        let bytes = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for start in 0..<9 {
            for end in stride(from: start, through: bytes.count, by: 7) {
                let slice = bytes[start..<end]
                #expect(CRC64.checksum(slice) == CRC64.checksum(AnySequence(slice)))
            }
        }
    }

    @Test func catalogueCheckValue() {
        // CRC catalogue, CRC-64/REDIS (Jones, init 0, reflected, xorout 0).
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0xE9C6_D914_C4B8_D9CA)
        #expect(CRC64.checksum([UInt8]()) == 0)
    }

    @Test func incrementalEqualsWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var crc = CRC64()
        crc.update(bytes[..<333])
        crc.update(bytes[333...])
        #expect(crc.value == CRC64.checksum(bytes))
    }
}

@Suite struct SnapshotFileTests {
    @Test func roundTrip() throws {
        let file = try sampleSnapshot()
        let bytes = try file.serialized()
        let parsed = try SnapshotFile(parsing: bytes)
        #expect(parsed == file)
        #expect(parsed.sections.map(\.name) == ["config", "vcpu.0", "devices", "empty"])
        #expect(try parsed.serialized() == bytes)
        #expect(Array(bytes.prefix(8)) == Array("DFLCTSNP".utf8))
    }

    @Test func jsonSectionsDecodeAndSortKeys() throws {
        let file = try sampleSnapshot()
        let devices = try file.decode([String: [Int]].self, section: "devices")
        #expect(devices == ["serial16550@0x3f8": [1, 2, 3]])
        let config = String(decoding: file.section(named: "config") ?? [], as: UTF8.self)
        #expect(config == #"{"memoryMiB":64,"policy":"default = \"deny\"","vcpus":2}"#)
        #expect(throws: SnapshotFormatError.missingSection("vm")) { try file.decode(Int.self, section: "vm") }
        let error = #expect(throws: SnapshotFormatError.self) { try file.decode([String].self, section: "config") }
        #expect(error?.description.hasPrefix("snapshot section 'config' does not decode") == true)
        #expect(error?.description.contains("\n") == false)
    }

    @Test func everySingleBitFlipIsDetected() throws {
        let bytes = try sampleSnapshot().serialized()
        var undetected: [Int] = []
        for bit in 0..<(bytes.count * 8) {
            var flipped = bytes
            flipped[bit / 8] ^= 1 << (bit % 8)
            if (try? SnapshotFile(parsing: flipped)) != nil { undetected.append(bit) }
        }
        #expect(undetected.isEmpty, "bits \(undetected.prefix(10)) of \(bytes.count * 8) not detected")
    }

    @Test func everyTruncationIsDetected() throws {
        let bytes = try sampleSnapshot().serialized()
        for length in 0..<bytes.count {
            #expect(throws: SnapshotFormatError.self) { try SnapshotFile(parsing: Array(bytes.prefix(length))) }
        }
        #expect(throws: SnapshotFormatError.truncated(offset: 3, needed: 5)) { try SnapshotFile(parsing: Array(bytes.prefix(3))) }
        #expect(throws: SnapshotFormatError.trailingBytes(offset: bytes.count, count: 1)) { try SnapshotFile(parsing: bytes + [0]) }
    }

    @Test func headerErrorsNameTheProblem() throws {
        var bytes = try sampleSnapshot().serialized()
        var wrongMagic = bytes
        wrongMagic[0] = UInt8(ascii: "X")
        let magicError = #expect(throws: SnapshotFormatError.self) { try SnapshotFile(parsing: wrongMagic) }
        #expect(magicError?.description.hasPrefix("not a Deflect snapshot") == true)
        bytes[8] = 2
        #expect(throws: SnapshotFormatError.unsupportedVersion(2)) { try SnapshotFile(parsing: bytes) }
        #expect(SnapshotFormatError.unsupportedVersion(2).description
                == "unsupported snapshot format version 2 (this Deflect reads version 1)")
    }

    @Test func hostileSectionCountIsRefusedBeforeAllocating() throws {
        var bytes = try sampleSnapshot().serialized()
        bytes.replaceSubrange(40..<44, with: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: SnapshotFormatError.tooManySections(Int(UInt32.max))) { try SnapshotFile(parsing: bytes) }
        bytes.replaceSubrange(40..<44, with: [0x00, 0x10, 0, 0]) // 4096 entries: more table than file
        #expect(throws: SnapshotFormatError.truncated(offset: bytes.count, needed: 44 + 4096 * 48 + 8 - bytes.count)) {
            try SnapshotFile(parsing: bytes)
        }
    }

    @Test func hugeSectionLengthWithValidHeaderCRCIsTruncation() throws {
        // A writer bug or a forged header: lengths are checked against the file.
        var file = SnapshotFile(kvmAPIVersion: 12, host: SnapshotHost(vendor: "AuthenticAMD", family: 0x19, model: 1, stepping: 1))
        try file.append(section: "vm", payload: [1, 2, 3])
        var bytes = try file.serialized()
        let lengthOffset = 44 + 32
        bytes.replaceSubrange(lengthOffset..<(lengthOffset + 8), with: [UInt8](repeating: 0xFF, count: 8))
        let crc = CRC64.checksum(bytes[0..<(44 + 48)])
        bytes.replaceSubrange((44 + 48)..<(44 + 56), with: (0..<8).map { UInt8(truncatingIfNeeded: crc >> (8 * $0)) })
        #expect(throws: SnapshotFormatError.truncated(offset: bytes.count, needed: Int.max)) { try SnapshotFile(parsing: bytes) }
    }

    @Test func writerRefusesBadNamesAndDuplicates() throws {
        var file = try sampleSnapshot()
        #expect(throws: SnapshotFormatError.duplicateSection("config")) { try file.append(section: "config", payload: []) }
        #expect(throws: SnapshotFormatError.self) { try file.append(section: "", payload: []) }
        #expect(throws: SnapshotFormatError.self) { try file.append(section: "has space", payload: []) }
        #expect(throws: SnapshotFormatError.self) { try file.append(section: String(repeating: "x", count: 33), payload: []) }
        try file.append(section: String(repeating: "x", count: 32), payload: [9])
        #expect(try SnapshotFile(parsing: file.serialized()) == file)
        file.host.vendor = "TooLongVendorName"
        #expect(throws: SnapshotFormatError.vendorNotASCII("TooLongVendorName")) { try file.serialized() }
    }

    @Test func seededFuzzSampleNeverTraps() throws {
        let corpus = [try sampleSnapshot().serialized()]
        var accepted = 0
        for input in FuzzInputs(corpus: corpus, count: 2000, seed: 0x5A5A) {
            if let file = try? SnapshotFile(parsing: input) {
                accepted += 1
                // Whatever is accepted writes back to the same bytes.
                #expect(try file.serialized() == input)
            }
        }
        #expect(accepted < 2000)
    }

    @Test func hostFromCPUID() {
        // "GenuineIntel": EBX "Genu", EDX "ineI", ECX "ntel"; Skylake-SP 0x50657.
        let intel = SnapshotHost(leaf0EBX: 0x756E_6547, leaf0ECX: 0x6C65_746E, leaf0EDX: 0x4965_6E69, leaf1EAX: 0x0005_0657)
        #expect(intel == SnapshotHost(vendor: "GenuineIntel", family: 6, model: 0x55, stepping: 7))
        // "AuthenticAMD", Zen 3 0xA00F11: family 0xF + 0xA = 0x19, model 0x01.
        let amd = SnapshotHost(leaf0EBX: 0x6874_7541, leaf0ECX: 0x444D_4163, leaf0EDX: 0x6974_6E65, leaf1EAX: 0x00A0_0F11)
        #expect(amd == SnapshotHost(vendor: "AuthenticAMD", family: 0x19, model: 0x01, stepping: 1))
    }
}

@Suite struct SnapshotSectionNameTests {
    /// Every name maps to its table string and back; near misses are not names.
    @Test func namesRoundTrip() throws {
        let all: [SnapshotSectionName] = [.config, .user, .devices, .vm, .vcpu(0), .vcpu(17), .host, .memory, .pci]
        #expect(all.map(\.rawValue) == ["config", "user", "devices", "vm", "vcpu.0", "vcpu.17", "host", "memory", "pci"])
        for name in all { #expect(SnapshotSectionName(rawValue: name.rawValue) == name) }
        for bad in ["vcpu.", "vcpu.-1", "vcpu.01", "vcpu.x", "Config", "memory-layout", ""] {
            #expect(SnapshotSectionName(rawValue: bad) == nil, "\(bad)")
        }
    }

    @Test func typedAccessUsesTheTableName() throws {
        var file = SnapshotFile(kvmAPIVersion: 12, host: SnapshotHost(vendor: "AuthenticAMD", family: 0x19, model: 1, stepping: 1))
        try file.append(.vcpu(3), encoding: ["rip": 7])
        #expect(file.sections.map(\.name) == ["vcpu.3"])
        #expect(try file.decode([String: Int].self, section: .vcpu(3)) == ["rip": 7])
        #expect(throws: SnapshotFormatError.missingSection("vcpu.4")) { try file.decode([String: Int].self, section: .vcpu(4)) }
    }
}
