// Loader: Multiboot v1 (spec 0.6.96) kernels, loaded the way QEMU's -kernel
// does: find and check the header, place the kernel by the header's address
// fields (flag bit 16) or else as an ELF32 executable, put modules after it,
// put the multiboot area above everything loaded, and start one processor
// in flat 32-bit protected mode with EAX/EBX set. The area's contents are
// built in MultibootInfo.swift.

/// Numbers from the multiboot specification and Deflect's choices around them.
public enum MultibootConstants {
    /// In the OS image's header.
    public static let headerMagic: UInt32 = 0x1BAD_B002
    /// In EAX at the kernel entry.
    public static let bootloaderMagic: UInt64 = 0x2BAD_B002
    /// The header's magic must start in this many first bytes, 4-byte aligned.
    public static let searchLimit = 8192
    /// Magic, flags, checksum; plus five address fields when flag bit 16 is set.
    public static let headerSize = 12
    public static let headerSizeWithAddressFields = 32

    // Header flags. Bits 0–15 are requirements: a boot loader that does not
    // know one must refuse the image. Bits 16–31 are optional features.
    public static let flagPageAlignModules: UInt32 = 1 << 0
    public static let flagMemoryInformation: UInt32 = 1 << 1
    /// Video mode request: accepted and ignored (no VBE/framebuffer information given), as QEMU does.
    public static let flagVideoMode: UInt32 = 1 << 2
    public static let flagAddressFields: UInt32 = 1 << 16
    public static let requiredFlagsMask: UInt32 = 0xFFFF
    public static let knownRequiredFlags: UInt32 = flagPageAlignModules | flagMemoryInformation | flagVideoMode

    // Information structure flags Deflect sets.
    public static let infoMemory: UInt32 = 1 << 0
    public static let infoCommandLine: UInt32 = 1 << 2
    public static let infoModules: UInt32 = 1 << 3
    public static let infoMemoryMap: UInt32 = 1 << 6
    public static let infoBootLoaderName: UInt32 = 1 << 9
    public static let infoFlags: UInt32 = infoMemory | infoCommandLine | infoModules | infoMemoryMap
        | infoBootLoaderName

    /// mem_lower: the usable memory below 640 KiB as QEMU reports it (INT 12h
    /// with SeaBIOS's 1 KiB EBDA), matching the memory map's first entry.
    public static let lowerMemoryKiB: UInt32 = 639
    /// Memory-map entry types.
    public static let memoryAvailable: UInt32 = 1
    public static let memoryReserved: UInt32 = 2
    /// Each memory-map entry: size field (4, not counted in itself) + 20 bytes.
    public static let memoryMapEntrySize = 24
    public static let memoryMapEntrySizeField: UInt32 = 20
    public static let moduleEntrySize = 16
    public static let bootLoaderName = "Deflect"
    public static let pageSize: UInt64 = 0x1000

    /// Flat 4 GiB ring-0 descriptors (accessed bit preset, so loading them
    /// never writes the GDT). Index = selector / 8: 0x08 code, 0x10 data.
    public static let codeDescriptor: UInt64 = 0x00CF_9B00_0000_FFFF
    public static let dataDescriptor: UInt64 = 0x00CF_9300_0000_FFFF
    public static let gdtEntries: [UInt64] = [0, codeDescriptor, dataDescriptor]
}

/// A module (`--module "FILE ARGS"`) as the loader sees it: its size and the
/// string the kernel sees for it (QEMU's `-initrd "file args"` passes
/// "file args"). Its bytes stay with the caller, which copies them to
/// `BootImage.moduleRanges`: a large module is never copied through here.
public struct MultibootModule: Sendable, Equatable {
    public var size: UInt64
    public var commandLine: String

    public init(size: UInt64, commandLine: String = "") {
        self.size = size
        self.commandLine = commandLine
    }
}

