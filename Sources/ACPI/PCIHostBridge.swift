// PCIHostBridge.swift — what the DSDT's PCI host bridge (PNP0A03) and the
// MCFG say about PCI: the bus range, the I/O and memory windows the bridge
// forwards to its buses, and the ECAM (enhanced configuration access, PCI
// Firmware Specification 3.2 §4.1.2) when the platform has one.

/// The windows of the PCI host bridge, as given by the platform's memory
/// layout. I/O: the whole 64 KiB but the configuration ports 0xCF8–0xCFF.
public struct PCIHostBridgeWindows: Sendable, Equatable {
    /// Bus numbers below the bridge.
    public var buses: ClosedRange<UInt8>
    /// The 32-bit PCI hole (below 4 GiB, above RAM).
    public var mmio32: ClosedRange<UInt32>
    /// A 64-bit window above RAM (and above 4 GiB), if any.
    public var mmio64: ClosedRange<UInt64>?

    public init(buses: ClosedRange<UInt8> = 0...255, mmio32: ClosedRange<UInt32>, mmio64: ClosedRange<UInt64>? = nil) {
        self.buses = buses
        self.mmio32 = mmio32
        self.mmio64 = mmio64
    }

    /// The configuration-mechanism ports 0xCF8–0xCFF, which the bridge
    /// consumes itself.
    public static let configPorts: ClosedRange<UInt16> = 0x0CF8...0x0CFF
    /// The I/O windows: everything else.
    public static let ioWindows: [ClosedRange<UInt16>] = [0x0000...0x0CF7, 0x0D00...0xFFFF]
}

/// One ECAM region: an MCFG allocation (PCI Firmware Specification 3.2
/// table 4-3). `base` is the address of bus 0's configuration space even
/// when `buses` starts higher (as Linux reads it); the region itself is
/// `base + first bus << 20` for 1 MiB per bus.
public struct ECAMRegion: Sendable, Equatable {
    public var base: UInt64
    public var segment: UInt16
    public var buses: ClosedRange<UInt8>

    public init(base: UInt64, segment: UInt16 = 0, buses: ClosedRange<UInt8> = 0...255) {
        self.base = base
        self.segment = segment
        self.buses = buses
    }

    /// 1 MiB of configuration space per bus (32 devices × 8 functions × 4 KiB).
    public static let bytesPerBus: UInt64 = 1 << 20

    /// The guest-physical range the buses' configuration space occupies;
    /// nil when it would pass the end of the address space.
    public var range: ClosedRange<UInt64>? {
        let first = base.addingReportingOverflow(UInt64(buses.lowerBound) * Self.bytesPerBus)
        let end = base.addingReportingOverflow((UInt64(buses.upperBound) + 1) * Self.bytesPerBus)
        guard !first.overflow, !end.overflow || end.partialValue == 0, end.partialValue &- 1 >= first.partialValue else {
            return nil
        }
        return first.partialValue...(end.partialValue &- 1)
    }
}
