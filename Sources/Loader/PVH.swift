// Loader: booting an ELF vmlinux through PVH (the kernel's
// arch/x86/platform/pvh/, Xen's xen/include/public/arch-x86/hvm/start_info.h
// and docs/misc/pvh.pandoc): the entry comes from the
// XEN_ELFNOTE_PHYS32_ENTRY note, the kernel starts in 32-bit protected mode
// with paging off and EBX = the physical address of `hvm_start_info`
// (version 1: command line, the initrd as module 0, the memory map, the
// RSDP). Layout: LinuxBootLayout.swift.
import KVMABI

/// PVH constants and `hvm_start_info` offsets (start_info.h).
public enum PVHConstants {
    public static let programTypeNote: UInt32 = 4                   // PT_NOTE
    public static let noteTypePhys32Entry: UInt32 = 18              // XEN_ELFNOTE_PHYS32_ENTRY
    public static let noteName: [UInt8] = Array("Xen".utf8)
    public static let startInfoMagic: UInt32 = 0x336E_C578          // XEN_HVM_START_MAGIC_VALUE
    public static let startInfoVersion: UInt32 = 1

    /// struct hvm_start_info.
    public enum StartInfo {
        public static let magic = 0x00            // u32
        public static let version = 0x04          // u32
        public static let flags = 0x08            // u32
        public static let moduleCount = 0x0C      // u32 nr_modules
        public static let moduleListAddress = 0x10 // u64 modlist_paddr
        public static let commandLineAddress = 0x18 // u64 cmdline_paddr
        public static let rsdpAddress = 0x20      // u64 rsdp_paddr
        public static let memoryMapAddress = 0x28 // u64 memmap_paddr (version 1)
        public static let memoryMapEntries = 0x30 // u32 memmap_entries (version 1)
        public static let size = 0x38             // with the u32 reserved at 0x34
    }
    /// struct hvm_modlist_entry: {u64 paddr, u64 size, u64 cmdline_paddr, u64 reserved}.
    public static let moduleEntrySize = 32
    /// struct hvm_memmap_table_entry: {u64 addr, u64 size, u32 type, u32 reserved}.
    public static let memoryMapEntrySize = 24

    /// Offsets inside Deflect's boot information page (LinuxBootLayout.bootInfoAddress).
    public static let moduleListOffset: UInt64 = 0x40
    public static let memoryMapOffset: UInt64 = 0x80
    /// The memory map fills the rest of the page.
    public static let maxMemoryMapEntries = (0x1000 - Int(memoryMapOffset)) / memoryMapEntrySize
}

/// Finds the PVH entry in an ELF64 image's PT_NOTE segments.
public enum PVHNote {
    /// The 32-bit entry, or nil when no PT_NOTE segment has the note. A note
    /// that is there but unusable (a descriptor that is not 4 or 8 bytes, an
    /// entry at or above 4 GiB) throws.
    public static func entry(in elf: ELF64Image, image: [UInt8]) throws(LoaderError) -> UInt32? {
        let reader = LittleEndianReader(bytes: image) { size, required in
            .linuxImageTruncated(size: size, required: required, what: "an ELF note")
        }
        for header in elf.programHeaders where header.type == PVHConstants.programTypeNote {
            // A note segment outside the file is skipped, not read.
            guard header.offset <= UInt64(image.count),
                  header.fileSize <= UInt64(image.count) - header.offset else { continue }
            var position = Int(header.offset)
            let end = position + Int(header.fileSize)
            // Each note: namesz, descsz, type, then name and descriptor, each padded to 4 bytes.
            while end - position >= 12 {
                let nameSize = Int(try reader.u32(position))
                let descriptorSize = Int(try reader.u32(position + 4))
                let type = try reader.u32(position + 8)
                let nameStart = position + 12
                guard nameSize <= end - nameStart, padded(nameSize) <= end - nameStart else { break }
                let descriptorStart = nameStart + padded(nameSize)
                guard descriptorSize <= end - descriptorStart else { break }
                let name = image[nameStart..<nameStart + nameSize].prefix { $0 != 0 }
                if type == PVHConstants.noteTypePhys32Entry, Array(name) == PVHConstants.noteName {
                    return try entry(reader, at: descriptorStart, size: descriptorSize)
                }
                position = descriptorStart + min(padded(descriptorSize), end - descriptorStart)
            }
        }
        return nil
    }

    /// Linux writes the entry with _ASM_PTR (8 bytes on x86-64); 4 bytes is accepted too.
    private static func entry(_ reader: LittleEndianReader, at offset: Int, size: Int) throws(LoaderError) -> UInt32 {
        switch size {
        case 4:
            return try reader.u32(offset)
        case 8:
            let value = try reader.u64(offset)
            guard let entry = UInt32(exactly: value) else {
                throw .pvhBadEntryNote(reason: "entry \(hex(value)) is not a 32-bit address")
            }
            return entry
        default:
            throw .pvhBadEntryNote(reason: "descriptor of \(size) bytes, expected 4 or 8")
        }
    }

    private static func padded(_ size: Int) -> Int { (size + 3) & ~3 }
}

/// Everything a VMM needs to start a PVH kernel.
public struct PVHBootPlan: Sendable {
    public var entry: UInt64
    public var startInfoAddress: UInt64
    public var commandLineAddress: UInt64
    public var initrd: Range<UInt64>?
    public var memoryMap: E820Map
    /// GDT, the boot information page, command line, the ELF's PT_LOAD segments, initrd.
    public var segments: [MemorySegment]
    public var cpuState: BootCPUState

    /// As a `BootImage`: only the boot processor starts; the others wait for INIT/SIPI.
    public var bootImage: BootImage {
        LinuxBootLayout.bootImage(mode: .pvh, segments: segments, entry: entry, state: cpuState)
    }
}