/// A checked multiboot header.
public struct MultibootHeader: Sendable, Equatable {
    /// Valid only with flag bit 16; addresses are physical.
    public struct AddressFields: Sendable, Equatable {
        public var headerAddress: UInt32
        public var loadAddress: UInt32
        /// 0: load to the end of the file.
        public var loadEndAddress: UInt32
        /// 0: no BSS.
        public var bssEndAddress: UInt32
        public var entryAddress: UInt32
    }

    /// File offset of the magic.
    public var offset: Int
    public var flags: UInt32
    public var checksum: UInt32
    public var addressFields: AddressFields?

    /// Takes the first magic whose checksum holds, as GRUB and QEMU do; a
    /// magic with a wrong checksum may be a stray constant, so the search goes on.
    public init(parsing image: [UInt8]) throws(LoaderError) {
        var firstProblem: LoaderError?
        let reader = LittleEndianReader(bytes: image)
        let searchEnd = min(image.count, MultibootConstants.searchLimit)
        var candidate = 0
        while candidate + 4 <= searchEnd {
            defer { candidate += 4 }
            guard try reader.u32(candidate) == MultibootConstants.headerMagic else { continue }
            guard candidate + MultibootConstants.headerSize <= image.count else {
                firstProblem = firstProblem ?? .multibootHeaderTruncated(
                    offset: candidate, required: MultibootConstants.headerSize, fileSize: image.count)
                continue
            }
            let flags = try reader.u32(candidate + 4)
            let checksum = try reader.u32(candidate + 8)
            guard MultibootConstants.headerMagic &+ flags &+ checksum == 0 else {
                firstProblem = firstProblem ?? .multibootBadChecksum(offset: candidate, flags: flags,
                                                                     checksum: checksum)
                continue
            }
            try self.init(image: image, offset: candidate, flags: flags, checksum: checksum)
            return
        }
        throw firstProblem ?? .multibootHeaderNotFound(searchedBytes: searchEnd)
    }

    private init(image: [UInt8], offset: Int, flags: UInt32, checksum: UInt32) throws(LoaderError) {
        let unknown = flags & MultibootConstants.requiredFlagsMask & ~MultibootConstants.knownRequiredFlags
        guard unknown == 0 else { throw .multibootUnsupportedRequiredFlags(flags: flags, unsupported: unknown) }
        self.offset = offset
        self.flags = flags
        self.checksum = checksum
        guard flags & MultibootConstants.flagAddressFields != 0 else {
            addressFields = nil
            return
        }
        let size = MultibootConstants.headerSizeWithAddressFields
        guard image.count - offset >= size else {
            throw .multibootHeaderTruncated(offset: offset, required: size, fileSize: image.count)
        }
        let reader = LittleEndianReader(bytes: image)
        addressFields = AddressFields(headerAddress: try reader.u32(offset + 12),
                                      loadAddress: try reader.u32(offset + 16),
                                      loadEndAddress: try reader.u32(offset + 20),
                                      bssEndAddress: try reader.u32(offset + 24),
                                      entryAddress: try reader.u32(offset + 28))
    }

    /// Whether `image` carries a header with a valid checksum (flags not yet
    /// judged), for guessing the boot mode of a file.
    static func isPresent(in image: [UInt8]) -> Bool {
        let reader = LittleEndianReader(bytes: image)
        let searchEnd = min(image.count, MultibootConstants.searchLimit)
        for offset in stride(from: 0, to: searchEnd - 3, by: 4) {
            guard let magic = try? reader.u32(offset), magic == MultibootConstants.headerMagic,
                  let flags = try? reader.u32(offset + 4),
                  let checksum = try? reader.u32(offset + 8) else { continue }
            if magic &+ flags &+ checksum == 0 { return true }
        }
        return false
    }
}

