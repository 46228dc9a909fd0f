// PlatformTablesTests.swift — the system description tables byte by byte:
// every table's checksum (and the RSDP's two), the FADT's fields at their
// offsets, the MADT's entries for several vCPU counts, the MCFG's
// allocations, and a whole set's layout (alignment, no overlap, the root
// tables listing FADT, MADT and MCFG).

import Testing
import ACPI

let pmBlock = FADT.PMBlock(eventBlock: 0x600, eventLength: 4, controlBlock: 0x604, controlLength: 2,
                           timerBlock: 0x608, timerLength: 4)
let pcFADT = FADT(sciInterrupt: 9, pm: pmBlock, centuryIndex: 0x32)

func pcMADT(vcpus: Int) -> MADT {
    MADT(apicIDs: MADT.apicIDs(vcpuCount: vcpus), ioAPIC: MADT.IOAPIC(id: 0, address: 0xFEC0_0000),
         overrides: MADT.pcOverrides(sci: 9))
}

func pcTables(vcpus: Int = 2, ecam: [ECAMRegion] = []) throws -> PlatformTables {
    let dsdt = try PCDSDT.aml(PCDSDT.Configuration(pci: pcWindows, ecam: ecam.first, sleep: pcSleep))
    return PlatformTables(dsdtAML: dsdt, fadt: pcFADT, madt: pcMADT(vcpus: vcpus), ecam: ecam)
}

let pcLayout = PlatformTables.Layout(tablesBase: 0xE_0000, rsdpAddress: 0xF_0000, facsAddress: 0x9_FFC0)

@Suite struct PlatformTablesTests {
    @Test(arguments: [[], [ECAMRegion(base: 0xB000_0000)]])
    func everyTableSumsToZero(ecam: [ECAMRegion]) throws {
        let blobs = try pcTables(ecam: ecam).blobs(pcLayout)
        let signatures = blobs.map(\.signature)
        #expect(signatures == ["RSD ", "DSDT", "FACS", "FACP", "APIC"] + (ecam.isEmpty ? [] : ["MCFG"]) + ["RSDT", "XSDT"])
        for blob in blobs {
            switch blob.signature {
            case "RSD ":
                #expect(blob.bytes.count == 36)
                #expect(blob.bytes.prefix(20).reduce(0, &+) == 0, "RSDP checksum")
                #expect(blob.bytes.reduce(0, &+) == 0, "RSDP extended checksum")
            case "FACS":
                #expect(blob.bytes.count == 64 && le(blob.bytes[4..<8]) == 64 && blob.bytes[32] == 1)
            default:
                #expect(blob.bytes.reduce(0, &+) == 0, "\(blob.signature) checksum")
                #expect(Int(le(blob.bytes[4..<8])) == blob.bytes.count, "\(blob.signature) length")
                #expect(blob.bytes[10..<16].elementsEqual("DEFLCT".utf8))
            }
        }
        // Flipping any byte of a table breaks its checksum.
        for blob in blobs where blob.signature != "FACS" {
            var broken = blob.bytes
            broken[broken.count / 2] ^= 0x10
            #expect(broken.prefix(blob.signature == "RSD " ? 36 : broken.count).reduce(0, &+) != 0)
        }
    }

