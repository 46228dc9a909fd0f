// Loader: the guest's physical memory map as a Linux kernel reads it — the
// e820 table of the zero page and PVH's hvm_memmap_table — derived from the
// PC platform's layout: RAM below 640 KiB, the legacy BIOS hole, RAM from
// 1 MiB up to the 32-bit PCI hole, the hole itself reserved, and the RAM that
// does not fit below the hole relocated above 4 GiB (as QEMU's pc machine
// does). Ranges Deflect's own boot structures or ACPI tables must keep are
// carved out as reserved.
import KVMABI

/// Where RAM can and cannot be in the guest-physical address space.
public struct PlatformMemoryLayout: Sendable, Equatable {
    /// Conventional memory ends here (640 KiB); [this, legacyHoleEnd) is
    /// VGA memory and the BIOS area, never RAM for the kernel.
    public var legacyHoleStart: UInt64
    public var legacyHoleEnd: UInt64
    /// RAM below 4 GiB ends here at the latest; [this, pciHoleEnd) is the
    /// 32-bit PCI hole (MMIO: IOAPIC, LAPIC, TSS and identity-map pages).
    public var pciHoleStart: UInt64
    public var pciHoleEnd: UInt64

    public init(legacyHoleStart: UInt64, legacyHoleEnd: UInt64, pciHoleStart: UInt64, pciHoleEnd: UInt64) {
        self.legacyHoleStart = legacyHoleStart; self.legacyHoleEnd = legacyHoleEnd
        self.pciHoleStart = pciHoleStart; self.pciHoleEnd = pciHoleEnd
    }

    /// Deflect's layout, on every platform. The hole starts at 3 GiB: the
    /// same number as `RTCCMOS.lowMemoryLimit` (Devices, CMOS RAM-size
    /// registers) and `Machine.tssAddress`/`identityMapAddress` (0xFFFBC000,
    /// above RAM below 4 GiB); RAM beyond 3 GiB continues at 4 GiB as QEMU's
    /// pc machine puts it (its gigabyte-aligned lowmem). The IOAPIC
    /// (0xFEC00000), the local APIC (0xFEE00000) and the PCI BARs and ECAM
    /// sit inside the hole. Change them together.
    public static let pc = PlatformMemoryLayout(legacyHoleStart: 0xA_0000, legacyHoleEnd: 0x10_0000,
                                                pciHoleStart: 0xC000_0000, pciHoleEnd: 1 << 32)

    /// Bytes of RAM below the PCI hole for a guest with `memoryBytes` (the
    /// legacy hole counts: its addresses are RAM the platform shadows).
    public func lowRAMEnd(memoryBytes: UInt64) -> UInt64 { min(memoryBytes, pciHoleStart) }
    /// Bytes of RAM relocated above the hole, starting at `pciHoleEnd`.
    public func highRAMSize(memoryBytes: UInt64) -> UInt64 { memoryBytes - lowRAMEnd(memoryBytes: memoryBytes) }

    /// Guest RAM's guest-physical ranges: [0, lowRAMEnd) and, when RAM
    /// does not fit below the hole, [pciHoleEnd, pciHoleEnd + the rest).
    public func ramRanges(memoryBytes: UInt64) -> [Range<UInt64>] {
        let high = highRAMSize(memoryBytes: memoryBytes)
        let low = [0..<lowRAMEnd(memoryBytes: memoryBytes)]
        return high == 0 ? low : low + [pciHoleEnd..<pciHoleEnd + high]
    }

    /// Where the last byte of RAM ends: the size of a memory file that holds
    /// RAM at file offset = guest address (the hole stays a file hole).
    public func ramEnd(memoryBytes: UInt64) -> UInt64 {
        ramRanges(memoryBytes: memoryBytes).last?.upperBound ?? 0
    }

