// ACPITables.swift — builds the ACPI tables a multiboot test kernel looks for:
// an RSDP in the BIOS area (found by scanning 0xE0000–0xFFFFF on 16-byte
// boundaries), RSDT and XSDT, MADT with every vCPU and the IOAPIC, FADT
// pointing at the PM block of ACPIPMTimer.swift, FACS and a tiny DSDT.
// Pure bytes: the machine copies each blob into guest memory at its address
// (and should mark 0xE0000–0xFFFFF reserved in the memory map).
//
// Layout from `tablesBase` upwards, each table 16-byte aligned: DSDT, FADT,
// MADT, RSDT, XSDT. With the defaults the tables start at 0xE0000 and the
// RSDP sits at 0xF0000 (where SeaBIOS-era scanners also look first); 254
// vCPUs need about 2.5 KiB. The FACS is apart, 64-byte aligned (ACPI requires
// it) in writable RAM the memory map reports reserved: the last 64 bytes of
// the EBDA (0x9FFC0). The guest writes its S3 waking vector there, which the
// read-only BIOS area would drop (QEMU keeps its FACS in reserved RAM too).
//
// Revisions: RSDP 2 (ACPI 2.0+, XSDT present), FADT 3 (the 244-byte ACPI 2.0
// layout QEMU's PC machines also use), MADT 3, DSDT 2 (64-bit AML integers),
// FACS version 1.

/// The ACPI table set for one machine.
public struct ACPITableSet {
    /// Where the RSDP goes by default: 16-byte aligned inside 0xE0000–0xFFFFF.
    public static let defaultRSDPAddress: UInt64 = 0xF_0000
    /// Where the other tables start by default (they grow upwards, well below
    /// the RSDP for any supported vCPU count).
    public static let defaultTablesBase: UInt64 = 0xE_0000
    /// The BIOS area a multiboot kernel scans for the RSDP.
    public static let biosArea: ClosedRange<UInt64> = 0xE_0000...0xF_FFFF
    /// Where the FACS goes by default: the last 64 bytes of the EBDA
    /// (0x9FC00–0x9FFFF), RAM the guest can write and the memory map reserves.
    public static let defaultFACSAddress: UInt64 = 0x9_FFC0
    /// FACS field offsets (ACPI 6.5 table 5.14).
    public enum FACSField {
        public static let firmwareWakingVector = 12
        public static let flags = 20
        public static let extendedFirmwareWakingVector = 24
        public static let version = 32
        public static let ospmFlags = 36
    }

    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    public static let ioAPICAddress: UInt32 = 0xFEC0_0000
    /// The SCI's ISA IRQ (and GSI): 9, as on QEMU's PC machines.
    public static let sciInterrupt: UInt16 = 9
    /// xAPIC IDs 0…254 (255 is broadcast) must fit in 8 bits: vCPU counts
    /// are clamped to 1...254.
    public static let maxVCPUs = 254

    public static let oemID = "DEFLCT"
    public static let oemTableID = "DEFLECT"
    public static let creatorID = "DFLT"

    /// FADT flags (ACPI 6.5 table 5.10).
    public enum FADTFlags {
        public static let wbinvd: UInt32 = 1 << 0
        public static let processorC1: UInt32 = 1 << 2
        /// Set: the power button is not a fixed feature (we have none).
        public static let powerButton: UInt32 = 1 << 4
        /// Set: the sleep button is not a fixed feature (we have none).
        public static let sleepButton: UInt32 = 1 << 5
        /// 32-bit PM timer; clear because ours is 24-bit.
        public static let timerValueExtended: UInt32 = 1 << 8
        public static let resetRegisterSupported: UInt32 = 1 << 10
    }

    /// `[(address, bytes)]` for the RSDP and every table; copy each into guest
    /// memory. `vcpuCount` is clamped to 1...254; `tablesBase` is rounded up
    /// to 16 bytes and `facsAddress` to 64. The caller keeps the RSDP and the
    /// FACS out of the table range (the defaults do) and the RSDP inside the
    /// BIOS area so kernels find it.
    public static func build(vcpuCount: Int, tablesBase: UInt64 = defaultTablesBase,
                             rsdpAddress: UInt64 = defaultRSDPAddress,
                             facsAddress: UInt64 = defaultFACSAddress) -> [(address: UInt64, bytes: [UInt8])] {
        let cpus = min(max(vcpuCount, 1), maxVCPUs)
        var cursor = align(tablesBase, 16)
        var blobs: [(address: UInt64, bytes: [UInt8])] = []

        func place(_ bytes: [UInt8], alignment: UInt64 = 16) -> UInt64 {
            let address = align(cursor, alignment)
            blobs.append((address: address, bytes: bytes))
            cursor = address &+ UInt64(bytes.count)
            return address
        }

        let dsdt = place(dsdtTable())
        let facs = align(facsAddress, 64)
        blobs.append((address: facs, bytes: facsTable()))
        let fadt = place(fadtTable(dsdt: dsdt, facs: facs))
        let madt = place(madtTable(vcpuCount: cpus))
        let rsdt = place(rootTable(signature: "RSDT", entries: [fadt, madt], entrySize: 4))
        let xsdt = place(rootTable(signature: "XSDT", entries: [fadt, madt], entrySize: 8))
        blobs.insert((address: rsdpAddress, bytes: rsdp(rsdt: rsdt, xsdt: xsdt)), at: 0)
        return blobs
    }

