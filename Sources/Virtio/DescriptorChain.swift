// DescriptorChain.swift — a split virtqueue's descriptor chains (virtio 1.2
// §2.7.5): walking one from its head with every rule a hostile driver could
// break checked, and reading/writing its buffers. Walking is bounded: at
// most the queue size of direct descriptors plus one indirect table of at
// most 65,536 entries, each read once, so no chain loops or runs long.

/// Why a queue cannot be used: the device goes to DEVICE_NEEDS_RESET.
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidSize(UInt16)
    case misalignedRing(String, UInt64)
    case ringOutsideMemory(String, UInt64, UInt64)
    case ringsOverlap
    case availableIndexJump(available: UInt16, next: UInt16)
    case headOutOfRange(UInt16)
    case nextOutOfRange(UInt32, limit: UInt32)
    case chainTooLong(UInt32)
    case zeroLengthBuffer(UInt64)
    case bufferOutsideMemory(UInt64, UInt32)
    case indirectNotNegotiated
    case indirectWithNext
    case nestedIndirect
    case indirectTableLength(UInt32)
    case readableAfterWritable
    case memory(GuestMemoryError)
    /// A device-specific request the device cannot parse (too short a header,
    /// no status byte).
    case malformedRequest(String)

    public var description: String {
        switch self {
        case let .invalidSize(size): "queue size \(size) is not a power of two from 1 to the device's maximum"
        case let .misalignedRing(ring, address): "\(ring) at 0x\(String(address, radix: 16)) is misaligned"
        case let .ringOutsideMemory(ring, address, length):
            "\(ring) at 0x\(String(address, radix: 16))+0x\(String(length, radix: 16)) is not inside guest RAM"
        case .ringsOverlap: "the used ring overlaps the descriptor table or the available ring"
        case let .availableIndexJump(available, next): "available index \(available) is more than the queue size ahead of \(next)"
        case let .headOutOfRange(head): "chain head \(head) is past the descriptor table"
        case let .nextOutOfRange(next, limit): "next descriptor \(next) is past the table of \(limit)"
        case let .chainTooLong(limit): "descriptor chain longer than \(limit) (a loop?)"
        case let .zeroLengthBuffer(address): "zero-length buffer at 0x\(String(address, radix: 16))"
        case let .bufferOutsideMemory(address, length):
            "buffer 0x\(String(address, radix: 16))+0x\(String(length, radix: 16)) is not inside guest RAM"
        case .indirectNotNegotiated: "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case .indirectWithNext: "descriptor has both INDIRECT and NEXT"
        case .nestedIndirect: "indirect descriptor inside an indirect table"
        case let .indirectTableLength(length): "indirect table of \(length) bytes (not a non-zero multiple of 16, at most 1 MiB)"
        case .readableAfterWritable: "device-readable descriptor after a device-writable one"
        case let .memory(error): error.description
        case let .malformedRequest(problem): "malformed request: \(problem)"
        }
    }
}

/// One buffer of a chain.
public struct VirtqueueBuffer: Sendable, Equatable {
    public var address: UInt64
    public var length: UInt32

    public init(address: UInt64, length: UInt32) {
        self.address = address
        self.length = length
    }
}

/// A chain popped from the available ring: its head (the id the used ring
/// returns) and its buffers, readable ones first.
public struct DescriptorChain: Sendable, Equatable {
    public var head: UInt16
    public var readable: [VirtqueueBuffer] = []
    public var writable: [VirtqueueBuffer] = []

    public init(head: UInt16) { self.head = head }

    public var readableLength: UInt64 { readable.totalLength }
    public var writableLength: UInt64 { writable.totalLength }

    /// The readable bytes from `offset`, at most `count` of them.
    public func readBytes(from offset: UInt64 = 0, count: Int, memory: any GuestMemoryAccess) throws(VirtqueueError) -> [UInt8] {
        var result: [UInt8] = []
        for piece in readable.slice(from: offset, count: UInt64(max(0, count))) {
            do { result += try memory.read(at: piece.address, count: Int(piece.length)) } catch { throw .memory(error) }
        }
        return result
    }