    @Test func theLayoutIsAlignedAndDoesNotOverlap() throws {
        let blobs = try pcTables(vcpus: 254, ecam: [ECAMRegion(base: 0xB000_0000)]).blobs(
            PlatformTables.Layout(tablesBase: 0xE_0003, rsdpAddress: 0xF_0000, facsAddress: 0x9_FF81))
        for blob in blobs { #expect(blob.address % 16 == 0, "\(blob.signature)") }
        #expect(blobs.first { $0.signature == "FACS" }?.address == 0x9_FFC0)
        #expect(blobs.first { $0.signature == "DSDT" }?.address == 0xE_0010)
        let sorted = blobs.sorted { $0.address < $1.address }
        for (a, b) in zip(sorted, sorted.dropFirst()) {
            #expect(a.address + UInt64(a.bytes.count) <= b.address, "\(a.signature) overlaps \(b.signature)")
        }
    }

    @Test func theRootTablesListFADTMADTAndMCFG() throws {
        let blobs = try pcTables(ecam: [ECAMRegion(base: 0xB000_0000)]).blobs(pcLayout)
        func address(_ signature: String) -> UInt64? { blobs.first { $0.signature == signature }?.address }
        let rsdp = try #require(blobs.first).bytes
        #expect(rsdp[15] == 2 && le(rsdp[20..<24]) == 36)
        let rsdt = try #require(blobs.first { $0.signature == "RSDT" })
        let xsdt = try #require(blobs.first { $0.signature == "XSDT" })
        #expect(le(rsdp[16..<20]) == rsdt.address && le(rsdp[24..<32]) == xsdt.address)
        let expected = [address("FACP"), address("APIC"), address("MCFG")].compactMap { $0 }
        #expect(expected.count == 3)
        #expect(stride(from: 36, to: xsdt.bytes.count, by: 8).map { le(xsdt.bytes[$0..<($0 + 8)]) } == expected)
        #expect(stride(from: 36, to: rsdt.bytes.count, by: 4).map { le(rsdt.bytes[$0..<($0 + 4)]) } == expected)
    }

    @Test func theFADTFieldsAreAtTheirOffsets() throws {
        let fadt = pcFADT.table(dsdt: 0xE_0000, facs: 0x9_FFC0)
        #expect(fadt.count == 244 && fadt[8] == 3 && fadt.prefix(4).elementsEqual("FACP".utf8))
        #expect(fadt.reduce(0, &+) == 0)
        func gas(_ offset: Int) -> [UInt8] { Array(fadt[offset..<(offset + 12)]) }
        // The FACS in one form only (ACPI: the other zero; Linux lists a FACS given both ways twice).
        #expect(le(fadt[36..<40]) == 0x9_FFC0 && le(fadt[132..<140]) == 0)          // FIRMWARE_CTRL, X_
        let high = pcFADT.table(dsdt: 0xE_0000, facs: 0x1_0000_0040)
        #expect(le(high[36..<40]) == 0 && le(high[132..<140]) == 0x1_0000_0040)
        #expect(le(fadt[40..<44]) == 0xE_0000 && le(fadt[140..<148]) == 0xE_0000)   // DSDT, X_DSDT
        #expect(le(fadt[46..<48]) == 9)                                             // SCI_INT
        #expect(le(fadt[48..<52]) == 0)                                             // SMI_CMD: always ACPI
        #expect(le(fadt[56..<60]) == 0x600 && le(fadt[64..<68]) == 0x604 && le(fadt[76..<80]) == 0x608)
        #expect(Array(fadt[88..<92]) == [4, 2, 0, 4])
        #expect(le(fadt[80..<84]) == 0 && fadt[92] == 0 && fadt[93] == 0)           // no GPE blocks
        #expect(fadt[108] == 0x32)                                                  // CENTURY
        #expect(le(fadt[109..<111]) == 0x0003)                                      // legacy devices, 8042
        let flags = UInt32(le(fadt[112..<116]))
        #expect(flags == FADT.Flags.wbinvd | FADT.Flags.processorC1 | FADT.Flags.powerButton
                    | FADT.Flags.sleepButton | FADT.Flags.resetRegisterSupported)
        #expect(gas(116) == [1, 8, 0, 1, 0x64, 0, 0, 0, 0, 0, 0, 0] && fadt[128] == 0xFE)   // RESET_REG
        #expect(gas(148) == [1, 32, 0, 2, 0x00, 0x06, 0, 0, 0, 0, 0, 0])                 // X_PM1a_EVT_BLK
        #expect(gas(160) == [UInt8](repeating: 0, count: 12))                            // X_PM1b_EVT_BLK
        #expect(gas(172) == [1, 16, 0, 2, 0x04, 0x06, 0, 0, 0, 0, 0, 0])                 // X_PM1a_CNT_BLK
        #expect(gas(208) == [1, 32, 0, 3, 0x08, 0x06, 0, 0, 0, 0, 0, 0])                 // X_PM_TMR_BLK
        #expect(gas(220) == [UInt8](repeating: 0, count: 12))                            // X_GPE0_BLK

        var noReset = pcFADT
        noReset.reset = nil
        noReset.flags |= FADT.Flags.resetRegisterSupported     // follows `reset`, whatever flags say
        let without = noReset.table(dsdt: 0xE_0000, facs: 0x9_FFC0)
        #expect(UInt32(le(without[112..<116])) & FADT.Flags.resetRegisterSupported == 0)
        #expect(without[116..<129].allSatisfy { $0 == 0 })
        var cf9 = pcFADT
        cf9.reset = FADT.Reset(register: .io(port: 0xCF9, bitWidth: 8, accessSize: .byte), value: 0x06)
        let other = cf9.table(dsdt: 0, facs: 0)
        #expect(Array(other[116..<129]) == [1, 8, 0, 1, 0xF9, 0x0C, 0, 0, 0, 0, 0, 0, 0x06])
    }

