// PCDSDTTests.swift — the PC platform's DSDT read back by AMLReader: every
// device and object at its path with the values and _CRS bytes (computed
// by hand) a Linux kernel will evaluate; the optional 64-bit window and the
// ECAM reservation; descriptions the builder refuses.

import Testing
import ACPI

/// A PC like Deflect's: RAM to 3 GiB, the 32-bit hole to the IOAPIC.
let pcWindows = PCIHostBridgeWindows(mmio32: 0xC000_0000...0xFEBF_FFFF)
let pcSleep = PCDSDT.SleepTypes(s3: 1, s5: 0)

@Suite struct PCDSDTTests {
    func read(_ configuration: PCDSDT.Configuration) throws -> AMLReader {
        try AMLReader.read(PCDSDT.aml(configuration))
    }

    @Test func theHostBridgeDescribesItsWindows() throws {
        let aml = try read(PCDSDT.Configuration(pci: pcWindows, sleep: pcSleep))
        #expect(aml.objects["\\_SB_.PCI0"] == .device)
        #expect(aml.objects["\\_SB_.PCI0._HID"] == .integer(0x030A_D041)) // EISAID ("PNP0A03")
        #expect(aml.objects["\\_SB_.PCI0._SEG"] == .integer(0))
        #expect(aml.objects["\\_SB_.PCI0._BBN"] == .integer(0))
        #expect(aml.objects["\\_SB_.PCI0._UID"] == .integer(0))
        let crs: [UInt8] =
            [0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x01]  // buses 0–255
            + [0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08]                                               // IO 0xCF8, 8
            + [0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x00, 0xF7, 0x0C, 0x00, 0x00, 0xF8, 0x0C] // 0–0xCF7
            + [0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x0D, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xF3] // 0xD00–0xFFFF
            + [0x87, 0x17, 0x00, 0x00, 0x0C, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0,              // the hole
               0xFF, 0xFF, 0xBF, 0xFE, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x3E]
            + [0x79, 0x00]
        #expect(aml.objects["\\_SB_.PCI0._CRS"] == .buffer(crs))
    }

    @Test func aSixtyFourBitWindowIsAQWordMemory() throws {
        var windows = pcWindows
        windows.mmio64 = 0x80_0000_0000...0xFF_FFFF_FFFF
        let aml = try read(PCDSDT.Configuration(pci: windows, sleep: pcSleep))
        guard case let .buffer(crs)? = aml.objects["\\_SB_.PCI0._CRS"] else { Issue.record("no _CRS"); return }
        let qword = Array(crs.suffix(2 + 46).prefix(46))
        #expect(qword.prefix(6) == [0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x03])   // producer, Cacheable, ReadWrite
        #expect(le(qword[14..<22]) == 0x80_0000_0000 && le(qword[22..<30]) == 0xFF_FFFF_FFFF)
        #expect(le(qword[38..<46]) == 0x80_0000_0000)                      // computed length
    }