    /// Writes `bytes` into the writable buffers from `offset`; returns how many
    /// fit.
    @discardableResult
    public func writeBytes(_ bytes: [UInt8], at offset: UInt64 = 0, memory: any GuestMemoryAccess) throws(VirtqueueError) -> Int {
        var written = 0
        for piece in writable.slice(from: offset, count: UInt64(bytes.count)) {
            let end = written + Int(piece.length)
            do { try memory.write(Array(bytes[written..<end]), at: piece.address) } catch { throw .memory(error) }
            written = end
        }
        return written
    }
}

extension [VirtqueueBuffer] {
    /// The guest ranges that hold bytes `offset ..< offset + count` of these
    /// buffers taken as one stream (shorter when the buffers end first).
    public func slice(from offset: UInt64, count: UInt64) -> [VirtqueueBuffer] {
        var pieces: [VirtqueueBuffer] = []
        var skip = offset
        var wanted = count
        for buffer in self where wanted > 0 {
            let length = UInt64(buffer.length)
            if skip >= length { skip -= length; continue }
            let take = Swift.min(length - skip, wanted)
            pieces.append(VirtqueueBuffer(address: buffer.address &+ skip, length: UInt32(take)))
            wanted -= take
            skip = 0
        }
        return pieces
    }

    /// Total bytes.
    public var totalLength: UInt64 { reduce(0) { $0 + UInt64($1.length) } }
}

/// The flags of a descriptor.
enum DescriptorFlags {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4
}

/// Largest indirect table: 65,536 descriptors (1 MiB).
let maximumIndirectDescriptors: UInt32 = 1 << 16

extension SplitQueue {
    /// Walks the chain starting at `head` (already checked < size).
    func walkChain(head: UInt16, memory: any GuestMemoryAccess) throws(VirtqueueError) -> DescriptorChain {
        var chain = DescriptorChain(head: head)
        var table = descriptorTable
        var tableCount = UInt32(size)
        var budget = UInt32(size)
        var inIndirect = false
        var index = UInt32(head)
        while true {
            guard index < tableCount else { throw .nextOutOfRange(index, limit: tableCount) }
            guard budget > 0 else { throw .chainTooLong(tableCount) }
            budget -= 1
            let raw: [UInt8]
            do { raw = try memory.read(at: table &+ UInt64(index) &* 16, count: 16) } catch { throw .memory(error) }
            let address = Self.little(raw, 0, 8)
            let length = UInt32(Self.little(raw, 8, 4))
            let flags = UInt16(Self.little(raw, 12, 2))
            let next = UInt16(Self.little(raw, 14, 2))
            if flags & DescriptorFlags.indirect != 0 {
                guard !inIndirect else { throw .nestedIndirect }
                guard indirectDescriptors else { throw .indirectNotNegotiated }
                guard flags & DescriptorFlags.next == 0 else { throw .indirectWithNext }
                guard length > 0, length % 16 == 0, length / 16 <= maximumIndirectDescriptors else {
                    throw .indirectTableLength(length)
                }
                guard memory.contains(address: address, length: UInt64(length)) else {
                    throw .bufferOutsideMemory(address, length)
                }
                table = address
                tableCount = length / 16
                budget = tableCount
                inIndirect = true
                index = 0
                continue
            }
            guard length > 0 else { throw .zeroLengthBuffer(address) }
            guard memory.contains(address: address, length: UInt64(length)) else {
                throw .bufferOutsideMemory(address, length)
            }
            let buffer = VirtqueueBuffer(address: address, length: length)
            if flags & DescriptorFlags.write != 0 {
                chain.writable.append(buffer)
            } else {
                guard chain.writable.isEmpty else { throw .readableAfterWritable }
                chain.readable.append(buffer)
            }
            guard flags & DescriptorFlags.next != 0 else { return chain }
            index = UInt32(next)
        }
    }

    static func little(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
        (0..<count).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[offset + $1]) }
    }
}
