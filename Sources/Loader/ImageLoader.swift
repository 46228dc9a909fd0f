// Loader: the entry point — validate an image for a boot mode and a machine
// shape, and lay it out (image segments, boot structures, entry point).

/// Turns image bytes into a `BootImage`.
public enum ImageLoader {
    /// Validates and lays out `image` for `mode` in a guest with `memorySize` bytes of RAM at GPA 0 and `vcpuCount` vCPUs.
    /// Flat images and ELF segments go in RAM below the PCI hole (`PlatformMemoryLayout`).
    public static func load(_ image: [UInt8], mode: BootMode, memorySize: UInt64,
                            vcpuCount: Int) throws(LoaderError) -> BootImage {
        guard (1...BootLayout.maxVCPUs).contains(vcpuCount) else {
            throw .vcpuCountOutOfRange(count: vcpuCount, maximum: BootLayout.maxVCPUs)
        }
        let lowRAM = PlatformMemoryLayout.pc.lowRAMEnd(memoryBytes: memorySize)
        switch mode {
        case .real: return try loadRealMode(image, memorySize: lowRAM)
        case .long: return try loadLongModeFlat(image, memorySize: lowRAM)
        case .elf: return try loadELF64(image, memorySize: lowRAM)
        case .multiboot:
            // No kernel path, append string or modules through this entry; see MultibootLoader.load for those.
            return try MultibootLoader.load(image, kernelPath: "", append: "", modules: [], memorySize: memorySize,
                                            vcpuCount: vcpuCount)
        case .linux:
            // No initrd or command line through this entry; see LinuxLoader.plan for those.
            guard !image.isEmpty else { throw .emptyImage }
            return try LinuxLoader.plan(image: image, memoryBytes: memorySize).bootImage
        case .pvh:
            guard !image.isEmpty else { throw .emptyImage }
            return try PVHLoader.plan(image: image, memoryBytes: memorySize).bootImage
        }
    }

    /// Best guess for a file: `.linux` if it carries a bzImage setup header
    /// ("HdrS" at 0x202); `.multiboot` if it carries a multiboot header
    /// and is not ELF64 (an ELF64 file keeps Deflect's own `.elf` boot; give
    /// `--mode multiboot` to override); `.pvh` for an ELF64 file with the PVH
    /// entry note; `.elf` if it starts with the ELF magic; otherwise nil
    /// (flat binaries carry no mark).
    public static func detectMode(_ image: [UInt8]) -> BootMode? {
        let isELF = image.starts(with: ELFConstants.magic)
        let isELF64 = isELF && image.count > 4 && image[4] == ELFConstants.class64
        if !isELF, BzImage.isPresent(in: image) { return .linux }
        if !isELF64, MultibootHeader.isPresent(in: image) { return .multiboot }
        if isELF64, let elf = try? ELF64Image(parsing: image), (try? PVHNote.entry(in: elf, image: image)) != nil {
            return .pvh
        }
        return isELF ? .elf : nil
    }

    // MARK: Flat images

    private static func loadRealMode(_ image: [UInt8], memorySize: UInt64) throws(LoaderError) -> BootImage {
        guard !image.isEmpty else { throw .emptyImage }
        let start = BootLayout.realModeLoadAddress
        let size = UInt64(image.count)
        // start is small and an array's count is below 2^63, so this cannot overflow.
        let end = start + size
        guard end <= BootLayout.conventionalMemoryEnd else {
            throw .realModeImageTooLarge(size: size, end: end, limit: BootLayout.conventionalMemoryEnd)
        }
        guard end <= memorySize else {
            throw .imageExceedsMemory(mode: .real, loadAddress: start, size: size, memorySize: memorySize)
        }
        return BootImage(mode: .real,
                         segments: [MemorySegment(guestPhysicalAddress: start, bytes: image)],
                         entry: start)
    }

