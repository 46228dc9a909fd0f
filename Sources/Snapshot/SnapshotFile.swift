// SnapshotFile.swift — the snapshot state file: its byte layout, the writer
// and the reader that checks every byte of it before a restore uses it, and
// the JSON helpers the section payloads are made with. docs/snapshot-format.md
// describes the format for readers of the file.
//
// Layout (little-endian; version 1):
//
//   +0          magic            8 bytes  "DFLCTSNP"
//   +8          format version   u32      1
//   +12         KVM API version  u32      KVM_GET_API_VERSION (12)
//   +16         CPU vendor       12 bytes CPUID.0 EBX,EDX,ECX (NUL-padded)
//   +28         CPU family       u32      display family  (CPUID.1 EAX)
//   +32         CPU model        u32      display model
//   +36         CPU stepping     u32
//   +40         section count    u32      n <= 4096
//   +44         section table    n × 48   { name[32] NUL-padded, length u64, CRC-64 of payload u64 }
//   +44+48n     header CRC-64    u64      over bytes 0 ..< 44+48n
//   +52+48n     payloads                  section 0's bytes, section 1's, ... (no padding)
//   end of file = end of the last payload
//
// The reader checks, in order: magic, version, that the table fits, the
// header CRC, names, that the payloads end exactly at the end of the file,
// then each payload's CRC. So any single flipped bit and any truncation is
// reported, and no length is trusted before it was checked against the
// bytes actually there (a hostile file cannot make the reader allocate more
// than the file's own size).
import FoundationEssentials
import Glibc

/// Why a state file was refused or could not be made. One line each.
public enum SnapshotFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file ends at `offset` but `needed` bytes are required there.
    case truncated(offset: Int, needed: Int)
    case wrongMagic([UInt8])
    case unsupportedVersion(UInt32)
    case tooManySections(Int)
    /// Section table entry `index` has an empty, over-long or non-printable name.
    case invalidSectionName(index: Int)
    case duplicateSection(String)
    case vendorNotASCII(String)
    case headerCRCMismatch(stored: UInt64, computed: UInt64)
    case sectionCRCMismatch(String)
    /// Bytes after the last payload.
    case trailingBytes(offset: Int, count: Int)
    case missingSection(String)
    /// A section's payload did not decode as the expected JSON model.
    case sectionDecoding(String, reason: String)
    case sectionEncoding(String, reason: String)

    public var description: String {
        switch self {
        case let .truncated(offset, needed):
            return "snapshot truncated at offset \(offset): \(needed) more bytes expected"
        case let .wrongMagic(bytes):
            return "not a Deflect snapshot: magic is \(bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()), expected \"DFLCTSNP\""
        case let .unsupportedVersion(version):
            return "unsupported snapshot format version \(version) (this Deflect reads version \(SnapshotFile.formatVersion))"
        case let .tooManySections(count):
            return "snapshot declares \(count) sections, more than the limit of \(SnapshotFile.maxSections)"
        case let .invalidSectionName(index):
            return "snapshot section \(index) has an invalid name (1–\(SnapshotFile.nameFieldSize) printable ASCII bytes)"
        case let .duplicateSection(name):
            return "snapshot section '\(name)' appears twice"
        case let .vendorNotASCII(vendor):
            return "CPU vendor '\(vendor)' is not at most 12 printable ASCII bytes"
        case let .headerCRCMismatch(stored, computed):
            return "snapshot header CRC mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
        case let .sectionCRCMismatch(name):
            return "snapshot section '\(name)' CRC mismatch"
        case let .trailingBytes(offset, count):
            return "snapshot has \(count) unexpected bytes after the last section, at offset \(offset)"
        case let .missingSection(name):
            return "snapshot has no section '\(name)'"
        case let .sectionDecoding(name, reason):
            return "snapshot section '\(name)' does not decode: \(reason)"
        case let .sectionEncoding(name, reason):
            return "snapshot section '\(name)' cannot be encoded: \(reason)"
        }
    }
}

/// One named payload of a state file.
public struct SnapshotSection: Sendable, Equatable {
    public var name: String
    public var payload: [UInt8]

    public init(name: String, payload: [UInt8]) {
        self.name = name
        self.payload = payload
    }
}

