// ACPITablesTests.swift — the ACPI table set as a guest sees it: the blobs are
// copied into a model of the BIOS area, the RSDP is found by scanning it on
// 16-byte boundaries, and an independent parser follows RSDT/XSDT, checks
// every checksum and decodes the MADT and FADT.

import Testing
import ACPI
import Devices

/// A model of guest memory 0xE0000–0xFFFFF holding the built blobs.
struct BIOSArea {
    static let base: UInt64 = 0xE_0000
    static let size = 0x2_0000
    var bytes = [UInt8](repeating: 0, count: size)

    /// nil when a blob falls outside the area or overlaps another one.
    init?(_ blobs: [(address: UInt64, bytes: [UInt8])]) {
        var used = [Bool](repeating: false, count: Self.size)
        for blob in blobs {
            guard blob.address >= Self.base, blob.address + UInt64(blob.bytes.count) <= Self.base + UInt64(Self.size)
            else { return nil }
            let start = Int(blob.address - Self.base)
            for (i, byte) in blob.bytes.enumerated() {
                guard !used[start + i] else { return nil }
                used[start + i] = true
                bytes[start + i] = byte
            }
        }
    }

    func slice(_ address: UInt64, _ count: Int) -> [UInt8]? {
        guard address >= Self.base, count >= 0, address - Self.base + UInt64(count) <= UInt64(Self.size) else { return nil }
        let start = Int(address - Self.base)
        return Array(bytes[start..<(start + count)])
    }

    /// What a multiboot kernel does: "RSD PTR " on a 16-byte boundary with
    /// a valid 20-byte checksum (and, for revision ≥ 2, a valid extended one).
    func scanForRSDP() -> UInt64? {
        var address = Self.base
        while address + 36 <= Self.base + UInt64(Self.size) {
            if let head = slice(address, 36), head.prefix(8).elementsEqual("RSD PTR ".utf8),
               sum(head.prefix(20)) == 0, head[15] < 2 || sum(head.prefix(Int(le(head[20..<24])))) == 0 {
                return address
            }
            address += 16
        }
        return nil
    }
}

func sum(_ bytes: some Sequence<UInt8>) -> UInt8 { bytes.reduce(0, &+) }

/// One system description table, checksum-verified.
struct ParsedTable {
    let address: UInt64
    let bytes: [UInt8]
    var signature: String { String(decoding: bytes[0..<4], as: UTF8.self) }
    var revision: UInt8 { bytes[8] }
    var oemID: String { String(decoding: bytes[10..<16], as: UTF8.self) }
    var body: ArraySlice<UInt8> { bytes[36...] }

    /// nil unless the header's length fits and the checksum is valid.
    init?(_ memory: BIOSArea, at address: UInt64) {
        guard let header = memory.slice(address, 36) else { return nil }
        let length = Int(le(header[4..<8]))
        guard length >= 36, let all = memory.slice(address, length), sum(all) == 0 else { return nil }
        self.address = address
        bytes = all
    }
}

/// The decoded MADT.
struct ParsedMADT {
    var localAPICAddress: UInt32 = 0
    var flags: UInt32 = 0
    var localAPICs: [(uid: UInt8, apicID: UInt8, flags: UInt32)] = []
    var ioAPICs: [(id: UInt8, address: UInt32, gsiBase: UInt32)] = []
    var overrides: [(irq: UInt8, gsi: UInt32, flags: UInt16)] = []
    var nmis: [(uid: UInt8, flags: UInt16, lint: UInt8)] = []
    var unknownTypes: [UInt8] = []

