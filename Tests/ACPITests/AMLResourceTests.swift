// AMLResourceTests.swift — each resource descriptor against bytes computed by
// hand from ACPI 6.5 §6.4 (small and large items), the End Tag, a whole
// ResourceTemplate as a buffer, and the ranges the encoder refuses.

import Testing
import ACPI

@Suite struct AMLResourceTests {
    func bytes(_ resource: AMLResource) throws -> [UInt8] { try resource.encode() }

    @Test func ioPorts() throws {
        // Tag 0x47 (item 0x08, length 7), Decode16, min, max, alignment, length.
        #expect(try bytes(.io(decode16: true, minimum: 0x3F8, maximum: 0x3F8, alignment: 1, length: 8))
                    == [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08])
        #expect(try bytes(.io(decode16: false, minimum: 0x60, maximum: 0x60, alignment: 1, length: 1))
                    == [0x47, 0x00, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01])
        // Tag 0x4B (item 0x09, length 3), a 10-bit base, length.
        #expect(try bytes(.fixedIO(base: 0x60, length: 1)) == [0x4B, 0x60, 0x00, 0x01])
        #expect(throws: AMLError.self) { try bytes(.fixedIO(base: 0x400, length: 1)) }
        #expect(throws: AMLError.self) { try bytes(.io(decode16: false, minimum: 0x400, maximum: 0x400, alignment: 1, length: 1)) }
        #expect(throws: AMLError.self) { try bytes(.io(decode16: true, minimum: 0x80, maximum: 0x70, alignment: 1, length: 1)) }
    }

    @Test func isaIRQs() throws {
        // IRQNoFlags: tag 0x22 (item 0x04, length 2), the 16-bit mask.
        #expect(try bytes(.irqNoFlags([4])) == [0x22, 0x10, 0x00])
        #expect(try bytes(.irqNoFlags([8])) == [0x22, 0x00, 0x01])
        #expect(try bytes(.irqNoFlags([3, 4])) == [0x22, 0x18, 0x00])
        #expect(try bytes(.irqNoFlags([])) == [0x22, 0x00, 0x00])
        // IRQ: tag 0x23 (length 3), mask, flags _HE bit 0, _LL bit 3, _SHR bit 4.
        #expect(try bytes(.irq([9], trigger: .level, polarity: .activeLow, shared: true)) == [0x23, 0x00, 0x02, 0x18])
        #expect(try bytes(.irq([1], trigger: .edge, polarity: .activeHigh, shared: false)) == [0x23, 0x02, 0x00, 0x01])
        #expect(throws: AMLError.outOfRange("ISA IRQ (0–15)", value: 16)) { try bytes(.irqNoFlags([16])) }
    }

    @Test func extendedInterrupts() throws {
        // Tag 0x89, length 6, flags (consumer bit 0, level), count 1, GSI 5.
        #expect(try bytes(.interrupt([5], usage: .consumer, trigger: .level, polarity: .activeHigh, shared: false))
                    == [0x89, 0x06, 0x00, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00])
        // Consumer | _HE (bit 1) | _LL (bit 2) | _SHR (bit 3), two GSIs: length 10.
        #expect(try bytes(.interrupt([0x20, 0x21], usage: .consumer, trigger: .edge, polarity: .activeLow, shared: true))
                    == [0x89, 0x0A, 0x00, 0x0F, 0x02, 0x20, 0x00, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00])
        #expect(try bytes(.interrupt([0x1_0000], usage: .producer, trigger: .level, polarity: .activeHigh, shared: false))
                    == [0x89, 0x06, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00])
        #expect(throws: AMLError.self) {
            try bytes(.interrupt([], usage: .consumer, trigger: .edge, polarity: .activeHigh, shared: false))
        }
    }

    @Test func fixedMemory() throws {
        // Tag 0x86, length 9, ReadWrite, base, length.
        #expect(try bytes(.memory32Fixed(writable: true, base: 0xB000_0000, length: 0x1000_0000))
                    == [0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xB0, 0x00, 0x00, 0x00, 0x10])
        #expect(try bytes(.memory32Fixed(writable: false, base: 0xFEC0_0000, length: 0x1000))
                    == [0x86, 0x09, 0x00, 0x00, 0x00, 0x00, 0xC0, 0xFE, 0x00, 0x10, 0x00, 0x00])
        #expect(throws: AMLError.self) { try bytes(.memory32Fixed(writable: true, base: 0xFFFF_F000, length: 0x2000)) }
    }

    @Test func wordAddressSpaces() throws {
        // Tag 0x88, length 13, type 2 (bus), general flags 0x0C (MinFixed,
        // MaxFixed, PosDecode, producer), type flags 0; granularity, min,
        // max, translation, length (computed: 0x100).
        #expect(try bytes(.wordBusNumber(0...0xFF, usage: .producer))
                    == [0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x01])
        // Type 1 (I/O), type flags 3 (EntireRange).
        #expect(try bytes(.wordIO(0...0x0CF7, usage: .producer))
                    == [0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x00, 0xF7, 0x0C, 0x00, 0x00, 0xF8, 0x0C])
        #expect(try bytes(.wordIO(0x0D00...0xFFFF, usage: .producer))
                    == [0x88, 0x0D, 0x00, 0x01, 0x0C, 0x03, 0x00, 0x00, 0x00, 0x0D, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0xF3])
        // Consumer: general flags bit 0.
        #expect(try bytes(.wordBusNumber(1...1, usage: .consumer))[4] == 0x0D)
        // 0x10000 ports do not fit the 16-bit length.
        #expect(throws: AMLError.self) { try bytes(.wordIO(0...0xFFFF, usage: .producer)) }
    }

    @Test func dwordAndQWordMemory() throws {
        // Tag 0x87, length 23, type 0, flags 0x0C, type flags 0x01 (ReadWrite, NonCacheable).
        #expect(try bytes(.dwordMemory(0xC000_0000...0xFEBF_FFFF, usage: .producer, caching: .nonCacheable, writable: true))
                    == [0x87, 0x17, 0x00, 0x00, 0x0C, 0x01,
                        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0xFF, 0xFF, 0xBF, 0xFE,
                        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x3E])
        // Tag 0x8A, length 43, type flags 0x03 (ReadWrite, Cacheable).
        let q = try bytes(.qwordMemory(0x1_0000_0000...0x1_FFFF_FFFF, usage: .producer, caching: .cacheable, writable: true))
        #expect(q == [0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x03]
                    + [0, 0, 0, 0, 0, 0, 0, 0]
                    + [0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]
                    + [0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00]
                    + [0, 0, 0, 0, 0, 0, 0, 0]
                    + [0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00])
        #expect(try bytes(.dwordMemory(0...0, usage: .consumer, caching: .prefetchable, writable: false))[5] == 0x06)
        #expect(throws: AMLError.self) { try bytes(.dwordMemory(0...UInt32.max, usage: .producer, caching: .cacheable, writable: true)) }
        #expect(throws: AMLError.self) { try bytes(.qwordMemory(0...UInt64.max, usage: .producer, caching: .cacheable, writable: true)) }
    }

    @Test func templatesEndWithTheEndTag() throws {
        #expect(try AMLResource.template([]) == [0x79, 0x00])
        // BufferOp, PkgLength 8, BufferSize 5 (IRQNoFlags 3 + End Tag 2).
        #expect(try AML.resourceTemplate([.irqNoFlags([4])]).encode() == [0x11, 0x08, 0x0A, 0x05, 0x22, 0x10, 0x00, 0x79, 0x00])
        // COM1's _CRS as iasl compiles it.
        #expect(try AML.crs([.io(decode16: true, minimum: 0x3F8, maximum: 0x3F8, alignment: 1, length: 8), .irqNoFlags([4])]).encode()
                    == [0x08, 0x5F, 0x43, 0x52, 0x53, 0x11, 0x10, 0x0A, 0x0D,
                        0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, 0x00])
        // A bad descriptor anywhere fails the whole template.
        #expect(throws: AMLError.self) { try AML.resourceTemplate([.irqNoFlags([4]), .irqNoFlags([20])]).encode() }
    }
}