/// A snapshot state file in memory: header fields and sections in order.
public struct SnapshotFile: Sendable, Equatable {
    public static let magic: [UInt8] = Array("DFLCTSNP".utf8)
    /// The format version this code writes and reads.
    public static let formatVersion: UInt32 = 1
    public static let maxSections = 4096
    /// Bytes of the NUL-padded name field; a name may use all of them.
    public static let nameFieldSize = 32
    static let vendorFieldSize = 12
    static let fixedHeaderSize = 44
    static let tableEntrySize = nameFieldSize + 16

    public var kvmAPIVersion: UInt32
    public var host: SnapshotHost
    public private(set) var sections: [SnapshotSection] = []

    public init(kvmAPIVersion: UInt32, host: SnapshotHost) {
        self.kvmAPIVersion = kvmAPIVersion
        self.host = host
    }

    // MARK: - Sections

    /// Appends a raw section (an XSAVE image, a bitmap).
    public mutating func append(section name: String, payload: [UInt8]) throws(SnapshotFormatError) {
        guard Self.isValidName(Array(name.utf8)) else { throw .invalidSectionName(index: sections.count) }
        guard section(named: name) == nil else { throw .duplicateSection(name) }
        guard sections.count < Self.maxSections else { throw .tooManySections(sections.count + 1) }
        sections.append(SnapshotSection(name: name, payload: payload))
    }

    /// Appends `value` as JSON (sorted keys, so equal models give equal bytes).
    public mutating func append<T: Encodable>(section name: String, encoding value: T) throws(SnapshotFormatError) {
        try append(section: name, payload: Self.encode(value, section: name))
    }

    public func section(named name: String) -> [UInt8]? {
        sections.first { $0.name == name }?.payload
    }

    /// Decodes a JSON section; a missing section is an error.
    public func decode<T: Decodable>(_ type: T.Type, section name: String) throws(SnapshotFormatError) -> T {
        guard let payload = section(named: name) else { throw .missingSection(name) }
        return try Self.decode(type, from: payload, section: name)
    }

