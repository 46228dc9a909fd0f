// SystemDescriptionTable.swift — the 36-byte header every ACPI system
// description table starts with (ACPI 6.5 §5.2.6, table 5.4), and the
// identity (OEM and creator fields) Deflect writes into it.

/// Who made a table: the header's OEM and creator fields.
public struct ACPIIdentity: Sendable, Equatable {
    /// 6 ASCII bytes (space-padded or cut).
    public var oemID: String
    /// 8 ASCII bytes (space-padded or cut).
    public var oemTableID: String
    public var oemRevision: UInt32
    /// 4 ASCII bytes: the tool that made the table.
    public var creatorID: String
    public var creatorRevision: UInt32

    public init(oemID: String, oemTableID: String, oemRevision: UInt32 = 1,
                creatorID: String, creatorRevision: UInt32 = 1) {
        self.oemID = oemID
        self.oemTableID = oemTableID
        self.oemRevision = oemRevision
        self.creatorID = creatorID
        self.creatorRevision = creatorRevision
    }

    /// What Deflect's tables say: "DEFLCT", "DEFLECT", creator "DFLT".
    public static let deflect = ACPIIdentity(oemID: "DEFLCT", oemTableID: "DEFLECT", creatorID: "DFLT")
}

/// Framing of a system description table.
public enum SystemDescriptionTable {
    /// Size of the standard header.
    public static let headerSize = 36
    /// Header field offsets (ACPI 6.5 table 5.4).
    public enum Offset {
        public static let signature = 0
        public static let length = 4
        public static let revision = 8
        public static let checksum = 9
        public static let oemID = 10
        public static let oemTableID = 16
        public static let oemRevision = 24
        public static let creatorID = 28
        public static let creatorRevision = 32
    }

    /// The header followed by `body`, its length computed from the body and
    /// its checksum filled in so that the whole table sums to 0.
    public static func frame(signature: String, revision: UInt8, body: [UInt8],
                             identity: ACPIIdentity = .deflect) -> [UInt8] {
        var bytes = ACPIBytes.padded(signature, 4)
        bytes += ACPIBytes.littleEndian(UInt32(clamping: headerSize + body.count))
        bytes.append(revision)
        bytes.append(0) // checksum, filled in below
        bytes += ACPIBytes.padded(identity.oemID, 6)
        bytes += ACPIBytes.padded(identity.oemTableID, 8)
        bytes += ACPIBytes.littleEndian(identity.oemRevision)
        bytes += ACPIBytes.padded(identity.creatorID, 4)
        bytes += ACPIBytes.littleEndian(identity.creatorRevision)
        bytes += body
        bytes[Offset.checksum] = ACPIBytes.checksum(bytes)
        return bytes
    }
}

/// A Generic Address Structure (ACPI 6.5 §5.2.3.2, table 5.1): 12 bytes.
public struct GenericAddress: Sendable, Equatable {
    /// Address space IDs (table 5.1).
    public enum Space: UInt8, Sendable {
        case systemMemory = 0
        case systemIO = 1
        case pciConfiguration = 2
    }

    /// Access sizes (table 5.1).
    public enum AccessSize: UInt8, Sendable {
        case undefined = 0
        case byte = 1
        case word = 2
        case dword = 3
        case qword = 4
    }

    public var space: Space
    public var bitWidth: UInt8
    public var bitOffset: UInt8
    public var accessSize: AccessSize
    public var address: UInt64

    public init(space: Space, bitWidth: UInt8, bitOffset: UInt8 = 0, accessSize: AccessSize, address: UInt64) {
        self.space = space
        self.bitWidth = bitWidth
        self.bitOffset = bitOffset
        self.accessSize = accessSize
        self.address = address
    }

    /// A register in system I/O space.
    public static func io(port: UInt16, bitWidth: UInt8, accessSize: AccessSize) -> GenericAddress {
        GenericAddress(space: .systemIO, bitWidth: bitWidth, accessSize: accessSize, address: UInt64(port))
    }

    /// The all-zero structure: "not present".
    public static let notPresent = GenericAddress(space: .systemMemory, bitWidth: 0, accessSize: .undefined, address: 0)

    public var bytes: [UInt8] {
        [space.rawValue, bitWidth, bitOffset, accessSize.rawValue] + ACPIBytes.littleEndian(address)
    }
}
