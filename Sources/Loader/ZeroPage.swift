// Loader: the Linux zero page (`struct boot_params`, 4 KiB) a 64-bit entry
// finds in RSI: the image's setup header copied in and the fields a boot
// loader writes. Offsets from the kernel's Documentation/arch/x86/zero-page.rst
// and boot.rst (arch/x86/include/uapi/asm/bootparam.h). Pure: bytes and the
// address they go to.

/// Offsets inside `struct boot_params` (zero-page.rst) that Deflect writes.
/// Setup-header fields keep their file offsets (`SetupHeaderOffset`): the
/// header sits at 0x1f1 in both.
public enum ZeroPageOffset {
    public static let acpiRSDPAddress = 0x070     // u64 (zero-page.rst)
    public static let extRamdiskImage = 0x0C0     // u32, ramdisk_image's high 32 bits
    public static let extRamdiskSize = 0x0C4      // u32, ramdisk_size's high 32 bits
    public static let extCmdLinePtr = 0x0C8       // u32, cmd_line_ptr's high 32 bits
    public static let e820Entries = 0x1E8         // u8
    public static let e820Table = 0x2D0           // 128 × struct boot_e820_entry
    public static let e820EntrySize = 20          // packed {u64 addr, u64 size, u32 type}
    public static let e820MaxEntries = 128        // E820_MAX_ENTRIES_ZEROPAGE
    public static let size = 0x1000
}

/// The boot loader's inputs to the zero page.
public struct ZeroPage: Sendable, Equatable {
    /// boot.rst's sample loader: heap_end = 0xe000, heap_end_ptr = heap_end - 0x200.
    /// Only the 16-bit setup code reads it; set with CAN_USE_HEAP as QEMU does.
    public static let heapEndPtr: UInt16 = 0xE000 - 0x200

    public var setupHeader: [UInt8]
    public var commandLineAddress: UInt64
    /// The initrd's guest-physical range, if any.
    public var initrd: Range<UInt64>?
    public var memoryMap: E820Map
    /// 0: the kernel scans the BIOS area for the RSDP itself.
    public var acpiRSDPAddress: UInt64

    public init(setupHeader: [UInt8], commandLineAddress: UInt64, initrd: Range<UInt64>?, memoryMap: E820Map,
                acpiRSDPAddress: UInt64 = 0) {
        self.setupHeader = setupHeader; self.commandLineAddress = commandLineAddress
        self.initrd = initrd; self.memoryMap = memoryMap; self.acpiRSDPAddress = acpiRSDPAddress
    }

    /// The 4 KiB page. Throws when the memory map has more than 128 entries.
    public func bytes() throws(LoaderError) -> [UInt8] {
        let entries = memoryMap.entries
        guard entries.count <= ZeroPageOffset.e820MaxEntries else {
            throw .linuxTooManyMemoryMapEntries(count: entries.count, maximum: ZeroPageOffset.e820MaxEntries)
        }
        var page = [UInt8](repeating: 0, count: ZeroPageOffset.size)
        // boot.rst, "64-bit BOOT PROTOCOL": copy the setup header from 0x1f1 to its end.
        let headerEnd = min(SetupHeaderOffset.setupSects + setupHeader.count, SetupHeaderOffset.boundaryInBootParams)
        page.replaceSubrange(SetupHeaderOffset.setupSects..<headerEnd,
                             with: setupHeader.prefix(headerEnd - SetupHeaderOffset.setupSects))

        page[SetupHeaderOffset.typeOfLoader] = SetupHeaderConstants.undefinedLoader
        page[SetupHeaderOffset.loadflags] |= SetupHeaderConstants.canUseHeap
        store(UInt64(Self.heapEndPtr), width: 2, into: &page, at: SetupHeaderOffset.heapEndPtr)
        storeSplit(commandLineAddress, low: SetupHeaderOffset.cmdLinePtr, high: ZeroPageOffset.extCmdLinePtr, in: &page)
        if let initrd {
            storeSplit(initrd.lowerBound, low: SetupHeaderOffset.ramdiskImage,
                       high: ZeroPageOffset.extRamdiskImage, in: &page)
            storeSplit(UInt64(initrd.count), low: SetupHeaderOffset.ramdiskSize,
                       high: ZeroPageOffset.extRamdiskSize, in: &page)
        } else {
            for offset in [SetupHeaderOffset.ramdiskImage, SetupHeaderOffset.ramdiskSize] {
                store(0, width: 4, into: &page, at: offset)
            }
        }
        store(acpiRSDPAddress, width: 8, into: &page, at: ZeroPageOffset.acpiRSDPAddress)

        page[ZeroPageOffset.e820Entries] = UInt8(entries.count)
        for (i, entry) in entries.enumerated() {
            let base = ZeroPageOffset.e820Table + i * ZeroPageOffset.e820EntrySize
            store(entry.address, width: 8, into: &page, at: base)
            store(entry.size, width: 8, into: &page, at: base + 8)
            store(UInt64(entry.type.rawValue), width: 4, into: &page, at: base + 16)
        }
        return page
    }

    private func storeSplit(_ value: UInt64, low: Int, high: Int, in page: inout [UInt8]) {
        store(value & 0xFFFF_FFFF, width: 4, into: &page, at: low)
        store(value >> 32, width: 4, into: &page, at: high)
    }
}

/// Little-endian store of the low `width` bytes of `value` (the Linux,
/// PVH and multiboot builders; offsets always inside the buffer the caller made).
func store(_ value: UInt64, width: Int, into bytes: inout [UInt8], at offset: Int) {
    for i in 0..<width {
        bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))
    }
}