    /// The JSON encoding sections use.
    public static func encode<T: Encodable>(_ value: T, section name: String) throws(SnapshotFormatError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return [UInt8](try encoder.encode(value))
        } catch {
            throw .sectionEncoding(name, reason: Self.oneLine(error))
        }
    }

    public static func decode<T: Decodable>(_ type: T.Type, from payload: [UInt8], section name: String) throws(SnapshotFormatError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(payload))
        } catch {
            throw .sectionDecoding(name, reason: Self.oneLine(error))
        }
    }

    private static func oneLine(_ error: any Error) -> String {
        let text: String
        switch error {
        case let DecodingError.dataCorrupted(context), let DecodingError.keyNotFound(_, context),
             let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            text = path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            text = "\(error)"
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    // MARK: - Writing

    /// The file's bytes.
    public func serialized() throws(SnapshotFormatError) -> [UInt8] {
        let vendor = Array(host.vendor.utf8)
        guard vendor.count <= Self.vendorFieldSize, vendor.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw .vendorNotASCII(host.vendor)
        }
        var bytes = Self.magic
        bytes.reserveCapacity(Self.fixedHeaderSize + sections.count * Self.tableEntrySize + 8
                              + sections.reduce(0) { $0 + $1.payload.count })
        Self.put(Self.formatVersion, into: &bytes)
        Self.put(kvmAPIVersion, into: &bytes)
        bytes += vendor + [UInt8](repeating: 0, count: Self.vendorFieldSize - vendor.count)
        Self.put(host.family, into: &bytes)
        Self.put(host.model, into: &bytes)
        Self.put(host.stepping, into: &bytes)
        Self.put(UInt32(sections.count), into: &bytes)
        for section in sections {
            let name = Array(section.name.utf8)
            bytes += name + [UInt8](repeating: 0, count: Self.nameFieldSize - name.count)
            Self.put(UInt64(section.payload.count), into: &bytes)
            Self.put(CRC64.checksum(section.payload), into: &bytes)
        }
        Self.put(CRC64.checksum(bytes), into: &bytes)
        for section in sections { bytes += section.payload }
        return bytes
    }

    private static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8]) {
        for shift in 0..<MemoryLayout<T>.size {
            bytes.append(UInt8(truncatingIfNeeded: value >> (8 * shift)))
        }
    }

    private static func isValidName(_ name: some Collection<UInt8>) -> Bool {
        !name.isEmpty && name.count <= nameFieldSize && name.allSatisfy { (0x21...0x7E).contains($0) }
    }

    // MARK: - Reading

    /// Parses and checks a whole state file (see the layout above).
    public init(parsing bytes: [UInt8]) throws(SnapshotFormatError) {
        var reader = ByteReader(bytes: bytes)
        let magic = try reader.take(Self.magic.count)
        guard magic.elementsEqual(Self.magic) else { throw .wrongMagic(Array(magic)) }
        let version: UInt32 = try reader.integer()
        guard version == Self.formatVersion else { throw .unsupportedVersion(version) }
        kvmAPIVersion = try reader.integer()
        let vendorField = try reader.take(Self.vendorFieldSize)
        let family: UInt32 = try reader.integer()
        let model: UInt32 = try reader.integer()
        let stepping: UInt32 = try reader.integer()
        let count = Int(try reader.integer() as UInt32)
        guard count <= Self.maxSections else { throw .tooManySections(count) }

        // The table and its CRC must be there before any of it is believed.
        let headerEnd = reader.offset + count * Self.tableEntrySize
        try reader.require(headerEnd + 8 - reader.offset)
        let computed = CRC64.checksum(bytes[0..<headerEnd])
        var table = ByteReader(bytes: bytes, offset: reader.offset)
        reader.offset = headerEnd
        let stored: UInt64 = try reader.integer()
        guard stored == computed else { throw .headerCRCMismatch(stored: stored, computed: computed) }

        let vendor = vendorField.prefix { $0 != 0 }
        guard vendorField.dropFirst(vendor.count).allSatisfy({ $0 == 0 }),
              vendor.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw .vendorNotASCII(String(decoding: vendorField, as: UTF8.self))
        }
        host = SnapshotHost(vendor: String(decoding: vendor, as: UTF8.self), family: family, model: model, stepping: stepping)

        var entries: [(name: String, length: UInt64, crc: UInt64)] = []
        entries.reserveCapacity(count)
        var names = Set<String>()
        for index in 0..<count {
            let field = try table.take(Self.nameFieldSize)
            let name = field.prefix { $0 != 0 }
            guard Self.isValidName(name), field.dropFirst(name.count).allSatisfy({ $0 == 0 }) else {
                throw .invalidSectionName(index: index)
            }
            let text = String(decoding: name, as: UTF8.self)
            guard names.insert(text).inserted else { throw .duplicateSection(text) }
            entries.append((name: text, length: try table.integer(), crc: try table.integer()))
        }
        // Lengths against what is left, before slicing anything out.
        var end = UInt64(reader.offset)
        for entry in entries {
            let (sum, overflow) = end.addingReportingOverflow(entry.length)
            guard !overflow, sum <= UInt64(bytes.count) else {
                throw .truncated(offset: bytes.count, needed: Int(clamping: overflow ? UInt64.max : sum - UInt64(bytes.count)))
            }
            end = sum
        }
        if Int(end) < bytes.count { throw .trailingBytes(offset: Int(end), count: bytes.count - Int(end)) }
        for entry in entries {
            let payload = try reader.take(Int(entry.length))
            guard CRC64.checksum(payload) == entry.crc else { throw .sectionCRCMismatch(entry.name) }
            sections.append(SnapshotSection(name: entry.name, payload: Array(payload)))
        }
    }
}

/// Little-endian reads over a byte array that never read past its end.
private struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    func require(_ count: Int) throws(SnapshotFormatError) {
        let available = bytes.count - offset
        guard count <= available else { throw .truncated(offset: bytes.count, needed: count - available) }
    }

    mutating func take(_ count: Int) throws(SnapshotFormatError) -> ArraySlice<UInt8> {
        try require(count)
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func integer<T: FixedWidthInteger & UnsignedInteger>() throws(SnapshotFormatError) -> T {
        var value: T = 0
        for (shift, byte) in try take(MemoryLayout<T>.size).enumerated() {
            value |= T(byte) << (8 * shift)
        }
        return value
    }
}
