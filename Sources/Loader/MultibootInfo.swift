// Loader: the multiboot area — where its GDT, information structure, memory
// map, boot loader name, module table, command lines and boot stack sit once
// its base is chosen, and its bytes — and the checks on the strings that go there.

/// One memory-map entry as the kernel sees it (type 1 available, 2 reserved).
public struct MultibootMemoryRegion: Sendable, Equatable {
    public var base: UInt64
    public var length: UInt64
    public var type: UInt32

    public init(base: UInt64, length: UInt64, type: UInt32) {
        self.base = base; self.length = length; self.type = type
    }
}

/// Builds the multiboot area. Pure layout: every input was checked by `MultibootLoader`.
public enum MultibootInfo {
    /// The memory map QEMU (with SeaBIOS) reports for `memorySize` bytes of
    /// RAM (at least 2 MiB): low memory minus the EBDA, the EBDA and BIOS
    /// area reserved, the VGA/option-ROM hole absent, RAM from 1 MiB up to
    /// the PCI hole, and the rest of RAM from 4 GiB (`PlatformMemoryLayout`).
    public static func memoryMap(memorySize: UInt64) -> [MultibootMemoryRegion] {
        let layout = PlatformMemoryLayout.pc
        let low = layout.lowRAMEnd(memoryBytes: memorySize), high = layout.highRAMSize(memoryBytes: memorySize)
        let available = MultibootConstants.memoryAvailable, reserved = MultibootConstants.memoryReserved
        var map = [
            MultibootMemoryRegion(base: 0, length: BootLayout.multibootReservedStart, type: available),
            MultibootMemoryRegion(base: BootLayout.multibootReservedStart,
                                  length: BootLayout.conventionalMemoryEnd - BootLayout.multibootReservedStart,
                                  type: reserved),
            MultibootMemoryRegion(base: 0xF_0000, length: 0x1_0000, type: reserved),
        ]
        if low > BootLayout.multibootReservedEnd {
            map.append(MultibootMemoryRegion(base: BootLayout.multibootReservedEnd,
                                             length: low - BootLayout.multibootReservedEnd, type: available))
        }
        if high > 0 {
            map.append(MultibootMemoryRegion(base: layout.pciHoleEnd, length: high, type: available))
        }
        return map
    }

    /// mem_upper: KiB of RAM from 1 MiB up to the first hole — RAM below the
    /// PCI hole only, as QEMU computes it (below_4g_mem_size / 1024 − 1024).
    public static func upperMemoryKiB(memorySize: UInt64) -> UInt32 {
        let low = PlatformMemoryLayout.pc.lowRAMEnd(memoryBytes: memorySize)
        guard low > BootLayout.multibootReservedEnd else { return 0 }
        return UInt32(clamping: (low - BootLayout.multibootReservedEnd) / 1024)
    }

    /// The area's bytes from `layout.base` to the end of the strings (the
    /// stack page above them is only reserved, not written).
    static func area(_ layout: MultibootAreaLayout, strings: MultibootStrings,
                     modules: [Range<UInt64>], memorySize: UInt64) -> [UInt8] {
        let base = layout.base
        var bytes = [UInt8](repeating: 0, count: Int(layout.stringsEnd - base))
        func at(_ address: UInt64) -> Int { Int(address - base) }
        // The loader placed the whole area below 4 GiB, so 32 bits hold every address written below.
        func put32(_ value: UInt64, _ address: UInt64) { store(value, width: 4, into: &bytes, at: at(address)) }
        func put64(_ value: UInt64, _ address: UInt64) { store(value, width: 8, into: &bytes, at: at(address)) }

        for (index, descriptor) in MultibootConstants.gdtEntries.enumerated() {
            put64(descriptor, layout.gdt + UInt64(index * 8))
        }

        let map = memoryMap(memorySize: memorySize)
        for (index, region) in map.enumerated() {
            let entry = layout.memoryMap + UInt64(index * MultibootConstants.memoryMapEntrySize)
            put32(UInt64(MultibootConstants.memoryMapEntrySizeField), entry)
            put64(region.base, entry + 4)
            put64(region.length, entry + 12)
            put32(UInt64(region.type), entry + 20)
        }

        let name = Array(MultibootConstants.bootLoaderName.utf8)
        bytes.replaceSubrange(at(layout.loaderName)..<at(layout.loaderName) + name.count, with: name)

        // Strings are packed from layout.strings; the zero fill supplies each NUL.
        var cursor = layout.strings
        func putString(_ string: [UInt8]) -> UInt64 {
            let address = cursor
            bytes.replaceSubrange(at(address)..<at(address) + string.count, with: string)
            cursor += UInt64(string.count + 1)
            return address
        }
        let commandLine = putString(strings.commandLine)
        for (index, module) in modules.enumerated() {
            let entry = layout.moduleTable + UInt64(index * MultibootConstants.moduleEntrySize)
            put32(module.lowerBound, entry)
            put32(module.upperBound, entry + 4)  // one past the last byte, as the spec and QEMU have it
            put32(putString(strings.moduleCommandLines[index]), entry + 8)
            // entry + 12: reserved, stays 0
        }

        let info = layout.info
        put32(UInt64(MultibootConstants.infoFlags), info)
        put32(UInt64(MultibootConstants.lowerMemoryKiB), info + 4)
        put32(UInt64(upperMemoryKiB(memorySize: memorySize)), info + 8)
        put32(commandLine, info + 16)
        put32(UInt64(modules.count), info + 20)
        put32(layout.moduleTable, info + 24)
        put32(UInt64(map.count * MultibootConstants.memoryMapEntrySize), info + 44)
        put32(layout.memoryMap, info + 48)
        put32(layout.loaderName, info + 64)
        return bytes
    }
}