    @Test(arguments: [1, 2, 8, 254, 255, 1000])
    func theMADTHasALAPICPerVCPU(vcpus: Int) {
        let madt = pcMADT(vcpus: vcpus).table()
        #expect(madt.prefix(4).elementsEqual("APIC".utf8) && madt[8] == 3 && madt.reduce(0, &+) == 0)
        #expect(le(madt[36..<40]) == 0xFEE0_0000 && le(madt[40..<44]) == 1)
        var lapics: [[UInt8]] = [], ioapics: [[UInt8]] = [], overrides: [[UInt8]] = [], nmis: [[UInt8]] = []
        var offset = 44
        while offset + 2 <= madt.count {
            let length = Int(madt[offset + 1])
            guard length >= 2, offset + length <= madt.count else { Issue.record("bad entry at \(offset)"); return }
            let entry = Array(madt[offset..<(offset + length)])
            switch entry[0] {
            case 0: lapics.append(entry)
            case 1: ioapics.append(entry)
            case 2: overrides.append(entry)
            case 4: nmis.append(entry)
            default: Issue.record("entry type \(entry[0])")
            }
            offset += length
        }
        #expect(offset == madt.count)
        let expectedCount = min(max(vcpus, 1), 255)
        #expect(lapics.count == expectedCount)
        for (index, entry) in lapics.enumerated() {
            #expect(entry == [0, 8, UInt8(index), UInt8(index), 1, 0, 0, 0])
        }
        #expect(ioapics == [[1, 12, 0, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0]])
        // IRQ 0 → GSI 2 with ISA's flags (edge, active high); IRQ 9 level, active high (0x000D).
        #expect(overrides == [[2, 10, 0, 0, 2, 0, 0, 0, 0x00, 0x00], [2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0x00]])
        #expect(nmis == [[4, 6, 0xFF, 0, 0, 1]])
    }

    @Test func theMCFGListsEachECAM() {
        let mcfg = MCFG.table([ECAMRegion(base: 0xB000_0000, segment: 0, buses: 0...255),
                               ECAMRegion(base: 0x40_0000_0000, segment: 1, buses: 16...31)])
        #expect(mcfg.prefix(4).elementsEqual("MCFG".utf8) && mcfg[8] == 1 && mcfg.reduce(0, &+) == 0)
        #expect(mcfg.count == 36 + 8 + 2 * 16)
        #expect(mcfg[36..<44].allSatisfy { $0 == 0 })
        #expect(Array(mcfg[44..<60]) == [0x00, 0x00, 0x00, 0xB0, 0, 0, 0, 0, 0x00, 0x00, 0, 255, 0, 0, 0, 0])
        #expect(Array(mcfg[60..<76]) == [0, 0, 0, 0, 0x40, 0, 0, 0, 0x01, 0x00, 16, 31, 0, 0, 0, 0])
    }

    @Test func genericAddressesAndHeaders() {
        #expect(GenericAddress.io(port: 0xCF9, bitWidth: 8, accessSize: .byte).bytes == [1, 8, 0, 1, 0xF9, 0x0C, 0, 0, 0, 0, 0, 0])
        #expect(GenericAddress.notPresent.bytes == [UInt8](repeating: 0, count: 12))
        let table = SystemDescriptionTable.frame(signature: "TEST", revision: 7, body: [1, 2, 3],
                                                 identity: ACPIIdentity(oemID: "TOOLONGID", oemTableID: "T",
                                                                        oemRevision: 0x0102_0304, creatorID: "AB",
                                                                        creatorRevision: 5))
        #expect(table.count == 39 && le(table[4..<8]) == 39 && table[8] == 7 && table.reduce(0, &+) == 0)
        #expect(Array(table[10..<16]) == Array("TOOLON".utf8))
        #expect(Array(table[16..<24]) == Array("T       ".utf8))
        #expect(le(table[24..<28]) == 0x0102_0304 && Array(table[28..<32]) == Array("AB  ".utf8) && le(table[32..<36]) == 5)
        #expect(Array(table.suffix(3)) == [1, 2, 3])
    }
}
