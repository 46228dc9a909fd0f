// VirtioBlock.swift — the virtio-blk request core (virtio 1.2 §5.2): one
// request queue, the configuration layout (capacity, seg_max, blk_size,
// discard and write-zeroes limits), and each request parsed from its
// chain — a 16-byte header (type, sector) at the start of the readable
// bytes, data, and the status byte as the last writable byte, whatever the
// descriptor boundaries — then served against a BlockBackend: IN, OUT,
// FLUSH, GET_ID, DISCARD, WRITE_ZEROES. Out-of-range sectors, misaligned
// lengths, writes to a read-only disk and back-end failures are answered
// VIRTIO_BLK_S_IOERR; unknown or unnegotiated types VIRTIO_BLK_S_UNSUPP. A
// chain without room for a header or a status byte cannot be answered: the
// device breaks (QEMU does the same). Data moves in pieces of at most 1 MiB,
// so a request's size never sets the VMM's memory use.

public final class VirtioBlockDevice: VirtioDevice {
    public enum Feature {
        public static let segmentMax: UInt64 = 1 << 2
        public static let readOnly: UInt64 = 1 << 5
        public static let blockSize: UInt64 = 1 << 6
        public static let flush: UInt64 = 1 << 9
        public static let discard: UInt64 = 1 << 13
        public static let writeZeroes: UInt64 = 1 << 14
    }

    public enum RequestType: UInt32 {
        case read = 0, write = 1, flush = 4, getID = 8, discard = 11, writeZeroes = 13
    }

    public enum Status: UInt8 {
        case ok = 0, ioError = 1, unsupported = 2
    }

    public static let sectorSize: UInt64 = 512
    public static let headerSize: UInt64 = 16
    public static let idBytes = 20
    /// One discard/write-zeroes segment per request (as QEMU offers), each at
    /// most this many sectors.
    public static let maximumDiscardSectors: UInt32 = (1 << 22) - 1
    static let transferPiece: UInt64 = 1 << 20

    public let deviceType = VirtioDeviceType.block
    public let pciClassCode: UInt32 = 0x01_8000
    public let backend: any BlockBackend
    public let serial: [UInt8]
    public let queueSize: UInt16
    public private(set) var negotiatedFeatures: UInt64 = 0

    /// `serial` is GET_ID's answer (at most 20 bytes are used).
    public init(backend: any BlockBackend, serial: String = "", queueSize: UInt16 = 256) {
        self.backend = backend
        self.serial = Array(serial.utf8.prefix(Self.idBytes))
        self.queueSize = queueSize
    }

    public var deviceFeatures: UInt64 {
        Feature.segmentMax | Feature.blockSize | Feature.flush | Feature.discard | Feature.writeZeroes
            | (backend.isReadOnly ? Feature.readOnly : 0)
    }

    public var queueMaxSizes: [UInt16] { [queueSize] }

