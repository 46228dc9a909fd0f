// Loader: ELF parsing. The identification bytes and program headers are
// width-independent types so the ELF32 reader (multiboot) produces
// the same `ELFProgramHeader`s and reuses the placement checks in ImageLoader;
// only the 64-bit header layout lives in `ELF64Image`.

/// ELF constants used here (System V gABI and the x86-64 psABI).
public enum ELFConstants {
    public static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]  // 0x7f 'E' 'L' 'F'
    public static let identificationSize = 16
    public static let class32: UInt8 = 1
    public static let class64: UInt8 = 2
    public static let dataLittleEndian: UInt8 = 1
    public static let versionCurrent: UInt32 = 1
    public static let typeExecutable: UInt16 = 2
    public static let machineX86_64: UInt16 = 62
    public static let programTypeLoad: UInt32 = 1
    public static let segmentFlagExecute: UInt32 = 1 << 0
    public static let segmentFlagWrite: UInt32 = 1 << 1
    public static let segmentFlagRead: UInt32 = 1 << 2
}

/// The first 16 bytes of every ELF file (e_ident), shared by ELF32 and ELF64.
public struct ELFIdentification: Sendable, Equatable {
    public var elfClass: UInt8
    public var dataEncoding: UInt8
    public var version: UInt8
    public var osABI: UInt8

    public init(elfClass: UInt8, dataEncoding: UInt8, version: UInt8, osABI: UInt8) {
        self.elfClass = elfClass; self.dataEncoding = dataEncoding
        self.version = version; self.osABI = osABI
    }

    /// Checks the magic first (a short non-ELF file is "not ELF", not "truncated").
    public init(parsing image: [UInt8]) throws(LoaderError) {
        let prefix = Array(image.prefix(ELFConstants.magic.count))
        guard prefix == Array(ELFConstants.magic.prefix(prefix.count)) else {
            throw .elfBadMagic(found: prefix)
        }
        guard image.count >= ELFConstants.identificationSize else {
            throw .elfHeaderTruncated(size: image.count, required: ELFConstants.identificationSize)
        }
        elfClass = image[4]
        dataEncoding = image[5]
        version = image[6]
        osABI = image[7]
    }

    /// Little-endian, current version: what both ELF classes require here.
    func requireLittleEndianCurrentVersion() throws(LoaderError) {
        guard dataEncoding == ELFConstants.dataLittleEndian else {
            throw .elfUnsupportedDataEncoding(dataEncoding)
        }
        guard UInt32(version) == ELFConstants.versionCurrent else {
            throw .elfUnsupportedVersion(UInt32(version))
        }
    }
}

/// Checks shared by the ELF64 and ELF32 headers once their fields are read:
/// an executable of the current version with program headers of a usable size.
func requireExecutableWithProgramHeaders(type: UInt16, version: UInt32, count: UInt16, entrySize: UInt16,
                                         minimumEntrySize: UInt16) throws(LoaderError) {
    guard type == ELFConstants.typeExecutable else { throw .elfUnsupportedType(type) }
    guard version == ELFConstants.versionCurrent else { throw .elfUnsupportedVersion(version) }
    guard count > 0 else { throw .elfNoLoadableSegments }
    guard entrySize >= minimumEntrySize else {
        throw .elfProgramHeaderEntryTooSmall(size: entrySize, minimum: minimumEntrySize)
    }
}

/// One program header, widened to 64-bit fields whatever the file's class.
public struct ELFProgramHeader: Sendable, Equatable {
    /// Position in the program-header table (as `readelf -l` counts).
    public var index: Int
    public var type: UInt32
    public var flags: UInt32
    public var offset: UInt64
    public var virtualAddress: UInt64
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var alignment: UInt64

    public init(index: Int, type: UInt32, flags: UInt32, offset: UInt64, virtualAddress: UInt64,
                physicalAddress: UInt64, fileSize: UInt64, memorySize: UInt64, alignment: UInt64) {
        self.index = index; self.type = type; self.flags = flags; self.offset = offset
        self.virtualAddress = virtualAddress; self.physicalAddress = physicalAddress
        self.fileSize = fileSize; self.memorySize = memorySize; self.alignment = alignment
    }

    public var isLoad: Bool { type == ELFConstants.programTypeLoad }
    public var isExecutable: Bool { flags & ELFConstants.segmentFlagExecute != 0 }

    /// The file bytes of a PT_LOAD segment must lie inside the file and fit in its memory size.
    func validateFileRange(fileSize imageSize: Int) throws(LoaderError) {
        let (end, overflow) = offset.addingReportingOverflow(fileSize)
        guard !overflow else {
            throw .elfSegmentFileRangeOverflow(index: index, offset: offset, size: fileSize)
        }
        guard end <= UInt64(imageSize) else {
            throw .elfSegmentOutsideFile(index: index, offset: offset, size: fileSize,
                                         fileSize: UInt64(imageSize))
        }
        guard fileSize <= memorySize else {
            throw .elfSegmentFileSizeExceedsMemorySize(index: index, fileSize: fileSize,
                                                       memorySize: memorySize)
        }
    }
}

