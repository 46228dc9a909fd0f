// PCIBarAllocator.swift — firmware's job of placing BARs: each naturally
// aligned (a BAR's address is a multiple of its size), 32-bit memory BARs in
// the 32-bit hole, 64-bit ones in the 64-bit window above RAM when there is
// one (else in the hole), I/O BARs in an I/O window. A bump allocator: devices
// are placed once, when they are added, and never freed.

/// The address windows BARs are placed in.
public struct PCIWindows: Sendable, Equatable {
    /// The 32-bit hole (below 4 GiB, above RAM).
    public var mmio32: ClosedRange<UInt64>
    /// The window above RAM for 64-bit BARs, if the platform has one.
    public var mmio64: ClosedRange<UInt64>?
    /// Ports for I/O BARs, if any.
    public var io: ClosedRange<UInt64>?

    public init(mmio32: ClosedRange<UInt64>, mmio64: ClosedRange<UInt64>? = nil, io: ClosedRange<UInt64>? = nil) {
        self.mmio32 = mmio32
        self.mmio64 = mmio64
        self.io = io
    }
}

/// Places BARs in `PCIWindows`, lowest address first.
public struct PCIBarAllocator: Sendable {
    public let windows: PCIWindows
    private var next32: UInt64
    private var next64: UInt64?
    private var nextIO: UInt64?

    public init(windows: PCIWindows) {
        self.windows = windows
        next32 = windows.mmio32.lowerBound
        next64 = windows.mmio64?.lowerBound
        nextIO = windows.io?.lowerBound
    }

    /// An address for a BAR of this definition, or nil when its window has no
    /// room left (or does not exist).
    public mutating func allocate(_ definition: PCIBarDefinition) -> UInt64? {
        switch definition.kind {
        case .memory32:
            return take(definition.size, from: &next32, limit: windows.mmio32.upperBound)
        case .memory64:
            if var cursor = next64, let window = windows.mmio64,
               let address = take(definition.size, from: &cursor, limit: window.upperBound) {
                next64 = cursor
                return address
            }
            return take(definition.size, from: &next32, limit: windows.mmio32.upperBound)
        case .io:
            guard var cursor = nextIO, let window = windows.io,
                  let address = take(definition.size, from: &cursor, limit: window.upperBound) else { return nil }
            nextIO = cursor
            return address
        }
    }

    /// Aligns `cursor` up to `size` and takes `size` bytes if they end at or
    /// below `limit`; overflow means no room.
    private func take(_ size: UInt64, from cursor: inout UInt64, limit: UInt64) -> UInt64? {
        let (sum, overflow) = cursor.addingReportingOverflow(size - 1)
        guard !overflow else { return nil }
        let address = sum & ~(size - 1)
        let (end, endOverflow) = address.addingReportingOverflow(size - 1)
        guard !endOverflow, end <= limit else { return nil }
        // At the very top of the address space the cursor stays put: the next
        // request overflows above and gets nil.
        cursor = end == .max ? .max : end + 1
        return address
    }
}