/// Loads multiboot kernels. See BootLayout.swift for where everything goes.
public enum MultibootLoader {
    /// Validates `image` and lays out kernel, modules and the multiboot area
    /// for a guest with `memorySize` bytes of RAM at GPA 0 and `vcpuCount` vCPUs.
    /// The kernel's command line is QEMU's: `kernelPath` (as the user typed
    /// it), a space, then `append`. Only vCPU 0 starts at the entry
    /// (`applicationProcessorsWaitForSIPI`).
    public static func load(_ image: [UInt8], kernelPath: String, append: String, modules: [MultibootModule],
                            memorySize: UInt64, vcpuCount: Int) throws(LoaderError) -> BootImage {
        guard (1...BootLayout.maxVCPUs).contains(vcpuCount) else {
            throw .vcpuCountOutOfRange(count: vcpuCount, maximum: BootLayout.maxVCPUs)
        }
        guard !image.isEmpty else { throw .emptyImage }
        let header = try MultibootHeader(parsing: image)
        guard memorySize >= BootLayout.minimumMultibootMemory else {
            throw .memoryTooSmall(mode: .multiboot, memorySize: memorySize,
                                  required: BootLayout.minimumMultibootMemory)
        }
        let strings = try MultibootStrings(commandLine: commandLine(kernelPath: kernelPath, append: append),
                                           modules: modules)
        // Kernel, modules and the area go in RAM below the PCI hole.
        let limit = min(PlatformMemoryLayout.pc.lowRAMEnd(memoryBytes: memorySize), BootLayout.multibootAddressLimit)
        let kernel: PlacedKernel
        if let fields = header.addressFields {
            kernel = try placeWithAddressFields(fields, headerOffset: header.offset, image: image)
        } else {
            kernel = try placeELF32(image)
        }
        for range in kernel.ranges {
            try checkKernelRange(range, limit: limit)
        }

        // Modules: each on its own page (header bit 0, and QEMU always does it).
        // mod_start and the exclusive mod_end are 32-bit fields, so both stay below 4 GiB.
        let moduleLimit = min(limit, UInt64(UInt32.max))
        var moduleRanges: [Range<UInt64>] = []
        var next = pageAlign(max(kernel.end, BootLayout.multibootModulesStart))
        for (index, module) in modules.enumerated() {
            // Compared as a difference, so nothing can overflow.
            guard next <= moduleLimit, module.size <= moduleLimit - next else {
                throw .multibootModuleExceedsMemory(index: index, start: next, size: module.size, limit: moduleLimit)
            }
            moduleRanges.append(next..<next + module.size)
            next = pageAlign(next + module.size)
        }

        // The area goes above everything loaded, where nothing of the kernel or a module is.
        let loaded = kernel.ranges.map { $0.start..<$0.end } + moduleRanges
        let areaSize = MultibootAreaLayout.size(moduleCount: modules.count, stringBytes: strings.totalBytes)
        let reserved = BootLayout.multibootReservedStart..<BootLayout.multibootReservedEnd
        guard let base = placeArea(size: areaSize, above: loaded.map(\.upperBound).max() ?? 0,
                                   avoiding: loaded + [reserved], limit: moduleLimit) else {
            throw .multibootInfoAreaDoesNotFit(size: areaSize, limit: moduleLimit)
        }
        let layout = MultibootAreaLayout(base: base, moduleCount: modules.count, stringBytes: strings.totalBytes)
        let area = MultibootInfo.area(layout, strings: strings, modules: moduleRanges, memorySize: memorySize)
        var segments = [MemorySegment(guestPhysicalAddress: base, bytes: area)]
        segments += kernel.segments(from: image)
        // Backstop over the whole result: nothing written twice, the stack page included.
        try checkDisjoint(segments.map { ($0.guestPhysicalAddress, $0.endAddress) }
                          + moduleRanges.map { ($0.lowerBound, $0.upperBound) }
                          + [(layout.stringsEnd, layout.end)])

        var boot = BootImage(mode: .multiboot, segments: segments, entry: kernel.entry)
        boot.moduleRanges = moduleRanges
        boot.bootstrapProcessorState = BootCPUState.protectedMode(
            entry: kernel.entry, stack: layout.stackTop,
            eax: MultibootConstants.bootloaderMagic, ebx: layout.info, gdtBase: layout.gdt)
        boot.applicationProcessorsWaitForSIPI = true
        return boot
    }