    /// The most RAM whose ranges end at or below 2^`physicalAddressBits`
    /// (the guest's MAXPHYADDR), in MiB.
    public func maximumMemoryMiB(physicalAddressBits: Int) -> Int {
        let addressable: UInt64 = physicalAddressBits >= 64 ? .max : 1 << UInt64(max(physicalAddressBits, 0))
        let holeSize = pciHoleEnd - pciHoleStart
        guard addressable > pciHoleStart else { return Int(clamping: addressable >> 20) }
        guard addressable > pciHoleEnd else { return Int(clamping: pciHoleStart >> 20) }
        return Int(clamping: (addressable - holeSize) >> 20)
    }

    /// The static cap on guest RAM (1 TiB): far beyond what one host gives a
    /// guest today, and small enough that every size and address computed
    /// from it fits 64 bits. The guest's physical address width limits it
    /// further on each host.
    public static let maximumMemoryMiB = 1 << 20
}

/// e820 / hvm_memmap entry types (arch/x86/include/uapi/asm/e820.h
/// E820_TYPE_*; the PVH table uses the same numbers, XEN_HVM_MEMMAP_TYPE_*).
public enum E820Type: UInt32, Sendable {
    case ram = 1
    case reserved = 2
    case acpi = 3
    case nvs = 4
    case unusable = 5
}

/// One memory-map entry.
public struct E820Entry: Sendable, Equatable, CustomStringConvertible {
    public var address: UInt64
    public var size: UInt64
    public var type: E820Type

    public init(address: UInt64, size: UInt64, type: E820Type) {
        self.address = address; self.size = size; self.type = type
    }

    public var end: UInt64 { address &+ size }
    public var description: String { "[\(hex(address)), \(hex(end))) \(type)" }
}

/// A sorted, non-overlapping memory map with adjacent entries of the same type merged.
public struct E820Map: Sendable, Equatable {
    public var entries: [E820Entry]

    /// The platform's map for `memoryBytes` of RAM; each of `reserved`
    /// becomes a reserved entry, cut out of any RAM it covers.
    public init(memoryBytes: UInt64, layout: PlatformMemoryLayout = .pc, reserved: [Range<UInt64>] = []) {
        let low = layout.lowRAMEnd(memoryBytes: memoryBytes)
        let high = layout.highRAMSize(memoryBytes: memoryBytes)
        var ram: [Range<UInt64>] = [0..<min(low, layout.legacyHoleStart)]
        if low > layout.legacyHoleEnd { ram.append(layout.legacyHoleEnd..<low) }
        if high > 0 { ram.append(layout.pciHoleEnd..<layout.pciHoleEnd + min(high, .max - layout.pciHoleEnd)) }
        let holes = [layout.legacyHoleStart..<layout.legacyHoleEnd, layout.pciHoleStart..<layout.pciHoleEnd]
        entries = Self.paint(ram: ram, reserved: holes + reserved)
    }

    /// Reserved wins over RAM; the result is sorted and merged.
    static func paint(ram: [Range<UInt64>], reserved: [Range<UInt64>]) -> [E820Entry] {
        let ram = ram.filter { !$0.isEmpty }, reserved = reserved.filter { !$0.isEmpty }
        let bounds = Set((ram + reserved).flatMap { [$0.lowerBound, $0.upperBound] }).sorted()
        var entries: [E820Entry] = []
        for (start, end) in zip(bounds, bounds.dropFirst()) {
            let type: E820Type
            if reserved.contains(where: { $0.contains(start) }) {
                type = .reserved
            } else if ram.contains(where: { $0.contains(start) }) {
                type = .ram
            } else {
                continue
            }
            if let last = entries.last, last.type == type, last.end == start {
                entries[entries.count - 1].size += end - start
            } else {
                entries.append(E820Entry(address: start, size: end - start, type: type))
            }
        }
        return entries
    }

    /// The RAM entries, clipped to [0, limit).
    public func ram(below limit: UInt64) -> [Range<UInt64>] {
        entries.compactMap { entry in
            guard entry.type == .ram, entry.address < limit else { return nil }
            return entry.address..<min(entry.end, limit)
        }
    }

    /// True when [start, end) lies inside one RAM entry.
    public func isRAM(_ start: UInt64, _ end: UInt64) -> Bool {
        entries.contains { $0.type == .ram && $0.address <= start && end <= $0.end }
    }
}
