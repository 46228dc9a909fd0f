// GuestMemoryTests.swift — the in-memory guest RAM the queue tests run on:
// whole-range checks, region boundaries, little-endian helpers.

import Testing
import Virtio

@Suite struct GuestMemoryTests {
    @Test func accessesInsideRAMRoundTripLittleEndian() throws {
        let memory = InMemoryGuestMemory(size: 0x1000)
        try memory.writeUInt64(0x1122_3344_5566_7788, at: 0x10)
        #expect(try memory.read(at: 0x10, count: 2) == [0x88, 0x77])
        #expect(try memory.readUInt32(at: 0x14) == 0x1122_3344)
        #expect(try memory.readUInt16(at: 0x16) == 0x1122)
        try memory.writeUInt16(0xBEEF, at: 0xFFE)
        #expect(try memory.readUInt16(at: 0xFFE) == 0xBEEF)
    }

    @Test func anyByteOutsideRAMIsRefusedAndNothingIsWritten() throws {
        let memory = InMemoryGuestMemory(size: 0x1000)
        #expect(throws: GuestMemoryError.outOfRange(address: 0xFFF, length: 2)) { try memory.readUInt16(at: 0xFFF) }
        #expect(throws: GuestMemoryError.self) { try memory.write([1, 2, 3], at: 0xFFE) }
        #expect(try memory.read(at: 0xFFE, count: 2) == [0, 0])
        #expect(throws: GuestMemoryError.self) { try memory.read(at: UInt64.max, count: 2) }
        #expect(!memory.contains(address: UInt64.max - 1, length: 4))
        #expect(memory.contains(address: 0x1000, length: 0))
        #expect(!memory.contains(address: 0x1001, length: 0))
    }

    @Test func accessesMustStayInsideOneRegion() throws {
        let memory = InMemoryGuestMemory(regions: [(base: 0, size: 0x1000), (base: 0x1000, size: 0x1000), (base: 0x10_0000, size: 0x100)])
        #expect(memory.contains(address: 0x10_0080, length: 0x80))
        #expect(!memory.contains(address: 0xFFC, length: 8)) // spans two regions
        #expect(!memory.contains(address: 0x2000, length: 1))
        try memory.write([9], at: 0x10_00FF)
        #expect(try memory.read(at: 0x10_00FF, count: 1) == [9])
    }
}
