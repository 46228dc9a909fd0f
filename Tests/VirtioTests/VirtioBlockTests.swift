// VirtioBlockTests.swift — the virtio-blk request core against an in-memory
// disk: configuration layout, reads and writes whatever the descriptor
// boundaries, range and alignment errors, read-only disks, flush, GET_ID,
// discard and write zeroes, unknown types, and chains it cannot answer.

import Testing
import Virtio

@Suite struct VirtioBlockTests {
    let memory = InMemoryGuestMemory(size: 0x80_0000)
    static let header: UInt64 = 0x10_0000, data: UInt64 = 0x20_0000, status: UInt64 = 0x7F_0000

    enum T { static let read: UInt32 = 0, write: UInt32 = 1, flush: UInt32 = 4, getID: UInt32 = 8, discard: UInt32 = 11, zeroes: UInt32 = 13 }

    func writeHeader(type: UInt32, sector: UInt64) throws {
        try memory.writeUInt32(type, at: Self.header)
        try memory.writeUInt32(0, at: Self.header + 4)
        try memory.writeUInt64(sector, at: Self.header + 8)
        try memory.write([0xEE], at: Self.status)
    }

    /// Runs one request made of `descriptors` (address, length, writable)
    /// and returns (status byte, used length).
    func run(_ device: VirtioBlockDevice, _ descriptors: [(UInt64, UInt32, Bool)],
             features: UInt64 = VirtioBlockDevice.Feature.discard | VirtioBlockDevice.Feature.writeZeroes) throws -> (UInt8, UInt32) {
        let ring = TestRing(memory: memory, size: 8)
        for (index, (address, length, writable)) in descriptors.enumerated() {
            let last = index == descriptors.count - 1
            try ring.setDescriptor(index, address: address, length: length,
                                   flags: (last ? 0 : TestRing.next) | (writable ? TestRing.write : 0), next: UInt16(index + 1))
        }
        try ring.makeAvailable(0)
        var queue = try ring.queue()
        device.activate(features: features)
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(ring.usedIndex == 1)
        let used = try ring.usedElement(0)
        return (try memory.read(at: Self.status, count: 1)[0], used.length)
    }

    func request(_ device: VirtioBlockDevice, type: UInt32, sector: UInt64, dataLength: UInt32, dataWritable: Bool) throws -> (UInt8, UInt32) {
        try writeHeader(type: type, sector: sector)
        var descriptors: [(UInt64, UInt32, Bool)] = [(Self.header, 16, false)]
        if dataLength > 0 { descriptors.append((Self.data, dataLength, dataWritable)) }
        descriptors.append((Self.status, 1, true))
        return try run(device, descriptors)
    }

    @Test func configurationLayoutAndFeatures() {
        let device = VirtioBlockDevice(backend: InMemoryBlockBackend(sectors: 2048), queueSize: 128)
        let config = device.configBytes
        func field(_ offset: Int, _ width: Int) -> UInt64 { littleEndianField(config, offset, width) }
        #expect(config.count == 60)
        #expect(field(0, 8) == 2048)
        #expect(field(0x0C, 4) == 126)
        #expect(field(0x14, 4) == 512)
        #expect(field(0x22, 2) == 1)
        #expect(field(0x24, 4) == (1 << 22) - 1 && field(0x28, 4) == 1)
        #expect(field(0x34, 4) == 1 && field(0x38, 1) == 1)
        #expect(device.deviceFeatures & VirtioBlockDevice.Feature.readOnly == 0)
        #expect(device.deviceFeatures & VirtioBlockDevice.Feature.flush != 0)
        let readOnly = VirtioBlockDevice(backend: InMemoryBlockBackend(sectors: 1, readOnly: true))
        #expect(readOnly.deviceFeatures & VirtioBlockDevice.Feature.readOnly != 0)
        #expect(readOnly.deviceType.pciDeviceID == 0x1042)
    }