    @Test func com1AndTheRTCAreISADevices() throws {
        let aml = try read(PCDSDT.Configuration(pci: pcWindows, sleep: pcSleep))
        #expect(aml.objects["\\_SB_.COM1._HID"] == .integer(0x0105_D041))   // PNP0501
        #expect(aml.objects["\\_SB_.COM1._UID"] == .integer(1))
        #expect(aml.objects["\\_SB_.COM1._STA"] == .integer(0x0F))
        #expect(aml.objects["\\_SB_.COM1._CRS"]
                    == .buffer([0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00]))
        #expect(aml.objects["\\_SB_.RTC_._HID"] == .integer(0x000B_D041))   // PNP0B00
        #expect(aml.objects["\\_SB_.RTC_._STA"] == .integer(0x0F))
        #expect(aml.objects["\\_SB_.RTC_._CRS"]
                    == .buffer([0x47, 0x01, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, 0x22, 0x00, 0x01, 0x79, 0x00]))
        // Without them, neither is there.
        let bare = try read(PCDSDT.Configuration(pci: pcWindows, com1: nil, rtc: nil, sleep: pcSleep))
        #expect(bare.objects.keys.filter { $0.hasPrefix("\\_SB_.COM1") || $0.hasPrefix("\\_SB_.RTC_") }.isEmpty)
    }

    @Test func sleepStatesUseTheDecodedSleepTypes() throws {
        let aml = try read(PCDSDT.Configuration(pci: pcWindows, sleep: pcSleep))
        #expect(aml.objects["\\_S3_"] == .package([.integer(1), .integer(1), .integer(0), .integer(0)]))
        #expect(aml.objects["\\_S5_"] == .package([.integer(0), .integer(0), .integer(0), .integer(0)]))
        #expect(aml.order.suffix(2) == ["\\_S3_", "\\_S5_"])
        let noS3 = try read(PCDSDT.Configuration(pci: pcWindows, sleep: .init(s3: nil, s5: 5)))
        #expect(noS3.objects["\\_S3_"] == nil)
        #expect(noS3.objects["\\_S5_"] == .package([.integer(5), .integer(5), .integer(0), .integer(0)]))
    }

    @Test func anECAMIsReservedAsAMotherboardResource() throws {
        let ecam = ECAMRegion(base: 0xB000_0000, buses: 0...255)
        let windows = PCIHostBridgeWindows(mmio32: 0xC000_0000...0xFEBF_FFFF)
        let aml = try read(PCDSDT.Configuration(pci: windows, ecam: ecam, sleep: pcSleep))
        #expect(aml.objects["\\_SB_.ECAM._HID"] == .integer(0x020C_D041))   // PNP0C02
        #expect(aml.objects["\\_SB_.ECAM._CRS"]
                    == .buffer([0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xB0, 0x00, 0x00, 0x00, 0x10, 0x79, 0x00]))
        // Buses 16–31 of an ECAM above 4 GiB: the region starts at bus 16, 16 MiB long.
        let high = ECAMRegion(base: 0x1_0000_0000, segment: 0, buses: 16...31)
        #expect(high.range == 0x1_0100_0000...0x1_01FF_FFFF)
        let highAML = try read(PCDSDT.Configuration(pci: windows, ecam: high, sleep: pcSleep))
        guard case let .buffer(crs)? = highAML.objects["\\_SB_.ECAM._CRS"] else { Issue.record("no _CRS"); return }
        #expect(crs.prefix(6) == [0x8A, 0x2B, 0x00, 0x00, 0x0D, 0x01])    // consumer, NonCacheable, ReadWrite
        #expect(le(crs[14..<22]) == 0x1_0100_0000 && le(crs[38..<46]) == 0x100_0000)
    }

    @Test func contradictoryDescriptionsAreRefused() {
        let overlap = PCDSDT.Configuration(pci: pcWindows, ecam: ECAMRegion(base: 0xE000_0000), sleep: pcSleep)
        #expect(throws: ACPIError.self) { try PCDSDT.aml(overlap) }
        let low64 = PCDSDT.Configuration(pci: PCIHostBridgeWindows(mmio32: 0xC000_0000...0xFEBF_FFFF,
                                                                  mmio64: 0x8000_0000...0x1_0000_0000), sleep: pcSleep)
        #expect(throws: ACPIError.self) { try PCDSDT.aml(low64) }
        let unaligned = PCDSDT.Configuration(pci: pcWindows, ecam: ECAMRegion(base: 0xB000_1000), sleep: pcSleep)
        #expect(throws: ACPIError.self) { try PCDSDT.aml(unaligned) }
        let buses = PCDSDT.Configuration(pci: PCIHostBridgeWindows(buses: 0...15, mmio32: 0xC000_0000...0xFEBF_FFFF),
                                         ecam: ECAMRegion(base: 0xB000_0000, buses: 0...31), sleep: pcSleep)
        #expect(throws: ACPIError.self) { try PCDSDT.aml(buses) }
        let past = PCDSDT.Configuration(pci: pcWindows, ecam: ECAMRegion(base: 0xFFFF_FFFF_FFF0_0000, buses: 0...1), sleep: pcSleep)
        #expect(throws: ACPIError.self) { try PCDSDT.aml(past) }
    }

    @Test func theTableIsFramedAndChecksummed() throws {
        let table = try PCDSDT.table(PCDSDT.Configuration(pci: pcWindows, sleep: pcSleep))
        #expect(table.prefix(4).elementsEqual("DSDT".utf8))
        #expect(Int(le(table[4..<8])) == table.count)
        #expect(table[8] == 2)
        #expect(table.reduce(0, &+) == 0)
        #expect(try AMLReader.read(Array(table.dropFirst(36))).order.count > 10)
    }
}
