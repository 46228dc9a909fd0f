// Loader: the bytes of the long-mode boot structures — the GDT and the
// identity-mapping page tables — placed at the addresses in BootLayout.

/// Builds the GDT and page tables every long-mode boot copies into RAM.
/// They do not depend on the image or the RAM size: the first 4 GiB are
/// always mapped, and addresses without RAM behind them simply exit as MMIO.
public enum LongModeBootStructures {
    /// 64-bit code: base 0, limit 0xFFFFF pages, G=1, L=1, D=0, P=1, DPL 0, S=1, type 0xB.
    public static let codeDescriptor: UInt64 = 0x00AF_9B00_0000_FFFF
    /// Data: base 0, limit 0xFFFFF pages, G=1, D/B=1, P=1, DPL 0, S=1, type 0x3.
    public static let dataDescriptor: UInt64 = 0x00CF_9300_0000_FFFF
    /// Index = selector / 8.
    public static let gdtEntries: [UInt64] = [0, codeDescriptor, dataDescriptor]

    /// Page-table entry bits.
    public static let present: UInt64 = 1 << 0
    public static let writable: UInt64 = 1 << 1
    public static let pageSize: UInt64 = 1 << 7  // in a PD entry: maps a 2 MiB page

    static let pageBytes = 4096
    static let entriesPerTable = 512
    static let largePageSize: UInt64 = 2 << 20

    /// The GDT page at `BootLayout.gdtAddress` (zero-padded to 4 KiB) and the
    /// page tables from `BootLayout.pml4Address` to `BootLayout.bootStructuresEnd`.
    public static func segments() -> [MemorySegment] {
        [MemorySegment(guestPhysicalAddress: BootLayout.gdtAddress, bytes: gdtPage()),
         MemorySegment(guestPhysicalAddress: BootLayout.pml4Address, bytes: pageTables())]
    }

    /// GDT entries (by default this layout's), little-endian, padded with zeros to one page.
    static func gdtPage(_ entries: [UInt64] = gdtEntries) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: pageBytes)
        for (index, entry) in entries.enumerated() {
            store(entry, into: &page, at: index * 8)
        }
        return page
    }

    /// PML4, PDPT and four PDs, contiguous (6 pages).
    static func pageTables() -> [UInt8] {
        let tableCount = 2 + BootLayout.pageDirectoryCount
        var bytes = [UInt8](repeating: 0, count: tableCount * pageBytes)
        let pml4 = 0  // the returned bytes start at the PML4
        let pdpt = Int(BootLayout.pdptAddress - BootLayout.pml4Address)
        let directories = Int(BootLayout.pageDirectoryAddress - BootLayout.pml4Address)

        store(BootLayout.pdptAddress | present | writable, into: &bytes, at: pml4)
        for d in 0..<BootLayout.pageDirectoryCount {
            let directoryAddress = BootLayout.pageDirectoryAddress + UInt64(d * pageBytes)
            store(directoryAddress | present | writable, into: &bytes, at: pdpt + d * 8)
            for e in 0..<entriesPerTable {
                let physical = UInt64(d * entriesPerTable + e) * largePageSize
                store(physical | present | writable | pageSize, into: &bytes,
                      at: directories + d * pageBytes + e * 8)
            }
        }
        return bytes
    }

    private static func store(_ value: UInt64, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<8 {
            bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))
        }
    }
}