/// A validated x86-64 ELF64 executable: header fields and program headers.
/// Every PT_LOAD segment's file range is checked; where it goes in guest
/// memory is checked by `ImageLoader`, which knows the RAM size and layout.
public struct ELF64Image: Sendable, Equatable {
    public static let headerSize = 64
    public static let minimumProgramHeaderEntrySize: UInt16 = 56

    public var identification: ELFIdentification
    public var type: UInt16
    public var machine: UInt16
    public var version: UInt32
    public var entry: UInt64
    public var programHeaderOffset: UInt64
    public var flags: UInt32
    public var programHeaderEntrySize: UInt16
    public var programHeaderCount: UInt16
    /// All program headers, PT_LOAD or not.
    public var programHeaders: [ELFProgramHeader]

    public var loadSegments: [ELFProgramHeader] { programHeaders.filter(\.isLoad) }

    public init(parsing image: [UInt8]) throws(LoaderError) {
        identification = try ELFIdentification(parsing: image)
        guard image.count >= Self.headerSize else {
            throw .elfHeaderTruncated(size: image.count, required: Self.headerSize)
        }
        guard identification.elfClass == ELFConstants.class64 else {
            throw .elfUnsupportedClass(identification.elfClass)
        }
        try identification.requireLittleEndianCurrentVersion()

        let reader = LittleEndianReader(bytes: image)
        type = try reader.u16(16)
        machine = try reader.u16(18)
        version = try reader.u32(20)
        entry = try reader.u64(24)
        programHeaderOffset = try reader.u64(32)
        flags = try reader.u32(48)
        programHeaderEntrySize = try reader.u16(54)
        programHeaderCount = try reader.u16(56)

        guard machine == ELFConstants.machineX86_64 else { throw .elfUnsupportedMachine(machine) }
        try requireExecutableWithProgramHeaders(type: type, version: version, count: programHeaderCount,
                                                entrySize: programHeaderEntrySize,
                                                minimumEntrySize: Self.minimumProgramHeaderEntrySize)
        // count × entry size is at most 0xFFFF × 0xFFFF, so only the addition can overflow.
        let tableSize = UInt64(programHeaderCount) * UInt64(programHeaderEntrySize)
        let (tableEnd, overflow) = programHeaderOffset.addingReportingOverflow(tableSize)
        guard !overflow, tableEnd <= UInt64(image.count) else {
            throw .elfProgramHeadersOutsideFile(offset: programHeaderOffset, count: programHeaderCount,
                                                entrySize: programHeaderEntrySize,
                                                fileSize: UInt64(image.count))
        }

        // The table is inside the file, so these offsets fit in Int.
        let tableStart = Int(programHeaderOffset)
        var headers: [ELFProgramHeader] = []
        headers.reserveCapacity(Int(programHeaderCount))
        for index in 0..<Int(programHeaderCount) {
            let base = tableStart + index * Int(programHeaderEntrySize)
            let header = ELFProgramHeader(
                index: index,
                type: try reader.u32(base),
                flags: try reader.u32(base + 4),
                offset: try reader.u64(base + 8),
                virtualAddress: try reader.u64(base + 16),
                physicalAddress: try reader.u64(base + 24),
                fileSize: try reader.u64(base + 32),
                memorySize: try reader.u64(base + 40),
                alignment: try reader.u64(base + 48))
            // Non-LOAD headers (PT_NOTE, PT_GNU_STACK, ...) are kept but not checked: nothing uses them.
            if header.isLoad {
                try header.validateFileRange(fileSize: image.count)
            }
            headers.append(header)
        }
        guard headers.contains(where: \.isLoad) else { throw .elfNoLoadableSegments }
        programHeaders = headers
    }
}

/// Bounds-checked little-endian reads. Callers check ranges first and throw
/// the precise error; this is the backstop so a missed check cannot trap.
/// `truncated` makes the error for a read past the end (file size, bytes needed).
struct LittleEndianReader {
    let bytes: [UInt8]
    var truncated: (Int, Int) -> LoaderError = { .elfHeaderTruncated(size: $0, required: $1) }

    func u8(_ offset: Int) throws(LoaderError) -> UInt8 { UInt8(try read(offset, 1)) }
    func u16(_ offset: Int) throws(LoaderError) -> UInt16 { UInt16(try read(offset, 2)) }
    func u32(_ offset: Int) throws(LoaderError) -> UInt32 { UInt32(try read(offset, 4)) }
    func u64(_ offset: Int) throws(LoaderError) -> UInt64 { try read(offset, 8) }

    private func read(_ offset: Int, _ width: Int) throws(LoaderError) -> UInt64 {
        guard offset >= 0, width <= bytes.count, offset <= bytes.count - width else {
            throw truncated(bytes.count, max(offset, 0) + width)
        }
        var value: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) {
            value = value << 8 | UInt64(bytes[offset + i])
        }
        return value
    }
}
