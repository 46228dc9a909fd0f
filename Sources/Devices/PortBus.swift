// PortBus.swift — the x86 I/O port address space: which device owns which
// ports, overlap checking at registration, and the per-exit lookup that turns
// an absolute port into (device, offset).
//
// Lookup design: registrations are kept sorted by base port and found by
// binary search. A machine has a handful to a few dozen port devices, so a
// lookup is at most ~6 comparisons over one contiguous array: noise next to
// the cost of the I/O exit itself. A 64Ki-entry table would be O(1) but
// costs 1 MiB of existential references per bus (copied whenever the struct
// is copied and mutated) and still needs the same overlap check.
import KVMABI

/// Why a registration was refused.
public enum PortBusError: Error, Equatable, CustomStringConvertible {
    /// `newName`'s range overlaps `existingName`'s, first at `port`.
    case overlap(String, String, UInt16)
    /// `name` was registered with `count == 0` at `base`.
    case emptyRange(String, UInt16)
    /// `name`'s range `base ..< base + count` runs past port 0xFFFF.
    case wrapsAround(String, UInt16, UInt16)

    public var description: String {
        switch self {
        case let .overlap(newName, existingName, port):
            return "port device '\(newName)' overlaps '\(existingName)' at port \(hex(port))"
        case let .emptyRange(name, base):
            return "port device '\(name)' registered at \(hex(base)) with an empty range"
        case let .wrapsAround(name, base, count):
            return "port device '\(name)' at \(hex(base)) with \(count) ports runs past port 0xffff"
        }
    }
}

/// The I/O port bus. A struct holding class references: the machine builds it
/// once, then only reads it on the exit path.
public struct PortBus {
    private struct Entry {
        var base: UInt16
        var count: UInt16
        var device: any PortDevice

        /// Exclusive end as Int: `base + count` can be 0x10000.
        var end: Int { Int(base) + Int(count) }
    }

    /// Sorted by `base`, non-overlapping.
    private var entries: [Entry] = []

    public init() {}

    /// Registers `device` at ports `base ..< base + count`.
    public mutating func register(_ device: any PortDevice, base: UInt16, count: UInt16) throws(PortBusError) {
        guard count > 0 else { throw .emptyRange(device.name, base) }
        let end = Int(base) + Int(count)
        guard end <= 0x1_0000 else { throw .wrapsAround(device.name, base, count) }

        // Insertion point: first entry whose base is above ours. Only the
        // neighbours on either side can overlap a sorted, disjoint list.
        let index = firstIndex(withBaseAbove: base)
        if index > 0 {
            let previous = entries[index - 1]
            if previous.end > Int(base) {
                throw .overlap(device.name, previous.device.name, base)
            }
        }
        if index < entries.count {
            let next = entries[index]
            if Int(next.base) < end {
                throw .overlap(device.name, next.device.name, next.base)
            }
        }
        entries.insert(Entry(base: base, count: count, device: device), at: index)
    }

    /// Reads `size` bytes at `port`. Nil when no device owns `port` (the
    /// caller records an event and gives the guest all ones).
    public func read(port: UInt16, size: Int) -> UInt32? {
        guard let entry = entry(containing: port) else { return nil }
        return entry.device.read(offset: port &- entry.base, size: size)
    }

    /// Writes `size` bytes at `port`. Nil when no device owns `port`.
    /// A multi-byte access goes whole to the owner of its first port.
    public func write(port: UInt16, size: Int, value: UInt32) -> DeviceEffect? {
        guard let entry = entry(containing: port) else { return nil }
        return entry.device.write(offset: port &- entry.base, size: size, value: value)
    }

    /// The device owning `port`, for events and diagnostics.
    public func owner(of port: UInt16) -> (any PortDevice)? {
        entry(containing: port)?.device
    }

    /// Every registration, sorted by base port.
    public var registrations: [(base: UInt16, count: UInt16, name: String)] {
        entries.map { (base: $0.base, count: $0.count, name: $0.device.name) }
    }

    // MARK: - Lookup

    /// Index of the first entry with `entry.base > port` (== entries.count
    /// when none).
    private func firstIndex(withBaseAbove port: UInt16) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = low + (high - low) / 2
            if entries[mid].base <= port {
                low = mid + 1
            } else {
                high = mid
            }
        }
        return low
    }

    /// The entry whose range contains `port`: the last one starting at or
    /// below it, if it reaches that far.
    @inline(__always)
    private func entry(containing port: UInt16) -> Entry? {
        let index = firstIndex(withBaseAbove: port)
        guard index > 0 else { return nil }
        let candidate = entries[index - 1]
        return Int(port) < candidate.end ? candidate : nil
    }
}

