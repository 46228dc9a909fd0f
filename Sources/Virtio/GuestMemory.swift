// GuestMemory.swift — how virtio code reaches guest RAM: a protocol that
// reads and writes bytes at guest-physical addresses and refuses any access
// that is not entirely inside RAM, the little-endian helpers the rings use,
// and an in-memory implementation for tests. The VMM implements the protocol
// over its mapped memory slots (with the barriers the rings need); nothing
// here holds a pointer.

/// Why a guest-memory access was refused.
public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Some byte of `address ..< address + length` is outside guest RAM
    /// (or the range wraps around the address space).
    case outOfRange(address: UInt64, length: UInt64)

    public var description: String {
        switch self {
        case let .outOfRange(address, length):
            "guest memory 0x\(String(address, radix: 16))+0x\(String(length, radix: 16)) is not inside guest RAM"
        }
    }
}

/// Guest RAM as a device sees it. Implementations check the whole range
/// before touching anything: a refused write changes nothing.
public protocol GuestMemoryAccess: AnyObject {
    /// True when every byte of `address ..< address + length` is RAM (a
    /// zero length is inside when `address` is at most the end of a region).
    func contains(address: UInt64, length: UInt64) -> Bool
    func read(at address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8]
    func write(_ bytes: [UInt8], at address: UInt64) throws(GuestMemoryError)
}

extension GuestMemoryAccess {
    public func readUInt16(at address: UInt64) throws(GuestMemoryError) -> UInt16 {
        let bytes = try read(at: address, count: 2)
        return UInt16(bytes[0]) | UInt16(bytes[1]) << 8
    }

    public func readUInt32(at address: UInt64) throws(GuestMemoryError) -> UInt32 {
        let bytes = try read(at: address, count: 4)
        return bytes.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    public func readUInt64(at address: UInt64) throws(GuestMemoryError) -> UInt64 {
        let bytes = try read(at: address, count: 8)
        return bytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    public func writeUInt16(_ value: UInt16, at address: UInt64) throws(GuestMemoryError) {
        try write([UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8)], at: address)
    }

    public func writeUInt32(_ value: UInt32, at address: UInt64) throws(GuestMemoryError) {
        try write((0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }, at: address)
    }

    public func writeUInt64(_ value: UInt64, at address: UInt64) throws(GuestMemoryError) {
        try write((0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }, at: address)
    }
}

/// Guest RAM held in arrays: one or more regions at guest-physical bases (the
/// PC platform splits RAM around the 32-bit hole). An access must lie inside
/// one region.
public final class InMemoryGuestMemory: GuestMemoryAccess {
    private struct Region {
        var base: UInt64
        var bytes: [UInt8]
    }
    private var regions: [Region]

    /// RAM of `size` bytes at guest-physical 0.
    public convenience init(size: Int) {
        self.init(regions: [(base: 0, size: size)])
    }

    /// RAM regions at the given bases (sizes below zero count as empty).
    public init(regions: [(base: UInt64, size: Int)]) {
        self.regions = regions.map { Region(base: $0.base, bytes: Array(repeating: 0, count: max(0, $0.size))) }
    }

    /// The region index and offset of a whole range, nil when any byte is out.
    private func locate(_ address: UInt64, _ length: UInt64) -> (Int, Int)? {
        let (_, overflow) = address.addingReportingOverflow(length)
        guard !overflow else { return nil }
        for (index, region) in regions.enumerated() where address >= region.base {
            let offset = address - region.base
            if offset <= UInt64(region.bytes.count), length <= UInt64(region.bytes.count) - offset {
                return (index, Int(offset))
            }
        }
        return nil
    }

    public func contains(address: UInt64, length: UInt64) -> Bool { locate(address, length) != nil }

    public func read(at address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let length = UInt64(max(0, count))
        guard let (index, offset) = locate(address, length) else { throw .outOfRange(address: address, length: length) }
        return Array(regions[index].bytes[offset..<(offset + Int(length))])
    }

    public func write(_ bytes: [UInt8], at address: UInt64) throws(GuestMemoryError) {
        guard let (index, offset) = locate(address, UInt64(bytes.count)) else {
            throw .outOfRange(address: address, length: UInt64(bytes.count))
        }
        regions[index].bytes.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }
}