    /// nil on an entry that runs past the table or has length < 2.
    init?(_ table: ParsedTable) {
        let b = table.bytes
        localAPICAddress = UInt32(le(b[36..<40]))
        flags = UInt32(le(b[40..<44]))
        var i = 44
        while i < b.count {
            guard i + 2 <= b.count else { return nil }
            let type = b[i], length = Int(b[i + 1])
            guard length >= 2, i + length <= b.count else { return nil }
            let e = b[i..<(i + length)]
            switch (type, length) {
            case (0, 8): localAPICs.append((e[i + 2], e[i + 3], UInt32(le(e[(i + 4)..<(i + 8)]))))
            case (1, 12): ioAPICs.append((e[i + 2], UInt32(le(e[(i + 4)..<(i + 8)])), UInt32(le(e[(i + 8)..<(i + 12)]))))
            case (2, 10):
                #expect(e[i + 2] == 0) // ISA bus
                overrides.append((e[i + 3], UInt32(le(e[(i + 4)..<(i + 8)])), UInt16(le(e[(i + 8)..<(i + 10)]))))
            case (4, 6): nmis.append((e[i + 2], UInt16(le(e[(i + 3)..<(i + 5)])), e[i + 5]))
            default: unknownTypes.append(type)
            }
            i += length
        }
    }
}

/// The guest's view of the whole set, from the RSDP down.
struct ParsedACPI {
    let rsdpAddress: UInt64
    let rsdp: [UInt8]
    let rsdtEntries: [UInt64]
    let xsdtEntries: [UInt64]
    let tables: [String: ParsedTable]

    init?(_ memory: BIOSArea) {
        guard let rsdpAddress = memory.scanForRSDP(), let rsdp = memory.slice(rsdpAddress, 36) else { return nil }
        self.rsdpAddress = rsdpAddress
        self.rsdp = rsdp
        guard let rsdt = ParsedTable(memory, at: le(rsdp[16..<20])), rsdt.signature == "RSDT",
              let xsdt = ParsedTable(memory, at: le(rsdp[24..<32])), xsdt.signature == "XSDT",
              rsdt.body.count % 4 == 0, xsdt.body.count % 8 == 0 else { return nil }
        rsdtEntries = stride(from: 36, to: rsdt.bytes.count, by: 4).map { le(rsdt.bytes[$0..<($0 + 4)]) }
        xsdtEntries = stride(from: 36, to: xsdt.bytes.count, by: 8).map { le(xsdt.bytes[$0..<($0 + 8)]) }
        var tables = ["RSDT": rsdt, "XSDT": xsdt]
        for address in xsdtEntries {
            guard let table = ParsedTable(memory, at: address), tables[table.signature] == nil else { return nil }
            tables[table.signature] = table
        }
        // The FADT leads to the DSDT (checksummed) and the FACS (no checksum).
        guard let fadt = tables["FACP"], fadt.bytes.count >= 148,
              let dsdt = ParsedTable(memory, at: le(fadt.bytes[140..<148])) else { return nil }
        tables["DSDT"] = dsdt
        self.tables = tables
    }
}

@Suite struct ACPITablesTests {
    static let vcpuCounts = [1, 2, 4, 64]

    func parse(vcpus: Int, tablesBase: UInt64 = ACPITableSet.defaultTablesBase,
               rsdp: UInt64 = ACPITableSet.defaultRSDPAddress) throws -> ParsedACPI {
        // Everything but the FACS (in the EBDA, see facsIsWritableReservedRAM) is in the BIOS area.
        let blobs = ACPITableSet.build(vcpuCount: vcpus, tablesBase: tablesBase, rsdpAddress: rsdp)
            .filter { $0.address != ACPITableSet.defaultFACSAddress }
        let memory = try #require(BIOSArea(blobs), "blobs outside the BIOS area or overlapping")
        return try #require(ParsedACPI(memory), "tables not found or bad checksum")
    }

    @Test(arguments: vcpuCounts)
    func rsdpIsFoundByScanningAndValid(vcpus: Int) throws {
        let acpi = try parse(vcpus: vcpus)
        #expect(acpi.rsdpAddress == ACPITableSet.defaultRSDPAddress)
        #expect(acpi.rsdpAddress % 16 == 0)
        #expect(ACPITableSet.biosArea.contains(acpi.rsdpAddress))
        #expect(acpi.rsdp[15] == 2)                    // revision
        #expect(le(acpi.rsdp[20..<24]) == 36)          // length
        #expect(sum(acpi.rsdp.prefix(20)) == 0)
        #expect(sum(acpi.rsdp) == 0)
        #expect(String(decoding: acpi.rsdp[9..<15], as: UTF8.self) == "DEFLCT")
    }

