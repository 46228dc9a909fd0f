// Loader: the bytes of the multiboot area — GDT, information structure,
// memory map, boot loader name, module table and command lines — at the
// fixed addresses in BootLayout, and the checks on the strings that go there.

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
    /// The memory map QEMU (with SeaBIOS) reports for a flat RAM of
    /// `memorySize` bytes (at least 2 MiB): low memory minus the EBDA, the
    /// EBDA and BIOS area reserved, the VGA/option-ROM hole absent, then RAM from 1 MiB.
    public static func memoryMap(memorySize: UInt64) -> [MultibootMemoryRegion] {
        let available = MultibootConstants.memoryAvailable, reserved = MultibootConstants.memoryReserved
        var map = [
            MultibootMemoryRegion(base: 0, length: BootLayout.multibootReservedStart, type: available),
            MultibootMemoryRegion(base: BootLayout.multibootReservedStart,
                                  length: BootLayout.conventionalMemoryEnd - BootLayout.multibootReservedStart,
                                  type: reserved),
            MultibootMemoryRegion(base: 0xF_0000, length: 0x1_0000, type: reserved),
        ]
        if memorySize > BootLayout.multibootReservedEnd {
            map.append(MultibootMemoryRegion(base: BootLayout.multibootReservedEnd,
                                             length: memorySize - BootLayout.multibootReservedEnd, type: available))
        }
        return map
    }

    /// mem_upper: KiB of RAM from 1 MiB up to the first hole (flat RAM: its end).
    public static func upperMemoryKiB(memorySize: UInt64) -> UInt32 {
        guard memorySize > BootLayout.multibootReservedEnd else { return 0 }
        return UInt32(clamping: (memorySize - BootLayout.multibootReservedEnd) / 1024)
    }

    /// The area's bytes, starting at `BootLayout.multibootAreaStart`.
    static func area(strings: MultibootStrings, modules: [(start: UInt64, end: UInt64)],
                     memorySize: UInt64) -> [UInt8] {
        let base = BootLayout.multibootAreaStart
        var bytes = [UInt8](repeating: 0,
                            count: Int(BootLayout.multibootStringsAddress - base) + strings.totalBytes)
        func at(_ address: UInt64) -> Int { Int(address - base) }
        // Every address written below is under multibootAreaLimit, so 32 bits hold it.
        func put32(_ value: UInt64, _ address: UInt64) { store(value, width: 4, into: &bytes, at: at(address)) }
        func put64(_ value: UInt64, _ address: UInt64) { store(value, width: 8, into: &bytes, at: at(address)) }

        for (index, descriptor) in MultibootConstants.gdtEntries.enumerated() {
            put64(descriptor, BootLayout.multibootGDTAddress + UInt64(index * 8))
        }

        let map = memoryMap(memorySize: memorySize)
        for (index, region) in map.enumerated() {
            let entry = BootLayout.multibootMemoryMapAddress + UInt64(index * MultibootConstants.memoryMapEntrySize)
            put32(UInt64(MultibootConstants.memoryMapEntrySizeField), entry)
            put64(region.base, entry + 4)
            put64(region.length, entry + 12)
            put32(UInt64(region.type), entry + 20)
        }

        let name = Array(MultibootConstants.bootLoaderName.utf8)
        bytes.replaceSubrange(at(BootLayout.multibootLoaderNameAddress)..<at(BootLayout.multibootLoaderNameAddress) + name.count,
                              with: name)

        // Strings are packed from multibootStringsAddress; the zero fill supplies each NUL.
        var cursor = BootLayout.multibootStringsAddress
        func putString(_ string: [UInt8]) -> UInt64 {
            let address = cursor
            bytes.replaceSubrange(at(address)..<at(address) + string.count, with: string)
            cursor += UInt64(string.count + 1)
            return address
        }
        let commandLine = putString(strings.commandLine)
        for (index, module) in modules.enumerated() {
            let entry = BootLayout.multibootModuleTableAddress + UInt64(index * MultibootConstants.moduleEntrySize)
            put32(module.start, entry)
            put32(module.end, entry + 4)  // one past the last byte, as the spec and QEMU have it
            put32(putString(strings.moduleCommandLines[index]), entry + 8)
            // entry + 12: reserved, stays 0
        }

        let info = BootLayout.multibootInfoAddress
        put32(UInt64(MultibootConstants.infoFlags), info)
        put32(UInt64(MultibootConstants.lowerMemoryKiB), info + 4)
        put32(UInt64(upperMemoryKiB(memorySize: memorySize)), info + 8)
        put32(commandLine, info + 16)
        put32(UInt64(modules.count), info + 20)
        put32(BootLayout.multibootModuleTableAddress, info + 24)
        put32(UInt64(map.count * MultibootConstants.memoryMapEntrySize), info + 44)
        put32(BootLayout.multibootMemoryMapAddress, info + 48)
        put32(BootLayout.multibootLoaderNameAddress, info + 64)
        return bytes
    }

    private static func store(_ value: UInt64, width: Int, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<width {
            bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))
        }
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