    /// QEMU's kernel command line (`"%s %s"` of the -kernel path and -append):
    /// kernels written for it read the first word as argv[0]. An empty
    /// `append` leaves the trailing space, as in QEMU.
    public static func commandLine(kernelPath: String, append: String) -> String {
        kernelPath + " " + append
    }

    /// The lowest page-aligned start from `floor` up (failing that, from the
    /// bottom of RAM) for `size` bytes that miss every range in `avoiding`
    /// and end at or below `limit`.
    static func placeArea(size: UInt64, above floor: UInt64, avoiding: [Range<UInt64>],
                          limit: UInt64) -> UInt64? {
        let taken = avoiding.filter { !$0.isEmpty }
        for start in [floor, BootLayout.multibootAreaLowest] {
            var candidate = pageAlign(max(start, BootLayout.multibootAreaLowest))
            // Each step moves past a range, so this ends after at most taken.count steps.
            while candidate <= limit, size <= limit - candidate,
                  let blocker = taken.first(where: { $0.overlaps(candidate..<candidate + size) }) {
                candidate = pageAlign(blocker.upperBound)
            }
            if candidate <= limit, size <= limit - candidate { return candidate }
        }
        return nil
    }

    // MARK: Kernel placement

    /// Where the kernel goes, before any bytes are copied: the caller checks
    /// the ranges against RAM first, so a huge bss_end_addr or p_memsz fails
    /// before its zero fill is allocated.
    struct PlacedKernel {
        /// File bytes [fileOffset, fileOffset + fileSize) go to `start`, then
        /// zeros up to `memorySize`. Already checked against the file.
        struct Piece { var start: UInt64; var fileOffset: Int; var fileSize: Int; var memorySize: UInt64 }
        var pieces: [Piece]
        var entry: UInt64

        var ranges: [(start: UInt64, end: UInt64)] { pieces.map { ($0.start, $0.start + $0.memorySize) } }
        /// Highest end (modules go after it).
        var end: UInt64 { ranges.map(\.end).max() ?? 0 }

        func segments(from image: [UInt8]) -> [MemorySegment] {
            pieces.map { p in
                MemorySegment(guestPhysicalAddress: p.start, fileBytes: image[p.fileOffset..<p.fileOffset + p.fileSize],
                              memorySize: Int(p.memorySize))
            }
        }
    }

    /// Flag bit 16: the header says which file bytes go where (QEMU's rules,
    /// plus the header and entry having to lie in the loaded part).
    static func placeWithAddressFields(_ f: MultibootHeader.AddressFields, headerOffset: Int,
                                       image: [UInt8]) throws(LoaderError) -> PlacedKernel {
        guard f.headerAddress >= f.loadAddress else {
            throw .multibootHeaderAddressBeforeLoadAddress(headerAddress: f.headerAddress, loadAddress: f.loadAddress)
        }
        let headerDistance = UInt64(f.headerAddress - f.loadAddress)
        guard headerDistance <= UInt64(headerOffset) else {
            throw .multibootHeaderAddressBeyondFileStart(headerAddress: f.headerAddress, loadAddress: f.loadAddress,
                                                         headerOffset: headerOffset)
        }
        // File offset of the byte that goes to load_addr.
        let textOffset = UInt64(headerOffset) - headerDistance
        let fileSize = UInt64(image.count)
        let loadSize: UInt64
        if f.loadEndAddress != 0 {
            guard f.loadEndAddress >= f.loadAddress else {
                throw .multibootLoadEndBeforeLoadAddress(loadAddress: f.loadAddress, loadEndAddress: f.loadEndAddress)
            }
            loadSize = UInt64(f.loadEndAddress - f.loadAddress)
        } else {
            loadSize = fileSize - textOffset  // textOffset <= headerOffset < fileSize
        }
        guard loadSize <= fileSize - textOffset else {
            throw .multibootLoadRangeOutsideFile(offset: textOffset, size: loadSize, fileSize: fileSize)
        }
        let start = UInt64(f.loadAddress)
        let loadEnd = start + loadSize
        guard headerDistance + UInt64(MultibootConstants.headerSizeWithAddressFields) <= loadSize else {
            throw .multibootHeaderOutsideLoadedPart(headerAddress: f.headerAddress, loadStart: start, loadEnd: loadEnd)
        }
        var end = loadEnd
        if f.bssEndAddress != 0 {
            guard UInt64(f.bssEndAddress) >= loadEnd else {
                throw .multibootBSSEndBeforeLoadEnd(bssEndAddress: f.bssEndAddress, loadEnd: loadEnd)
            }
            end = UInt64(f.bssEndAddress)
        }
        let entry = UInt64(f.entryAddress)
        guard start <= entry, entry < loadEnd else {
            throw .multibootEntryOutsideKernel(entry: f.entryAddress, start: start, end: loadEnd)
        }
        // Both fit in Int: they lie inside the image.
        return PlacedKernel(pieces: [.init(start: start, fileOffset: Int(textOffset), fileSize: Int(loadSize),
                                           memorySize: end - start)],
                            entry: entry)
    }