    @Test(arguments: vcpuCounts)
    func rootTablesPointAtMADTAndFADT(vcpus: Int) throws {
        let acpi = try parse(vcpus: vcpus)
        #expect(acpi.rsdtEntries == acpi.xsdtEntries)
        let signatures = acpi.xsdtEntries.compactMap { address in
            acpi.tables.values.first { $0.address == address }?.signature
        }
        #expect(Set(signatures) == ["FACP", "APIC"])
        #expect(signatures.count == 2)
        for table in acpi.tables.values {
            #expect(table.oemID == "DEFLCT", "\(table.signature)")
            #expect(String(decoding: table.bytes[16..<24], as: UTF8.self) == "DEFLECT ")
            #expect(sum(table.bytes) == 0, "\(table.signature) checksum")
            #expect(table.address % 16 == 0)
        }
        #expect(acpi.tables["RSDT"]?.revision == 1)
        #expect(acpi.tables["DSDT"]?.revision == 2)
    }

    @Test(arguments: vcpuCounts)
    func madtListsEveryVCPUAndTheIOAPIC(vcpus: Int) throws {
        let acpi = try parse(vcpus: vcpus)
        let table = try #require(acpi.tables["APIC"])
        let madt = try #require(ParsedMADT(table))
        #expect(madt.localAPICAddress == 0xFEE0_0000)
        #expect(madt.flags == 1) // PCAT_COMPAT
        #expect(madt.localAPICs.count == vcpus)
        for (index, entry) in madt.localAPICs.enumerated() {
            #expect(entry.uid == UInt8(index))
            #expect(entry.apicID == UInt8(index))
            #expect(entry.flags == 1)
        }
        #expect(madt.ioAPICs.count == 1)
        #expect(madt.ioAPICs.first?.id == ACPITableSet.ioAPICID)
        #expect(madt.ioAPICs.first?.address == 0xFEC0_0000)
        #expect(madt.ioAPICs.first?.gsiBase == 0)
        #expect(madt.overrides.count == 2)
        #expect(madt.overrides.contains { $0 == (irq: 0, gsi: 2, flags: 0) })
        #expect(madt.overrides.contains { $0 == (irq: 9, gsi: 9, flags: 0x000D) })
        #expect(madt.nmis.count == 1)
        #expect(madt.nmis.first?.uid == 0xFF && madt.nmis.first?.lint == 1)
        #expect(madt.unknownTypes.isEmpty)
    }

