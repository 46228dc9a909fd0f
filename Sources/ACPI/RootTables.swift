// RootTables.swift — how an OS finds the tables: the RSDP (ACPI 6.5 §5.2.5,
// revision 2: 36 bytes, a checksum over the first 20 and an extended one over
// all), the RSDT (§5.2.7, 32-bit entries) and the XSDT (§5.2.8, 64-bit
// entries); and the FACS (§5.2.10, 64 bytes, no checksum, version 1), which
// only the FADT points at.

public enum RootTables {
    /// RSDP offsets (table 5.3).
    public enum RSDPOffset {
        public static let checksum = 8
        public static let oemID = 9
        public static let revision = 15
        public static let rsdtAddress = 16
        public static let length = 20
        public static let xsdtAddress = 24
        public static let extendedChecksum = 32
    }

    public static let rsdpLength = 36

    /// The RSDP, revision 2.
    public static func rsdp(rsdt: UInt64, xsdt: UInt64, identity: ACPIIdentity = .deflect) -> [UInt8] {
        var bytes = Array("RSD PTR ".utf8)
        bytes.append(0) // checksum
        bytes += ACPIBytes.padded(identity.oemID, 6)
        bytes.append(2) // revision
        bytes += ACPIBytes.littleEndian(UInt32(truncatingIfNeeded: rsdt))
        bytes += ACPIBytes.littleEndian(UInt32(rsdpLength))
        bytes += ACPIBytes.littleEndian(xsdt)
        bytes += [0, 0, 0, 0] // extended checksum, 3 reserved
        bytes[RSDPOffset.checksum] = ACPIBytes.checksum(bytes[0..<20])
        bytes[RSDPOffset.extendedChecksum] = ACPIBytes.checksum(bytes)
        return bytes
    }

    /// The RSDT: 32-bit addresses of the tables.
    public static func rsdt(_ entries: [UInt64], identity: ACPIIdentity = .deflect) -> [UInt8] {
        SystemDescriptionTable.frame(signature: "RSDT", revision: 1,
                                     body: entries.flatMap { ACPIBytes.littleEndian($0, count: 4) }, identity: identity)
    }

    /// The XSDT: 64-bit addresses of the tables.
    public static func xsdt(_ entries: [UInt64], identity: ACPIIdentity = .deflect) -> [UInt8] {
        SystemDescriptionTable.frame(signature: "XSDT", revision: 1,
                                     body: entries.flatMap { ACPIBytes.littleEndian($0) }, identity: identity)
    }

    /// FACS field offsets (table 5.14).
    public enum FACSField {
        public static let firmwareWakingVector = 12
        public static let flags = 20
        public static let extendedFirmwareWakingVector = 24
        public static let version = 32
        public static let ospmFlags = 36
    }

    public static let facsLength = 64

    /// The FACS: signature, length, then zeros but the version (1).
    public static func facs() -> [UInt8] {
        var bytes = Array("FACS".utf8) + ACPIBytes.littleEndian(UInt32(facsLength))
        bytes += [UInt8](repeating: 0, count: facsLength - bytes.count)
        bytes[FACSField.version] = 1
        return bytes
    }
}