    // MARK: - Tables

    /// RSDP, ACPI 2.0: 36 bytes, checksum over the first 20, extended over all.
    static func rsdp(rsdt: UInt64, xsdt: UInt64) -> [UInt8] {
        var bytes = Array("RSD PTR ".utf8)
        bytes.append(0) // checksum
        bytes += padded(oemID, 6)
        bytes.append(2) // revision
        bytes += littleEndianBytes(UInt32(truncatingIfNeeded: rsdt))
        bytes += littleEndianBytes(UInt32(36))
        bytes += littleEndianBytes(xsdt)
        bytes.append(0) // extended checksum
        bytes += [0, 0, 0]
        bytes[8] = checksum(bytes[0..<20])
        bytes[32] = checksum(bytes[0..<36])
        return bytes
    }

    /// RSDT (4-byte entries) or XSDT (8-byte entries).
    static func rootTable(signature: String, entries: [UInt64], entrySize: Int) -> [UInt8] {
        var body: [UInt8] = []
        for entry in entries { body += littleEndianBytes(entry, count: entrySize) }
        return table(signature: signature, revision: 1, body: body)
    }

    /// MADT: local APIC address, PCAT_COMPAT, then the entries.
    /// The ID of KVM's in-kernel IOAPIC after reset.
    public static let ioAPICID: UInt8 = 0

    static func madtTable(vcpuCount: Int) -> [UInt8] {
        var body = littleEndianBytes(localAPICAddress)
        body += littleEndianBytes(UInt32(1)) // PCAT_COMPAT: dual 8259s present
        for cpu in 0..<vcpuCount {
            // Processor Local APIC: processor UID = APIC ID = index, enabled.
            body += [0, 8, UInt8(cpu), UInt8(cpu)]
            body += littleEndianBytes(UInt32(1))
        }
        // I/O APIC: ID 0, GSI base 0. KVM's in-kernel IOAPIC resets to ID 0
        // and QEMU's MADT says 0 too; the table must describe the real device.
        body += [1, 12, Self.ioAPICID, 0]
        body += littleEndianBytes(ioAPICAddress)
        body += littleEndianBytes(UInt32(0))
        // ISA IRQ 0 (PIT) arrives at GSI 2, bus-conforming, as on QEMU.
        body += interruptSourceOverride(irq: 0, gsi: 2, flags: 0)
        // SCI: level-triggered, active high (flags 0x000D).
        body += interruptSourceOverride(irq: UInt8(sciInterrupt), gsi: UInt32(sciInterrupt), flags: 0x000D)
        // Local APIC NMI: all processors (UID 0xFF), LINT1, bus-conforming.
        body += [4, 6, 0xFF, 0, 0, 1]
        return table(signature: "APIC", revision: 3, body: body)
    }

    private static func interruptSourceOverride(irq: UInt8, gsi: UInt32, flags: UInt16) -> [UInt8] {
        [2, 10, 0, irq] + littleEndianBytes(gsi) + littleEndianBytes(flags)
    }