    /// struct virtio_blk_config up to write_zeroes_may_unmap (60 bytes).
    public var configBytes: [UInt8] {
        var bytes = Array(repeating: UInt8(0), count: 0x3C)
        func put(_ offset: Int, _ value: UInt64, _ width: Int) {
            for index in 0..<width { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        put(0x00, backend.sectorCount, 8)                   // capacity
        put(0x0C, UInt64(max(Int(queueSize) - 2, 1)), 4)    // seg_max: the queue less header and status
        put(0x14, Self.sectorSize, 4)                       // blk_size
        put(0x22, 1, 2)                                     // num_queues
        put(0x24, UInt64(Self.maximumDiscardSectors), 4)    // max_discard_sectors
        put(0x28, 1, 4)                                     // max_discard_seg
        put(0x2C, 1, 4)                                     // discard_sector_alignment
        put(0x30, UInt64(Self.maximumDiscardSectors), 4)    // max_write_zeroes_sectors
        put(0x34, 1, 4)                                     // max_write_zeroes_seg
        put(0x38, 1, 1)                                     // write_zeroes_may_unmap
        return bytes
    }

    public func activate(features: UInt64) { negotiatedFeatures = features }
    public func reset() { negotiatedFeatures = 0 }

    public func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        while let chain = try queue.popAvailable(memory: memory) {
            let written = try serve(chain, memory: memory)
            try queue.pushUsed(head: chain.head, length: written, memory: memory)
        }
    }

    /// Serves one request: returns the bytes written to the driver (data and
    /// the status byte).
    func serve(_ chain: DescriptorChain, memory: any GuestMemoryAccess) throws(VirtqueueError) -> UInt32 {
        guard chain.readableLength >= Self.headerSize else { throw .malformedRequest("virtio-blk request without its 16-byte header") }
        guard chain.writableLength >= 1 else { throw .malformedRequest("virtio-blk request without a status byte") }
        let header = try chain.readBytes(count: Int(Self.headerSize), memory: memory)
        let type = UInt32(SplitQueue.little(header, 0, 4))
        let sector = SplitQueue.little(header, 8, 8)
        let dataIn = chain.writable.slice(from: 0, count: chain.writableLength - 1)
        let dataOut = chain.readable.slice(from: Self.headerSize, count: chain.readableLength - Self.headerSize)
        var written: UInt64 = 0
        let status: Status
        switch RequestType(rawValue: type) {
        case .read:
            status = try transfer(sector: sector, pieces: dataIn, toGuest: true, memory: memory)
            if status == .ok { written = dataIn.totalLength }
        case .write:
            status = backend.isReadOnly ? .ioError : try transfer(sector: sector, pieces: dataOut, toGuest: false, memory: memory)
        case .flush:
            status = (try? backend.flush()) != nil ? .ok : .ioError
        case .getID:
            let id = serial + Array(repeating: 0, count: Self.idBytes - serial.count)
            written = UInt64(try chain.writeBytes(Array(id.prefix(Int(min(dataIn.totalLength, UInt64(Self.idBytes))))), memory: memory))
            status = .ok
        case .discard:
            status = try discardOrZero(dataOut, feature: Feature.discard, memory: memory)
        case .writeZeroes:
            status = try discardOrZero(dataOut, feature: Feature.writeZeroes, memory: memory)
        case nil:
            status = .unsupported
        }
        try chain.writeBytes([status.rawValue], at: chain.writableLength - 1, memory: memory)
        return UInt32(truncatingIfNeeded: written + 1)
    }

    /// Whether `count` sectors from `sector` are on the disk (no overflow).
    private func inRange(_ sector: UInt64, _ count: UInt64) -> Bool {
        let (end, overflow) = sector.addingReportingOverflow(count)
        return !overflow && end <= backend.sectorCount
    }

    /// IN or OUT: whole sectors inside the disk, moved piece by piece.
    private func transfer(sector: UInt64, pieces: [VirtqueueBuffer], toGuest: Bool, memory: any GuestMemoryAccess) throws(VirtqueueError) -> Status {
        let length = pieces.totalLength
        guard length % Self.sectorSize == 0, inRange(sector, length / Self.sectorSize) else { return .ioError }
        var offset = sector * Self.sectorSize
        for piece in pieces {
            var done: UInt64 = 0
            while done < UInt64(piece.length) {
                let count = min(UInt64(piece.length) - done, Self.transferPiece)
                let address = piece.address + done
                do {
                    if toGuest {
                        try memory.write(try backend.read(at: offset, count: Int(count)), at: address)
                    } else {
                        try backend.write(try memory.read(at: address, count: Int(count)), at: offset)
                    }
                } catch let error as GuestMemoryError {
                    throw .memory(error)
                } catch {
                    return .ioError
                }
                done += count
                offset += count
            }
        }
        return .ok
    }

    /// DISCARD or WRITE_ZEROES: one 16-byte segment {sector, num_sectors,
    /// flags}; the unmap flag only for write zeroes (§5.2.6.2).
    private func discardOrZero(_ data: [VirtqueueBuffer], feature: UInt64, memory: any GuestMemoryAccess) throws(VirtqueueError) -> Status {
        guard negotiatedFeatures & feature != 0 else { return .unsupported }
        guard !backend.isReadOnly, data.totalLength == 16 else { return .ioError }
        var segment: [UInt8] = []
        for piece in data {
            do { segment += try memory.read(at: piece.address, count: Int(piece.length)) } catch { throw .memory(error) }
        }
        let sector = SplitQueue.little(segment, 0, 8)
        let sectors = SplitQueue.little(segment, 8, 4)
        let flags = SplitQueue.little(segment, 12, 4)
        let allowedFlags: UInt64 = feature == Feature.writeZeroes ? 1 : 0
        guard flags & ~allowedFlags == 0 else { return .unsupported }
        guard sectors <= UInt64(Self.maximumDiscardSectors), inRange(sector, sectors) else { return .ioError }
        do {
            if feature == Feature.discard {
                try backend.discard(at: sector * Self.sectorSize, count: sectors * Self.sectorSize)
            } else {
                try backend.writeZeroes(at: sector * Self.sectorSize, count: sectors * Self.sectorSize)
            }
        } catch {
            return .ioError
        }
        return .ok
    }
}