    @Test func writeThenReadBackWhateverTheDescriptorBoundaries() throws {
        let disk = InMemoryBlockBackend(sectors: 64)
        let device = VirtioBlockDevice(backend: disk)
        let payload = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try memory.write(payload, at: Self.data)
        // Header split 10 + 6 across descriptors, data split 100 + 924.
        try writeHeader(type: T.write, sector: 5)
        let split: [(UInt64, UInt32, Bool)] = [(Self.header, 10, false), (Self.header + 10, 6, false),
                                               (Self.data, 100, false), (Self.data + 100, 924, false), (Self.status, 1, true)]
        #expect(try run(device, split) == (0, 1))
        #expect(Array(disk.bytes[2560..<3584]) == payload)

        // Read it back with the status byte in the same buffer as the data.
        try writeHeader(type: T.read, sector: 5)
        try memory.write(Array(repeating: 0xEE, count: 1025), at: 0x30_0000)
        let readBack: [(UInt64, UInt32, Bool)] = [(Self.header, 16, false), (0x30_0000, 1025, true)]
        let ring = TestRing(memory: memory, size: 8)
        for (index, (address, length, writable)) in readBack.enumerated() {
            try ring.setDescriptor(index, address: address, length: length,
                                   flags: (index == 0 ? TestRing.next : 0) | (writable ? TestRing.write : 0), next: 1)
        }
        try ring.makeAvailable(0)
        var queue = try ring.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(try memory.read(at: 0x30_0000, count: 1024) == payload)
        #expect(try memory.read(at: 0x30_0400, count: 1) == [0])
        #expect(try ring.usedElement(0).length == 1025)
    }

