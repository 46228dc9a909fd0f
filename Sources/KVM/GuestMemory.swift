// KVM: guest-physical addresses and guest RAM: a mapping registered with
// KVM_SET_USER_MEMORY_REGION, with bounds-checked access from Swift. The
// mapping is anonymous memory, a memfd (shared: a snapshot writes it from the
// file) or a snapshot's memory file (private: restore maps, never reads).
import KVMABI
internal import CKVM
import Glibc

/// An address in the guest's physical address space.
public struct GuestPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { hex(rawValue) }
}

/// Access outside a guest memory region.
public struct GuestMemoryError: Error, Equatable, CustomStringConvertible {
    public let address: GuestPhysicalAddress
    public let length: Int
    public let regionStart: GuestPhysicalAddress
    public let regionSize: UInt64

    public init(address: GuestPhysicalAddress, length: Int, regionStart: GuestPhysicalAddress, regionSize: UInt64) {
        self.address = address; self.length = length; self.regionStart = regionStart; self.regionSize = regionSize
    }

    public var description: String {
        "guest access at \(address) of \(length) bytes is outside RAM [\(regionStart), +0x\(String(regionSize, radix: 16)))"
    }
}

/// One slot of guest RAM, mapped into this process. Shared by vCPU threads and
/// devices: the guest writes it concurrently anyway, so Swift-side accesses are
/// plain byte copies, bounds-checked, never retained pointers.
public final class GuestMemory: @unchecked Sendable {
    public let slot: UInt32
    public let start: GuestPhysicalAddress
    public let size: UInt64
    /// What the mapping shows: anonymous memory, or a file (kept open here).
    public let backing: GuestMemoryBacking
    /// KVM_MEM_READONLY: guest writes are MMIO exits.
    public let readOnly: Bool
    let host: UnsafeMutableRawPointer

    init(slot: UInt32, start: GuestPhysicalAddress, size: UInt64, host: UnsafeMutableRawPointer,
         backing: GuestMemoryBacking = .anonymous, readOnly: Bool = false) {
        self.slot = slot
        self.start = start
        self.size = size
        self.host = host
        self.backing = backing
        self.readOnly = readOnly
    }

    deinit { Syscall.munmap(host, length: Int(size)) }

    /// The offset of [address, address+length) inside this region, or an error.
    private func offset(of address: GuestPhysicalAddress, length: Int) throws(GuestMemoryError) -> Int {
        let error = GuestMemoryError(address: address, length: length, regionStart: start, regionSize: size)
        guard length >= 0, address.rawValue >= start.rawValue else { throw error }
        let offset = address.rawValue - start.rawValue
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= size else { throw error }
        return Int(offset)
    }

    public func contains(_ address: GuestPhysicalAddress, length: Int = 1) -> Bool {
        (try? offset(of: address, length: length)) != nil
    }

    /// Copies `bytes` into guest memory at `address`.
    public func write(_ bytes: [UInt8], at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let offset = try offset(of: address, length: bytes.count)
        // SAFETY: [offset, offset+count) was checked to lie inside the mapping.
        bytes.withUnsafeBytes { source in
            guard let base = source.baseAddress else { return }
            (host + offset).copyMemory(from: base, byteCount: source.count)
        }
    }

    /// Copies `count` bytes of guest memory at `address`.
    public func read(at address: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let offset = try offset(of: address, length: count)
        // SAFETY: [offset, offset+count) was checked to lie inside the mapping.
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { base.update(from: (host + offset).assumingMemoryBound(to: UInt8.self), count: count) }
            initialized = count
        }
    }

    /// Appends `count` bytes of guest memory at `address` to `buffer`: one
    /// copy into a buffer the caller reuses (migration frames).
    public func append(at address: GuestPhysicalAddress, count: Int, to buffer: inout [UInt8]) throws(GuestMemoryError) {
        let offset = try offset(of: address, length: count)
        // SAFETY: [offset, offset+count) was checked to lie inside the mapping; the bytes are copied before the call returns.
        buffer.append(contentsOf: UnsafeRawBufferPointer(start: host + offset, count: count))
    }

    /// Reads a little-endian integer at `address` (any alignment).
    public func load<T: FixedWidthInteger>(_ type: T.Type = T.self, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> T {
        let offset = try offset(of: address, length: MemoryLayout<T>.size)
        // SAFETY: bounds checked above; loadUnaligned tolerates any alignment.
        return T(littleEndian: (host + offset).loadUnaligned(as: T.self))
    }

    /// Stores a little-endian integer at `address` (any alignment).
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let offset = try offset(of: address, length: MemoryLayout<T>.size)
        // SAFETY: bounds checked above; storeBytes(toByteOffset:) tolerates any alignment.
        (host + offset).storeBytes(of: value.littleEndian, as: T.self)
    }
}
