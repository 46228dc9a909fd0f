// Loader: ELF32 parsing for multiboot kernels. Produces the same widened
// `ELFProgramHeader`s as the ELF64 reader and checks them the same way; only
// the 32-bit header layout and the i386 machine differ.

extension ELFConstants {
    public static let machine386: UInt16 = 3
}

/// A validated i386 ELF32 executable: header fields and program headers.
/// PT_LOAD file ranges are checked here; placement is the multiboot loader's job.
public struct ELF32Image: Sendable, Equatable {
    public static let headerSize = 52
    public static let minimumProgramHeaderEntrySize: UInt16 = 32

    public var identification: ELFIdentification
    public var type: UInt16
    public var machine: UInt16
    public var version: UInt32
    public var entry: UInt32
    public var programHeaderOffset: UInt32
    public var programHeaderEntrySize: UInt16
    public var programHeaderCount: UInt16
    /// All program headers, PT_LOAD or not.
    public var programHeaders: [ELFProgramHeader]

    public var loadSegments: [ELFProgramHeader] { programHeaders.filter(\.isLoad) }

    public init(parsing image: [UInt8]) throws(LoaderError) {
        // Without ELF magic the image is simply not ELF: say so in multiboot terms.
        guard image.starts(with: ELFConstants.magic) else {
            throw .multibootImageNotELF(found: Array(image.prefix(ELFConstants.magic.count)))
        }
        identification = try ELFIdentification(parsing: image)
        guard identification.elfClass == ELFConstants.class32 else {
            throw .multibootELFUnsupportedClass(identification.elfClass)
        }
        guard image.count >= Self.headerSize else {
            throw .elfHeaderTruncated(size: image.count, required: Self.headerSize)
        }
        try identification.requireLittleEndianCurrentVersion()

        let reader = LittleEndianReader(bytes: image)
        type = try reader.u16(16)
        machine = try reader.u16(18)
        version = try reader.u32(20)
        entry = try reader.u32(24)
        programHeaderOffset = try reader.u32(28)
        programHeaderEntrySize = try reader.u16(42)
        programHeaderCount = try reader.u16(44)

        guard machine == ELFConstants.machine386 else { throw .multibootELFUnsupportedMachine(machine) }
        try requireExecutableWithProgramHeaders(type: type, version: version, count: programHeaderCount,
                                                entrySize: programHeaderEntrySize,
                                                minimumEntrySize: Self.minimumProgramHeaderEntrySize)
        // All three are at most 32 bits wide, so the 64-bit sum cannot overflow.
        let tableEnd = UInt64(programHeaderOffset)
            + UInt64(programHeaderCount) * UInt64(programHeaderEntrySize)
        guard tableEnd <= UInt64(image.count) else {
            throw .elfProgramHeadersOutsideFile(offset: UInt64(programHeaderOffset), count: programHeaderCount,
                                                entrySize: programHeaderEntrySize,
                                                fileSize: UInt64(image.count))
        }

        let tableStart = Int(programHeaderOffset)
        var headers: [ELFProgramHeader] = []
        headers.reserveCapacity(Int(programHeaderCount))
        for index in 0..<Int(programHeaderCount) {
            let base = tableStart + index * Int(programHeaderEntrySize)
            // ELF32 orders the fields differently from ELF64: flags come after the sizes.
            let header = ELFProgramHeader(
                index: index,
                type: try reader.u32(base),
                flags: try reader.u32(base + 24),
                offset: UInt64(try reader.u32(base + 4)),
                virtualAddress: UInt64(try reader.u32(base + 8)),
                physicalAddress: UInt64(try reader.u32(base + 12)),
                fileSize: UInt64(try reader.u32(base + 16)),
                memorySize: UInt64(try reader.u32(base + 20)),
                alignment: UInt64(try reader.u32(base + 28)))
            if header.isLoad {
                try header.validateFileRange(fileSize: image.count)
            }
            headers.append(header)
        }
        guard headers.contains(where: \.isLoad) else { throw .elfNoLoadableSegments }
        programHeaders = headers
    }

    /// The entry as a physical address. Like QEMU's ELF loader: when the entry
    /// lies in the file part of an executable PT_LOAD whose virtual and physical
    /// addresses differ (a higher-half kernel), translate it; otherwise keep it.
    public var physicalEntry: UInt64 {
        let e = UInt64(entry)
        for h in loadSegments where h.isExecutable && h.virtualAddress != h.physicalAddress
            && h.virtualAddress <= e && e - h.virtualAddress < h.fileSize {
            return e - h.virtualAddress + h.physicalAddress
        }
        return e
    }
}