    /// Flag bit 16 clear: an i386 ELF32 executable, PT_LOAD segments at p_paddr.
    static func placeELF32(_ image: [UInt8]) throws(LoaderError) -> PlacedKernel {
        let elf = try ELF32Image(parsing: image)
        var placed: [ELFProgramHeader] = []
        for header in elf.loadSegments where header.memorySize > 0 {
            // Both fields are 32-bit values, so the 64-bit end cannot overflow.
            let start = header.physicalAddress, end = header.physicalAddress + header.memorySize
            for other in placed where start < other.physicalAddress + other.memorySize && other.physicalAddress < end {
                throw .elfSegmentsOverlap(first: other.index, second: header.index)
            }
            placed.append(header)
        }
        let entry = elf.physicalEntry
        guard placed.contains(where: {
            $0.isExecutable && $0.physicalAddress <= entry && entry - $0.physicalAddress < $0.memorySize
        }) else {
            throw .elfEntryNotExecutable(entry: entry)
        }
        // ELF32Image checked each file range against the image and filesz <= memsz.
        return PlacedKernel(pieces: placed.map {
            .init(start: $0.physicalAddress, fileOffset: Int($0.offset), fileSize: Int($0.fileSize),
                  memorySize: $0.memorySize)
        }, entry: entry)
    }

    /// A kernel range must be in RAM below 4 GiB and miss the reserved hole.
    static func checkKernelRange(_ range: (start: UInt64, end: UInt64), limit: UInt64) throws(LoaderError) {
        guard range.end <= limit else {
            throw .multibootKernelOutsideMemory(start: range.start, end: range.end, limit: limit)
        }
        if overlaps(range, (BootLayout.multibootReservedStart, BootLayout.multibootReservedEnd)) {
            throw .multibootKernelOverlapsReservedMemory(start: range.start, end: range.end)
        }
    }

    /// Throws for the first two non-empty ranges that share a byte.
    static func checkDisjoint(_ ranges: [(start: UInt64, end: UInt64)]) throws(LoaderError) {
        let sorted = ranges.filter { $0.start < $0.end }.sorted { $0.start < $1.start }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.start < a.end {
            throw .multibootRegionsOverlap(firstStart: a.start, firstEnd: a.end, secondStart: b.start, secondEnd: b.end)
        }
    }

    static func overlaps(_ a: (start: UInt64, end: UInt64), _ b: (start: UInt64, end: UInt64)) -> Bool {
        a.start < b.end && b.start < a.end
    }

    static func pageAlign(_ value: UInt64) -> UInt64 {
        let mask = MultibootConstants.pageSize - 1
        return (value + mask) & ~mask  // callers pass values at most a little over 4 GiB
    }
}