    /// FADT revision 3, 244 bytes; offsets as in the ACPI spec's FADT table.
    static func fadtTable(dsdt: UInt64, facs: UInt64) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: 244 - 36)
        func put(_ offset: Int, _ bytes: [UInt8]) {
            body.replaceSubrange((offset - 36)..<(offset - 36 + bytes.count), with: bytes)
        }
        put(36, littleEndianBytes(UInt32(truncatingIfNeeded: facs)))   // FIRMWARE_CTRL
        put(40, littleEndianBytes(UInt32(truncatingIfNeeded: dsdt)))   // DSDT
        put(45, [0])                                                    // PM profile: unspecified
        put(46, littleEndianBytes(sciInterrupt))                        // SCI_INT
        // 48 SMI_CMD = 0: always in ACPI mode (SCI_EN fixed at 1).
        put(56, littleEndianBytes(UInt32(ACPIPMPorts.pm1aEventBlock)))  // PM1a_EVT_BLK
        put(64, littleEndianBytes(UInt32(ACPIPMPorts.pm1aControlBlock))) // PM1a_CNT_BLK
        put(76, littleEndianBytes(UInt32(ACPIPMPorts.timer)))           // PM_TMR_BLK
        put(88, [ACPIPMPorts.pm1EventLength, ACPIPMPorts.pm1ControlLength, 0, ACPIPMPorts.timerLength])
        // 92–95: no GPE blocks, no _CST.
        put(96, littleEndianBytes(UInt16(0x0FFF)))  // P_LVL2_LAT > 100: no C2
        put(98, littleEndianBytes(UInt16(0x0FFF)))  // P_LVL3_LAT > 1000: no C3
        put(108, [RTCCMOS.Register.century])        // CENTURY: CMOS index 0x32
        // IAPC_BOOT_ARCH: legacy devices (UART) and an 8042.
        put(109, littleEndianBytes(UInt16(0x0003)))
        let flags = FADTFlags.wbinvd | FADTFlags.processorC1 | FADTFlags.powerButton
            | FADTFlags.sleepButton | FADTFlags.resetRegisterSupported
        put(112, littleEndianBytes(flags))
        // RESET_REG: the i8042 command port, value 0xFE pulses CPU reset.
        put(116, genericAddress(port: 0x64, bitWidth: 8, accessSize: 1))
        put(128, [0xFE])
        put(132, littleEndianBytes(facs))                               // X_FIRMWARE_CTRL
        put(140, littleEndianBytes(dsdt))                               // X_DSDT
        put(148, genericAddress(port: ACPIPMPorts.pm1aEventBlock, bitWidth: 32, accessSize: 2))
        put(172, genericAddress(port: ACPIPMPorts.pm1aControlBlock, bitWidth: 16, accessSize: 2))
        put(208, genericAddress(port: ACPIPMPorts.timer, bitWidth: 32, accessSize: 3))
        return table(signature: "FACP", revision: 3, body: body)
    }

    /// Generic Address Structure in system I/O space. Access size: 1 byte,
    /// 2 word, 3 dword.
    private static func genericAddress(port: UInt16, bitWidth: UInt8, accessSize: UInt8) -> [UInt8] {
        [1, bitWidth, 0, accessSize] + littleEndianBytes(UInt64(port))
    }

    /// FACS: 64 bytes, no checksum; version 1 (ACPI 2.0 layout).
    static func facsTable() -> [UInt8] {
        var bytes = Array("FACS".utf8)
        bytes += littleEndianBytes(UInt32(64))
        bytes += [UInt8](repeating: 0, count: 24) // hw signature, waking vectors, lock, flags
        bytes.append(1)                           // version (offset 32)
        bytes += [UInt8](repeating: 0, count: 64 - bytes.count)
        return bytes
    }

    /// DSDT whose only AML is QEMU's sleep-state objects (hw/i386/acpi-build.c):
    /// `Name (_S3, Package (4) { One, One, Zero, Zero })` and
    /// `Name (_S5, Package (4) { Zero, Zero, Zero, Zero })`: suspend to RAM is
    /// SLP_TYP 1 and soft off SLP_TYP 0, as ACPIPM1Registers decodes them.
    static func dsdtTable() -> [UInt8] {
        let aml: [UInt8] = [
            0x08, 0x5F, 0x53, 0x33, 0x5F, // NameOp "_S3_"
            0x12, 0x06, 0x04,             // PackageOp, PkgLength 6, 4 elements
            0x01, 0x01, 0x00, 0x00,       // OneOp, OneOp, ZeroOp, ZeroOp
            0x08, 0x5F, 0x53, 0x35, 0x5F, // NameOp "_S5_"
            0x12, 0x06, 0x04,             // PackageOp, PkgLength 6, 4 elements
            0x00, 0x00, 0x00, 0x00,       // ZeroOp × 4
        ]
        return table(signature: "DSDT", revision: 2, body: aml)
    }

    // MARK: - Helpers

    /// Standard 36-byte header + body, with the checksum filled in.
    static func table(signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var bytes = padded(signature, 4)
        bytes += littleEndianBytes(UInt32(36 + body.count))
        bytes.append(revision)
        bytes.append(0) // checksum
        bytes += padded(oemID, 6)
        bytes += padded(oemTableID, 8)
        bytes += littleEndianBytes(UInt32(1)) // OEM revision
        bytes += padded(creatorID, 4)
        bytes += littleEndianBytes(UInt32(1)) // creator revision
        bytes += body
        bytes[9] = checksum(bytes[...])
        return bytes
    }

    /// The byte that makes `bytes` (with it still 0) sum to 0 mod 256.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }

    /// ASCII, space-padded or cut to `count` bytes.
    private static func padded(_ text: String, _ count: Int) -> [UInt8] {
        let bytes = Array(text.utf8.prefix(count))
        return bytes + [UInt8](repeating: 0x20, count: count - bytes.count)
    }

    private static func align(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        // Wrapping: an absurd base must not trap (alignment is a power of two).
        (value &+ (alignment - 1)) & ~(alignment - 1)
    }
}
