// Loader: where Deflect puts what a Linux boot needs besides the kernel —
// shared by the bzImage (64-bit boot protocol) and PVH plans — and the
// checks both apply: the command line, the initrd's place as high as its
// limit allows, and that every region is RAM and overlaps no other.
//
//   0x0000_0000 ..< 0x0000_1000   untouched (real-mode IVT and BDA on the PC platform)
//   0x0000_1000 ..< 0x0000_2000   GDT (bzImage: 0x10 = 64-bit code, 0x18 = data,
//                                 boot.rst's __BOOT_CS/__BOOT_DS; PVH: 0x08 code,
//                                 0x10 data, flat 32-bit, as multiboot)
//   0x0000_2000 ..< 0x0000_8000   bzImage: page tables identity-mapping 4 GiB
//                                 (LongModeBootStructures, as long-mode boots)
//   0x0000_8000 ..< 0x0000_9000   bzImage: the zero page (RSI);
//                                 PVH: hvm_start_info (EBX), module list, memory map
//   0x0000_9000 ..< 0x0001_0000   boot stack (RSP/ESP = 0x10000; the kernel sets its own)
//   0x0002_0000 ..< 0x0003_0000   command line, NUL-terminated (QEMU's place, 0x20000)
//   kernel                        bzImage: at pref_address if relocatable, else 1 MiB;
//                                 PVH: the ELF's p_paddr
//   initrd                        page-aligned, as high as RAM below the PCI hole
//                                 and initrd_addr_max allow, above the kernel
// Only the boot processor starts; the others wait for INIT/SIPI.

/// Addresses of the Linux boot layout drawn at the top of this file.
public enum LinuxBootLayout {
    public static let bootAreaStart: UInt64 = BootLayout.gdtAddress
    public static let bootAreaEnd: UInt64 = 0x1_0000
    public static let bootInfoAddress: UInt64 = 0x8000
    public static let stackTop: UInt64 = 0x1_0000
    public static let commandLineAddress: UInt64 = 0x2_0000
    /// Bytes reserved for the command line, its NUL included.
    public static let commandLineAreaSize: UInt64 = 0x1_0000
    /// The kernel is never placed below 1 MiB.
    public static let lowestKernelAddress: UInt64 = 0x10_0000
    public static let pageSize: UInt64 = 0x1000

    /// bzImage GDT: boot.rst ("64-bit BOOT PROTOCOL") requires __BOOT_CS
    /// (0x10) and __BOOT_DS (0x18), flat; the first two entries stay null.
    public static let linuxCodeSelector: UInt16 = 0x10
    public static let linuxDataSelector: UInt16 = 0x18
    public static let linuxGDTEntries: [UInt64] = [0, 0, LongModeBootStructures.codeDescriptor,
                                                   LongModeBootStructures.dataDescriptor]

    /// The command line's bytes with its NUL; at most `maximum` bytes before the NUL.
    static func commandLineBytes(_ commandLine: String, maximum: Int) throws(LoaderError) -> [UInt8] {
        let bytes = Array(commandLine.utf8)
        guard !bytes.contains(0) else { throw .linuxCommandLineContainsNUL }
        guard bytes.count <= maximum else { throw .linuxCommandLineTooLong(length: bytes.count, maximum: maximum) }
        return bytes + [0]
    }

    /// The initrd's range: page-aligned, in the highest RAM range of `map`
    /// that holds it in [above, limit).
    static func placeInitrd(size: UInt64, above: UInt64, limit: UInt64, map: E820Map) throws(LoaderError) -> Range<UInt64> {
        var available: UInt64 = 0
        for ram in map.ram(below: limit).reversed() {
            let low = max(ram.lowerBound, above)
            guard low < ram.upperBound else { continue }
            available = max(available, ram.upperBound - low)
            guard size <= ram.upperBound - low else { continue }
            let start = (ram.upperBound - size) & ~(pageSize - 1)
            if start >= low { return start..<start + size }
        }
        throw .linuxInitrdTooLarge(size: size, available: available, limit: limit)
    }

    /// Every region must lie in one RAM entry and overlap no other.
    static func check(_ regions: [(name: String, range: Range<UInt64>)], in map: E820Map) throws(LoaderError) {
        let regions = regions.filter { !$0.range.isEmpty }
        for (i, region) in regions.enumerated() {
            guard map.isRAM(region.range.lowerBound, region.range.upperBound) else {
                throw .linuxRegionOutsideRAM(region: region.name, start: region.range.lowerBound,
                                             end: region.range.upperBound)
            }
            for other in regions[..<i] where other.range.overlaps(region.range) {
                throw .linuxRegionsOverlap(first: other.name, second: region.name)
            }
        }
    }

    /// A boot in which only the boot processor starts, at `entry` with
    /// `state`; the others wait for INIT/SIPI.
    static func bootImage(mode: BootMode, segments: [MemorySegment], entry: UInt64, state: BootCPUState) -> BootImage {
        var image = BootImage(mode: mode, segments: segments, entry: entry)
        image.bootstrapProcessorState = state
        image.applicationProcessorsWaitForSIPI = true
        return image
    }

    /// The boot area and command line as named regions for `check`.
    static func fixedRegions(commandLineBytes: Int) -> [(name: String, range: Range<UInt64>)] {
        [("the boot structures", bootAreaStart..<bootAreaEnd),
         ("the command line", commandLineAddress..<commandLineAddress + UInt64(commandLineBytes))]
    }
}