    @Test func largeRequestsMoveInPieces() throws {
        let disk = InMemoryBlockBackend(sectors: 8192) // 4 MiB
        let device = VirtioBlockDevice(backend: disk)
        let size = 3 << 20
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 >> 9) }
        try memory.write(payload, at: Self.data)
        #expect(try request(device, type: T.write, sector: 1000, dataLength: UInt32(size), dataWritable: false).0 == 0)
        try memory.write(Array(repeating: 0, count: size), at: Self.data)
        #expect(try request(device, type: T.read, sector: 1000, dataLength: UInt32(size), dataWritable: true) == (0, UInt32(size + 1)))
        #expect(try memory.read(at: Self.data, count: size) == payload)
    }

    @Test func outOfRangeAndMisalignedRequestsAreIOErrors() throws {
        let disk = InMemoryBlockBackend(sectors: 8)
        let device = VirtioBlockDevice(backend: disk)
        try memory.write(Array(repeating: 0xAB, count: 1024), at: Self.data)
        #expect(try request(device, type: T.write, sector: 7, dataLength: 1024, dataWritable: false) == (1, 1))
        #expect(try request(device, type: T.read, sector: 8, dataLength: 512, dataWritable: true) == (1, 1))
        #expect(try request(device, type: T.read, sector: UInt64.max, dataLength: 512, dataWritable: true).0 == 1)
        #expect(try request(device, type: T.write, sector: 0, dataLength: 100, dataWritable: false).0 == 1)
        #expect(disk.bytes.allSatisfy { $0 == 0 })
        #expect(try request(device, type: T.write, sector: 6, dataLength: 1024, dataWritable: false).0 == 0)
    }

    @Test func readOnlyDisksRefuseWritesButFlush() throws {
        let disk = InMemoryBlockBackend(sectors: 8, readOnly: true)
        let device = VirtioBlockDevice(backend: disk)
        try memory.write(Array(repeating: 0xAB, count: 512), at: Self.data)
        #expect(try request(device, type: T.write, sector: 0, dataLength: 512, dataWritable: false).0 == 1)
        #expect(disk.bytes.allSatisfy { $0 == 0 })
        try memory.write(Array(repeating: 0, count: 16), at: Self.data)
        #expect(try request(device, type: T.discard, sector: 0, dataLength: 16, dataWritable: false).0 == 1)
        #expect(try request(device, type: T.flush, sector: 0, dataLength: 0, dataWritable: false).0 == 0)
        #expect(disk.flushCount == 1)
        #expect(try request(device, type: T.read, sector: 0, dataLength: 512, dataWritable: true).0 == 0)
    }

    @Test func backendFailuresAreIOErrors() throws {
        let disk = InMemoryBlockBackend(sectors: 8)
        let device = VirtioBlockDevice(backend: disk)
        disk.failing = true
        #expect(try request(device, type: T.flush, sector: 0, dataLength: 0, dataWritable: false).0 == 1)
        #expect(try request(device, type: T.read, sector: 0, dataLength: 512, dataWritable: true).0 == 1)
    }

    @Test func getIDAnswersTheSerialPadded() throws {
        let device = VirtioBlockDevice(backend: InMemoryBlockBackend(sectors: 8), serial: "disk-0")
        try memory.write(Array(repeating: 0xFF, count: 32), at: Self.data)
        #expect(try request(device, type: T.getID, sector: 0, dataLength: 20, dataWritable: true) == (0, 21))
        #expect(try memory.read(at: Self.data, count: 20) == Array("disk-0".utf8) + Array(repeating: 0, count: 14))
        #expect(try request(device, type: T.getID, sector: 0, dataLength: 4, dataWritable: true) == (0, 5))
        let long = VirtioBlockDevice(backend: InMemoryBlockBackend(sectors: 8), serial: String(repeating: "x", count: 30))
        #expect(try request(long, type: T.getID, sector: 0, dataLength: 32, dataWritable: true) == (0, 21))
    }

    func segment(sector: UInt64, sectors: UInt32, flags: UInt32) throws {
        try memory.writeUInt64(sector, at: Self.data)
        try memory.writeUInt32(sectors, at: Self.data + 8)
        try memory.writeUInt32(flags, at: Self.data + 12)
    }

    @Test func discardAndWriteZeroes() throws {
        let disk = InMemoryBlockBackend(sectors: 16)
        let device = VirtioBlockDevice(backend: disk)
        try memory.write(Array(repeating: 0x5A, count: 8192), at: 0x40_0000)
        try memory.write(Array(repeating: 0x5A, count: 16), at: Self.data)
        try writeHeader(type: T.write, sector: 0)
        #expect(try run(device, [(Self.header, 16, false), (0x40_0000, 8192, false), (Self.status, 1, true)]).0 == 0)

        try segment(sector: 2, sectors: 2, flags: 1)
        #expect(try request(device, type: T.zeroes, sector: 0, dataLength: 16, dataWritable: false).0 == 0)
        #expect(disk.bytes[1023] == 0x5A && disk.bytes[1024..<2048].allSatisfy { $0 == 0 } && disk.bytes[2048] == 0x5A)
        #expect(try request(device, type: T.discard, sector: 0, dataLength: 16, dataWritable: false).0 == 2) // unmap flag on discard
        try segment(sector: 8, sectors: 1, flags: 0)
        #expect(try request(device, type: T.discard, sector: 0, dataLength: 16, dataWritable: false).0 == 0)
        #expect(disk.bytes[4096..<4608].allSatisfy { $0 == 0 })
        try segment(sector: 15, sectors: 2, flags: 0)
        #expect(try request(device, type: T.discard, sector: 0, dataLength: 16, dataWritable: false).0 == 1)
        try segment(sector: 0, sectors: 1, flags: 4)
        #expect(try request(device, type: T.zeroes, sector: 0, dataLength: 16, dataWritable: false).0 == 2)
        #expect(try request(device, type: T.zeroes, sector: 0, dataLength: 32, dataWritable: false).0 == 1) // two segments
        // Not negotiated: unsupported.
        try segment(sector: 0, sectors: 1, flags: 0)
        try writeHeader(type: T.discard, sector: 0)
        #expect(try run(device, [(Self.header, 16, false), (Self.data, 16, false), (Self.status, 1, true)], features: 0).0 == 2)
        #expect(disk.bytes[0] == 0x5A)
    }

    @Test func unknownTypesAreUnsupported() throws {
        let device = VirtioBlockDevice(backend: InMemoryBlockBackend(sectors: 8))
        #expect(try request(device, type: 99, sector: 0, dataLength: 0, dataWritable: false) == (2, 1))
        #expect(try request(device, type: 10, sector: 0, dataLength: 0, dataWritable: false).0 == 2) // GET_LIFETIME: not offered
    }

    @Test func chainsWithoutHeaderOrStatusCannotBeAnswered() throws {
        let device = VirtioBlockDevice(backend: InMemoryBlockBackend(sectors: 8))
        try writeHeader(type: T.read, sector: 0)
        #expect(throws: VirtqueueError.self) { try run(device, [(Self.header, 8, false), (Self.status, 1, true)]) }
        #expect(throws: VirtqueueError.self) { try run(device, [(Self.header, 16, false)]) }
    }
}

/// A little-endian field of configuration bytes.
func littleEndianField(_ bytes: [UInt8], _ offset: Int, _ width: Int) -> UInt64 {
    (0..<width).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[offset + $1]) }
}
