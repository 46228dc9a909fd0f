// MADT.swift — the Multiple APIC Description Table, signature "APIC" (ACPI
// 6.5 §5.2.12), revision 3: the local APIC address and PCAT_COMPAT flag, one
// Processor Local APIC entry per vCPU (§5.2.12.2; processor UID = APIC ID),
// the I/O APIC (§5.2.12.3), the interrupt source overrides (§5.2.12.5) and
// the local APIC NMI (§5.2.12.7).
//
// The PC's overrides, as QEMU's: ISA IRQ 0 (the PIT) arrives at GSI 2 with
// the bus's own flags (ISA: edge, active high); the SCI, IRQ 9, is level
// triggered and active high.

/// The interrupt controllers as the MADT describes them.
public struct MADT: Sendable, Equatable {
    /// MPS INTI flags (table 5.26): polarity bits 1–0, trigger mode bits 3–2.
    public enum INTIFlags {
        public static let conforming: UInt16 = 0
        public static let activeHigh: UInt16 = 0b01
        public static let activeLow: UInt16 = 0b11
        public static let edge: UInt16 = 0b01 << 2
        public static let level: UInt16 = 0b11 << 2
    }

    /// Entry types (table 5.21).
    public enum EntryType {
        public static let localAPIC: UInt8 = 0
        public static let ioAPIC: UInt8 = 1
        public static let interruptSourceOverride: UInt8 = 2
        public static let localAPICNMI: UInt8 = 4
    }

    /// An ISA IRQ that arrives at another GSI, or with other flags.
    public struct InterruptSourceOverride: Sendable, Equatable {
        public var irq: UInt8
        public var gsi: UInt32
        public var flags: UInt16
        public init(irq: UInt8, gsi: UInt32, flags: UInt16) {
            self.irq = irq
            self.gsi = gsi
            self.flags = flags
        }
    }

    /// The I/O APIC.
    public struct IOAPIC: Sendable, Equatable {
        public var id: UInt8
        public var address: UInt32
        public var gsiBase: UInt32
        public init(id: UInt8, address: UInt32, gsiBase: UInt32 = 0) {
            self.id = id
            self.address = address
            self.gsiBase = gsiBase
        }
    }

    public static let revision: UInt8 = 3
    /// xAPIC IDs are 8 bits and 0xFF is the broadcast ID.
    public static let maxAPICID: UInt8 = 0xFE

    public var localAPICAddress: UInt32
    /// Dual 8259s present (PCAT_COMPAT).
    public var pcatCompatible: Bool
    /// One enabled Processor Local APIC per entry; UID = APIC ID.
    public var apicIDs: [UInt8]
    public var ioAPIC: IOAPIC
    public var overrides: [InterruptSourceOverride]
    /// Local APIC NMI on LINT1 of every processor (UID 0xFF), if set.
    public var nmiOnLINT1: Bool

    public init(localAPICAddress: UInt32 = 0xFEE0_0000, pcatCompatible: Bool = true, apicIDs: [UInt8],
                ioAPIC: IOAPIC, overrides: [InterruptSourceOverride], nmiOnLINT1: Bool = true) {
        self.localAPICAddress = localAPICAddress
        self.pcatCompatible = pcatCompatible
        self.apicIDs = apicIDs
        self.ioAPIC = ioAPIC
        self.overrides = overrides
        self.nmiOnLINT1 = nmiOnLINT1
    }

    /// The PC's overrides for an SCI on `sci`: IRQ 0 → GSI 2 (ISA flags),
    /// the SCI level triggered and active high.
    public static func pcOverrides(sci: UInt8) -> [InterruptSourceOverride] {
        [InterruptSourceOverride(irq: 0, gsi: 2, flags: INTIFlags.conforming),
         InterruptSourceOverride(irq: sci, gsi: UInt32(sci), flags: INTIFlags.level | INTIFlags.activeHigh)]
    }

    /// `count` vCPUs with APIC IDs 0, 1, …, clamped to 1...255 entries
    /// (IDs up to 0xFE).
    public static func apicIDs(vcpuCount count: Int) -> [UInt8] {
        (0..<min(max(count, 1), Int(maxAPICID) + 1)).map { UInt8($0) }
    }

    public func table(identity: ACPIIdentity = .deflect) -> [UInt8] {
        var body = ACPIBytes.littleEndian(localAPICAddress)
        body += ACPIBytes.littleEndian(UInt32(pcatCompatible ? 1 : 0))
        for id in apicIDs {
            // Processor Local APIC: type, length 8, UID, APIC ID, flags (bit 0: enabled).
            body += [EntryType.localAPIC, 8, id, id] + ACPIBytes.littleEndian(UInt32(1))
        }
        body += [EntryType.ioAPIC, 12, ioAPIC.id, 0] + ACPIBytes.littleEndian(ioAPIC.address)
            + ACPIBytes.littleEndian(ioAPIC.gsiBase)
        for entry in overrides {
            // Bus 0 (ISA), source IRQ, GSI, flags.
            body += [EntryType.interruptSourceOverride, 10, 0, entry.irq] + ACPIBytes.littleEndian(entry.gsi)
                + ACPIBytes.littleEndian(entry.flags)
        }
        if nmiOnLINT1 {
            // All processors (UID 0xFF), bus-conforming flags, LINT1.
            body += [EntryType.localAPICNMI, 6, 0xFF] + ACPIBytes.littleEndian(INTIFlags.conforming) + [1]
        }
        return SystemDescriptionTable.frame(signature: "APIC", revision: Self.revision, body: body, identity: identity)
    }
}
