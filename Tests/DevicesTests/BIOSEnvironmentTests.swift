// BIOSEnvironmentTests.swift — the real-mode environment blobs: every IVT
// entry's handler, where the handler code sits (clear of the ACPI tables),
// and the BIOS data area fields.

import Testing
import Devices

@Suite struct BIOSEnvironmentTests {
    func vector(_ ivt: [UInt8], _ n: Int) -> (segment: UInt16, offset: UInt16) {
        (segment: UInt16(ivt[4 * n + 2]) | UInt16(ivt[4 * n + 3]) << 8,
         offset: UInt16(ivt[4 * n]) | UInt16(ivt[4 * n + 1]) << 8)
    }

    @Test func everyVectorPointsAtAHandlerInTheFSegment() throws {
        let ivt = BIOSEnvironment.interruptVectorTable()
        #expect(ivt.count == 1024)
        let handlers = BIOSEnvironment.handlerBlobs()
        let code = try #require(handlers.first { $0.address == 0xF_FEA5 }).bytes
        let keyboard = try #require(handlers.first { $0.address == 0xF_E987 }).bytes
        for n in 0..<256 {
            let (segment, offset) = vector(ivt, n)
            #expect(segment == 0xF000)
            let expected: UInt16
            switch n {
            case 0x08: expected = 0xFEA5
            case 0x09: expected = 0xE987
            case 0x09...0x0F: expected = 0xFEDE
            case 0x70...0x77: expected = 0xFEE5
            default: expected = 0xFF53
            }
            #expect(offset == expected, "vector \(n)")
        }
        // Each handler ends in IRET; the hardware ones send EOI to 0x20 (and 0xA0).
        #expect(try #require(handlers.first { $0.address == 0xF_FF53 }).bytes == [0xCF])
        let masterEOI = Array(code[(0xFEDE - 0xFEA5)...].prefix(7))
        #expect(masterEOI == [0x50, 0xB0, 0x20, 0xE6, 0x20, 0x58, 0xCF])
        #expect(keyboard == masterEOI)
        let slaveEOI = Array(code[(0xFEE5 - 0xFEA5)...])
        #expect(slaveEOI == [0x50, 0xB0, 0x20, 0xE6, 0xA0, 0xE6, 0x20, 0x58, 0xCF])
        #expect(code[0xFEDE - 0xFEA5 - 1] == 0xCF)
    }

    @Test func handlersStayClearOfTheACPITablesAndTheResetVector() {
        let acpi = ACPITableSet.build(vcpuCount: 254)
        for handler in BIOSEnvironment.handlerBlobs() {
            let range = handler.address..<(handler.address + UInt64(handler.bytes.count))
            #expect(ACPITableSet.biosArea.contains(handler.address))
            #expect(range.upperBound <= 0xF_FFF0)
            for table in acpi {
                #expect(!range.overlaps(table.address..<(table.address + UInt64(table.bytes.count))))
            }
        }
    }

    @Test func dataAreaFieldsAsSeaBIOSSetsThem() throws {
        let blobs = BIOSEnvironment.lowMemoryBlobs(secondsSinceMidnight: 3600)
        func word(_ address: UInt64) -> UInt32? {
            guard let blob = blobs.first(where: { $0.address == address }) else { return nil }
            return blob.bytes.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
        }
        #expect(word(0x400) == 0x3F8)
        #expect(word(0x40E) == 0x9FC0)
        #expect(word(0x413) == 639)
        #expect(word(0x410) == 0x202)
        // One hour of 18.2 Hz ticks: 3600 × 1193182 / 65536.
        #expect(word(0x46C) == 65_543)
        #expect(word(0x9_FC00) == 1)
        // Out-of-range times are clamped, never trap.
        #expect(BIOSEnvironment.lowMemoryBlobs(secondsSinceMidnight: -5).count == blobs.count)
        #expect(BIOSEnvironment.lowMemoryBlobs(secondsSinceMidnight: 1 << 40).count == blobs.count)
    }
}