    @Test(arguments: vcpuCounts)
    func fadtPointsAtThePMBlock(vcpus: Int) throws {
        let acpi = try parse(vcpus: vcpus)
        let fadt = try #require(acpi.tables["FACP"]).bytes
        #expect(fadt.count == 244)
        #expect(fadt[8] == 3)
        func u32(_ offset: Int) -> UInt64 { le(fadt[offset..<(offset + 4)]) }
        func gas(_ offset: Int) -> (space: UInt8, width: UInt8, address: UInt64) {
            (fadt[offset], fadt[offset + 1], le(fadt[(offset + 4)..<(offset + 12)]))
        }
        #expect(le(fadt[46..<48]) == 9)                         // SCI_INT
        #expect(u32(48) == 0)                                   // SMI_CMD: always ACPI mode
        #expect(u32(56) == UInt64(ACPIPMPorts.pm1aEventBlock))  // PM1a_EVT_BLK
        #expect(u32(64) == UInt64(ACPIPMPorts.pm1aControlBlock))
        #expect(u32(76) == 0x608)                               // PM_TMR_BLK
        #expect(fadt[88] == 4 && fadt[89] == 2 && fadt[91] == 4)  // PM1_EVT/CNT/TMR_LEN
        #expect(fadt[108] == 0x32)                              // CENTURY
        let flags = UInt32(u32(112))
        #expect(flags & ACPITableSet.FADTFlags.timerValueExtended == 0) // 24-bit timer
        #expect(ACPIPMTimer.counterBits == 24)
        // X_ forms agree with the 32-bit ones.
        #expect(gas(208) == (space: 1, width: 32, address: 0x608))
        #expect(gas(148) == (space: 1, width: 32, address: 0x600))
        #expect(gas(172) == (space: 1, width: 16, address: 0x604))
        // RESET_REG: i8042 command port, value 0xFE.
        #expect(flags & ACPITableSet.FADTFlags.resetRegisterSupported != 0)
        #expect(gas(116) == (space: 1, width: 8, address: 0x64) && fadt[128] == 0xFE)
        // The DSDT in both address forms; the FACS below 4 GiB in FIRMWARE_CTRL only.
        let dsdt = try #require(acpi.tables["DSDT"])
        #expect(u32(40) == dsdt.address && le(fadt[140..<148]) == dsdt.address)
        let facsAddress = u32(36)
        #expect(le(fadt[132..<140]) == 0)
        #expect(facsAddress % 64 == 0)
        let blobs = ACPITableSet.build(vcpuCount: vcpus, tablesBase: ACPITableSet.defaultTablesBase,
                                       rsdpAddress: ACPITableSet.defaultRSDPAddress)
        let facs = try #require(blobs.first { $0.address == facsAddress }).bytes
        #expect(facs.prefix(4).elementsEqual("FACS".utf8) && le(facs[4..<8]) == 64 && facs.count == 64)
        // The DSDT carries QEMU's \_S3 = SLP_TYP 1 and \_S5 = SLP_TYP 0,
        // what ACPIPM1Registers decodes as suspend to RAM and soft off.
        #expect(Array(dsdt.body) == [0x08, 0x5F, 0x53, 0x33, 0x5F, 0x12, 0x06, 0x04, 0x01, 0x01, 0x00, 0x00,
                                     0x08, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00])
    }

    @Test func facsIsWritableReservedRAMOutsideTheBIOSArea() throws {
        let blobs = ACPITableSet.build(vcpuCount: 2)
        let facs = try #require(blobs.first { $0.bytes.prefix(4).elementsEqual("FACS".utf8) })
        // The last 64 bytes of the EBDA: below the read-only BIOS area, inside
        // the reserved 0x9FC00–0x9FFFF of the memory map, 64-byte aligned.
        #expect(facs.address == 0x9_FFC0)
        #expect(!ACPITableSet.biosArea.contains(facs.address))
        #expect(facs.address >= 0x9_FC00 && facs.address + UInt64(facs.bytes.count) <= 0xA_0000)
        // Waking vectors start at 0 (no resume before the OS sets one); version 1.
        #expect(facs.bytes[ACPITableSet.FACSField.firmwareWakingVector..<(ACPITableSet.FACSField.firmwareWakingVector + 4)].allSatisfy { $0 == 0 })
        #expect(facs.bytes[ACPITableSet.FACSField.version] == 1)
        // Nothing else overlaps it.
        #expect(blobs.filter { $0.address < facs.address + 64 && facs.address < $0.address + UInt64($0.bytes.count) }.count == 1)
    }

    @Test func customPlacementIsStillFoundByScanning() throws {
        let acpi = try parse(vcpus: 3, tablesBase: 0xF8003, rsdp: 0xE1230)
        #expect(acpi.rsdpAddress == 0xE1230)
        #expect(acpi.tables.values.allSatisfy { $0.address >= 0xF8010 })
        #expect(try ParsedMADT(#require(acpi.tables["APIC"])).map(\.localAPICs.count) == 3)
    }

    @Test func vcpuCountIsClamped() throws {
        let none = try parse(vcpus: 0)
        #expect(try ParsedMADT(#require(none.tables["APIC"]))?.localAPICs.count == 1)
        let many = try parse(vcpus: 10_000)
        let manyTable = try #require(many.tables["APIC"])
        let madt = try #require(ParsedMADT(manyTable))
        #expect(madt.localAPICs.count == ACPITableSet.maxVCPUs)
        #expect(madt.localAPICs.last?.apicID == 253)
        #expect(madt.ioAPICs.first?.id == ACPITableSet.ioAPICID)
    }

    @Test func corruptingAByteIsDetected() throws {
        var blobs = ACPITableSet.build(vcpuCount: 2, tablesBase: ACPITableSet.defaultTablesBase,
                                       rsdpAddress: ACPITableSet.defaultRSDPAddress)
            .filter { $0.address != ACPITableSet.defaultFACSAddress }
        let madtIndex = try #require(blobs.firstIndex { $0.bytes.prefix(4).elementsEqual("APIC".utf8) })
        blobs[madtIndex].bytes[50] ^= 1
        let memory = try #require(BIOSArea(blobs))
        #expect(ParsedACPI(memory) == nil)
        // A corrupted RSDP is not found at all.
        var rsdpBroken = ACPITableSet.build(vcpuCount: 2, tablesBase: ACPITableSet.defaultTablesBase,
                                            rsdpAddress: ACPITableSet.defaultRSDPAddress)
            .filter { $0.address != ACPITableSet.defaultFACSAddress }
        rsdpBroken[0].bytes[12] ^= 0x40
        #expect(try #require(BIOSArea(rsdpBroken)).scanForRSDP() == nil)
    }

    @Test func pcSetDescribesThePlatformForLinux() throws {
        let windows = PCIHostBridgeWindows(mmio32: 0xC000_0000...0xFEBF_FFFF)
        let blobs = try ACPITableSet.buildPC(vcpuCount: 4, pci: windows, ecam: ECAMRegion(base: 0xB000_0000))
            .filter { $0.address != ACPITableSet.defaultFACSAddress }
        let memory = try #require(BIOSArea(blobs), "blobs outside the BIOS area or overlapping")
        let acpi = try #require(ParsedACPI(memory), "tables not found or bad checksum")
        #expect(Set(acpi.tables.keys) == ["RSDT", "XSDT", "FACP", "APIC", "MCFG", "DSDT"])
        #expect(acpi.xsdtEntries.count == 3)
        // The FADT and MADT are the multiboot set's (the DSDT is first in both,
        // so even the FADT's DSDT pointer agrees).
        let multiboot = try parse(vcpus: 4)
        #expect(acpi.tables["APIC"]?.bytes == multiboot.tables["APIC"]?.bytes)
        #expect(acpi.tables["FACP"]?.bytes == multiboot.tables["FACP"]?.bytes)
        let dsdt = try #require(acpi.tables["DSDT"]).bytes
        func contains(_ needle: [UInt8]) -> Bool {
            dsdt.indices.contains { dsdt[$0...].starts(with: needle) }
        }
        for id in ["PNP0A03", "PNP0501", "PNP0B00", "PNP0C02"] {
            let encoded = try [UInt8(0x0C)] + littleEndianDWord(EISAID.compress(id))
            #expect(contains(encoded), "\(id)")
        }
        // \_S5's SLP_TYP is what ACPIPM1Registers powers off on, \_S3's what it suspends on.
        let s5 = ACPITableSet.sleepTypes.s5, s3 = try #require(ACPITableSet.sleepTypes.s3)
        #expect(contains(Array("_S5_".utf8) + [0x12, 0x06, 0x04, s5, s5, 0x00, 0x00]))
        #expect(contains(Array("_S3_".utf8) + [0x12, 0x06, 0x04, s3, s3, 0x00, 0x00]))
        let pm1 = ACPIPM1Registers(timer: nil)
        let enable = ACPIPM1Registers.Control.sleepEnable
        #expect(pm1.write(offset: 4, size: 2, value: UInt32(UInt16(s5) << 10 | enable)) == .powerOff)
        #expect(pm1.write(offset: 4, size: 2, value: UInt32(UInt16(s3) << 10 | enable)) == .suspendToRAM)
    }

    @Test func pcSetRefusesContradictoryWindows() {
        let windows = PCIHostBridgeWindows(mmio32: 0xB000_0000...0xFEBF_FFFF)
        #expect(throws: ACPIError.self) {
            try ACPITableSet.buildPC(vcpuCount: 1, pci: windows, ecam: ECAMRegion(base: 0xB000_0000))
        }
    }
}

private func littleEndianDWord(_ value: UInt32) -> [UInt8] {
    (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}