/// Plans PVH boots.
public enum PVHLoader {
    /// Validates `image` (an ELF64 vmlinux with the PVH note) and lays out a
    /// boot; the arguments are those of `LinuxLoader.plan`.
    public static func plan(image: [UInt8], initrd: [UInt8]? = nil, commandLine: String = "",
                            memoryBytes: UInt64, layout: PlatformMemoryLayout = .pc,
                            reserved: [Range<UInt64>] = [], acpiRSDPAddress: UInt64 = 0) throws(LoaderError) -> PVHBootPlan {
        let elf = try ELF64Image(parsing: image)
        guard let entry = try PVHNote.entry(in: elf, image: image) else { throw .pvhNoEntryNote }
        let commandLineBytes = try LinuxBootLayout.commandLineBytes(
            commandLine, maximum: Int(LinuxBootLayout.commandLineAreaSize) - 1)
        let map = E820Map(memoryBytes: memoryBytes, layout: layout, reserved: reserved)
        guard map.entries.count <= PVHConstants.maxMemoryMapEntries else {
            throw .linuxTooManyMemoryMapEntries(count: map.entries.count, maximum: PVHConstants.maxMemoryMapEntries)
        }
        let lowRAMEnd = min(layout.lowRAMEnd(memoryBytes: memoryBytes), BootLayout.identityMapLimit)
        let kernel = try ImageLoader.placeLoadSegments(elf.loadSegments, from: image, memorySize: lowRAMEnd,
                                                       entry: UInt64(entry))
        let kernelEnd = kernel.map(\.endAddress).max() ?? LinuxBootLayout.lowestKernelAddress
        var initrdRange: Range<UInt64>? = nil
        if let initrd, !initrd.isEmpty {
            initrdRange = try LinuxBootLayout.placeInitrd(size: UInt64(initrd.count), above: kernelEnd,
                                                          limit: lowRAMEnd, map: map)
        }
        let kernelRegions = kernel.enumerated().map { index, segment in
            (name: "kernel segment \(index + 1)", range: segment.guestPhysicalAddress..<segment.endAddress)
        }
        try LinuxBootLayout.check(LinuxBootLayout.fixedRegions(commandLineBytes: commandLineBytes.count)
                                  + kernelRegions + [(name: "the initrd", range: initrdRange ?? 0..<0)], in: map)

        let startInfo = LinuxBootLayout.bootInfoAddress
        var segments = [
            MemorySegment(guestPhysicalAddress: BootLayout.gdtAddress,
                          bytes: LongModeBootStructures.gdtPage(MultibootConstants.gdtEntries)),
            MemorySegment(guestPhysicalAddress: startInfo,
                          bytes: startInfoPage(at: startInfo, initrd: initrdRange, map: map, rsdp: acpiRSDPAddress)),
            MemorySegment(guestPhysicalAddress: LinuxBootLayout.commandLineAddress, bytes: commandLineBytes),
        ] + kernel
        if let initrd, let initrdRange {
            segments.append(MemorySegment(guestPhysicalAddress: initrdRange.lowerBound, bytes: initrd))
        }
        // pvh.pandoc: 32-bit flat CS/DS/ES/SS, paging off, EBX = start info; the GDT is a courtesy.
        let state = BootCPUState.protectedMode(entry: UInt64(entry), stack: LinuxBootLayout.stackTop, eax: 0,
                                               ebx: startInfo, gdtBase: BootLayout.gdtAddress)
        return PVHBootPlan(entry: UInt64(entry), startInfoAddress: startInfo,
                           commandLineAddress: LinuxBootLayout.commandLineAddress, initrd: initrdRange,
                           memoryMap: map, segments: segments, cpuState: state)
    }

    /// The boot information page at `base`: hvm_start_info, the module list
    /// (the initrd as module 0, no command line) and the memory map.
    static func startInfoPage(at base: UInt64, initrd: Range<UInt64>?, map: E820Map, rsdp: UInt64) -> [UInt8] {
        typealias Field = PVHConstants.StartInfo
        var page = [UInt8](repeating: 0, count: Int(LinuxBootLayout.pageSize))
        store(UInt64(PVHConstants.startInfoMagic), width: 4, into: &page, at: Field.magic)
        store(UInt64(PVHConstants.startInfoVersion), width: 4, into: &page, at: Field.version)
        store(LinuxBootLayout.commandLineAddress, width: 8, into: &page, at: Field.commandLineAddress)
        store(rsdp, width: 8, into: &page, at: Field.rsdpAddress)
        if let initrd {
            let module = Int(PVHConstants.moduleListOffset)
            store(1, width: 4, into: &page, at: Field.moduleCount)
            store(base + PVHConstants.moduleListOffset, width: 8, into: &page, at: Field.moduleListAddress)
            store(initrd.lowerBound, width: 8, into: &page, at: module)
            store(UInt64(initrd.count), width: 8, into: &page, at: module + 8)
        }
        store(base + PVHConstants.memoryMapOffset, width: 8, into: &page, at: Field.memoryMapAddress)
        store(UInt64(map.entries.count), width: 4, into: &page, at: Field.memoryMapEntries)
        for (i, entry) in map.entries.prefix(PVHConstants.maxMemoryMapEntries).enumerated() {
            let offset = Int(PVHConstants.memoryMapOffset) + i * PVHConstants.memoryMapEntrySize
            store(entry.address, width: 8, into: &page, at: offset)
            store(entry.size, width: 8, into: &page, at: offset + 8)
            store(UInt64(entry.type.rawValue), width: 4, into: &page, at: offset + 16)
        }
        return page
    }
}