    private static func loadLongModeFlat(_ image: [UInt8], memorySize: UInt64) throws(LoaderError) -> BootImage {
        guard !image.isEmpty else { throw .emptyImage }
        try requireLongModeMemory(.long, memorySize: memorySize)
        let start = BootLayout.longModeLoadAddress
        let size = UInt64(image.count)
        let end = start + size  // cannot overflow: see loadRealMode
        guard end <= memorySize else {
            throw .imageExceedsMemory(mode: .long, loadAddress: start, size: size, memorySize: memorySize)
        }
        guard end <= BootLayout.identityMapLimit else {
            throw .imageOutsideIdentityMap(loadAddress: start, size: size, limit: BootLayout.identityMapLimit)
        }
        return BootImage(mode: .long,
                         segments: LongModeBootStructures.segments()
                             + [MemorySegment(guestPhysicalAddress: start, bytes: image)],
                         entry: start)
    }

    private static func requireLongModeMemory(_ mode: BootMode, memorySize: UInt64) throws(LoaderError) {
        guard memorySize >= BootLayout.minimumLongModeMemory else {
            throw .memoryTooSmall(mode: mode, memorySize: memorySize, required: BootLayout.minimumLongModeMemory)
        }
    }

    // MARK: ELF

    private static func loadELF64(_ image: [UInt8], memorySize: UInt64) throws(LoaderError) -> BootImage {
        guard !image.isEmpty else { throw .emptyImage }
        let elf = try ELF64Image(parsing: image)
        try requireLongModeMemory(.elf, memorySize: memorySize)
        let segments = try placeLoadSegments(elf.loadSegments, from: image, memorySize: memorySize,
                                             entry: elf.entry)
        return BootImage(mode: .elf, segments: LongModeBootStructures.segments() + segments,
                         entry: elf.entry)
    }

    /// Checks where PT_LOAD segments land and builds their memory images
    /// (file bytes, then zeros up to the memory size). Independent of the ELF
    /// class, so an ELF32 loader can use it too.
    static func placeLoadSegments(_ loads: [ELFProgramHeader], from image: [UInt8], memorySize: UInt64,
                                  entry: UInt64) throws(LoaderError) -> [MemorySegment] {
        struct Placed { var header: ELFProgramHeader; var start: UInt64; var end: UInt64 }
        let ramEnd = min(memorySize, BootLayout.identityMapLimit)
        var placed: [Placed] = []
        for header in loads {
            // Re-checked here so this function is safe for any caller.
            try header.validateFileRange(fileSize: image.count)
            let start = header.physicalAddress
            let (end, overflow) = start.addingReportingOverflow(header.memorySize)
            guard !overflow else {
                throw .elfSegmentAddressOverflow(index: header.index, address: start, size: header.memorySize)
            }
            // An empty segment occupies no memory and cannot collide with anything.
            guard start < end else { continue }
            guard end <= memorySize else {
                throw .elfSegmentOutsideMemory(index: header.index, start: start, end: end, memorySize: memorySize)
            }
            guard end <= ramEnd else {
                throw .elfSegmentOutsideIdentityMap(index: header.index, start: start, end: end,
                                                    limit: BootLayout.identityMapLimit)
            }
            if overlaps(start, end, BootLayout.bootStructuresStart, BootLayout.bootStructuresEnd) {
                throw .elfSegmentOverlapsBootStructures(index: header.index, start: start, end: end)
            }
            if overlaps(start, end, BootLayout.longModeStacksStart, BootLayout.longModeStackTop) {
                throw .elfSegmentOverlapsStacks(index: header.index, start: start, end: end)
            }
            for other in placed where overlaps(start, end, other.start, other.end) {
                throw .elfSegmentsOverlap(first: other.header.index, second: header.index)
            }
            placed.append(Placed(header: header, start: start, end: end))
        }
        // The page tables identity-map memory, so the entry (a virtual address)
        // runs the bytes loaded at the same physical address.
        guard placed.contains(where: { $0.header.isExecutable && $0.start <= entry && entry < $0.end }) else {
            throw .elfEntryNotExecutable(entry: entry)
        }
        return placed.map { p in
            // Both bounds were checked against the file and memory size above.
            let offset = Int(p.header.offset)
            return MemorySegment(guestPhysicalAddress: p.start, fileBytes: image[offset..<offset + Int(p.header.fileSize)],
                                 memorySize: Int(p.header.memorySize))
        }
    }

    /// Half-open ranges [a0, a1) and [b0, b1) share at least one byte.
    private static func overlaps(_ a0: UInt64, _ a1: UInt64, _ b0: UInt64, _ b1: UInt64) -> Bool {
        a0 < b1 && b0 < a1
    }
}