/// Where each part of the multiboot area goes for an area at `base` (page-aligned).
struct MultibootAreaLayout: Equatable {
    var base: UInt64
    var moduleCount: Int
    /// Bytes of all strings, NULs included.
    var stringBytes: Int

    var gdt: UInt64 { base + BootLayout.multibootGDTOffset }
    var info: UInt64 { base + BootLayout.multibootInfoOffset }
    var memoryMap: UInt64 { base + BootLayout.multibootMemoryMapOffset }
    var loaderName: UInt64 { base + BootLayout.multibootLoaderNameOffset }
    var moduleTable: UInt64 { base + BootLayout.multibootModuleTableOffset }
    var strings: UInt64 { moduleTable + UInt64(moduleCount * MultibootConstants.moduleEntrySize) }
    var stringsEnd: UInt64 { strings + UInt64(stringBytes) }
    /// ESP on entry: the top of the stack page that follows the strings' page.
    var stackTop: UInt64 { base + Self.size(moduleCount: moduleCount, stringBytes: stringBytes) }
    var end: UInt64 { stackTop }

    /// Bytes the area spans, stack page included (a multiple of the page size).
    static func size(moduleCount: Int, stringBytes: Int) -> UInt64 {
        let structures = BootLayout.multibootModuleTableOffset
            + UInt64(moduleCount * MultibootConstants.moduleEntrySize + stringBytes)
        return MultibootLoader.pageAlign(structures) + BootLayout.multibootStackSize
    }
}

/// The kernel's and the modules' command lines as UTF-8, checked against the
/// caps in BootLayout (which bound the area's size) and for embedded NULs
/// (a C string would silently end there).
struct MultibootStrings {
    var commandLine: [UInt8]
    var moduleCommandLines: [[UInt8]]

    init(commandLine: String, modules: [MultibootModule]) throws(LoaderError) {
        let maximum = BootLayout.multibootMaxCommandLineBytes
        guard modules.count <= BootLayout.multibootMaxModules else {
            throw .multibootTooManyModules(count: modules.count, maximum: BootLayout.multibootMaxModules)
        }
        self.commandLine = Array(commandLine.utf8)
        guard self.commandLine.count <= maximum else {
            throw .multibootCommandLineTooLong(length: self.commandLine.count, maximum: maximum)
        }
        guard !self.commandLine.contains(0) else { throw .multibootCommandLineContainsNUL }
        moduleCommandLines = []
        for (index, module) in modules.enumerated() {
            let line = Array(module.commandLine.utf8)
            guard line.count <= maximum else {
                throw .multibootModuleCommandLineTooLong(index: index, length: line.count, maximum: maximum)
            }
            guard !line.contains(0) else { throw .multibootModuleCommandLineContainsNUL(index: index) }
            moduleCommandLines.append(line)
        }
    }

    /// Bytes of all strings, NULs included.
    var totalBytes: Int {
        moduleCommandLines.reduce(commandLine.count + 1) { $0 + $1.count + 1 }
    }
}
