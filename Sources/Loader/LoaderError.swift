// Loader: every reason an image cannot be booted, each with the numbers that
// matter and a one-line description for the user.

/// Why `ImageLoader.load` rejected an image. ELF segment indices are
/// program-header indices, so they match `readelf -l`.
public enum LoaderError: Error, Equatable, CustomStringConvertible {
    // Machine shape
    case vcpuCountOutOfRange(count: Int, maximum: Int)
    case memoryTooSmall(mode: BootMode, memorySize: UInt64, required: UInt64)

    // Flat images
    case emptyImage
    case imageExceedsMemory(mode: BootMode, loadAddress: UInt64, size: UInt64, memorySize: UInt64)
    case realModeImageTooLarge(size: UInt64, end: UInt64, limit: UInt64)
    case imageOutsideIdentityMap(loadAddress: UInt64, size: UInt64, limit: UInt64)

    // ELF headers
    case elfHeaderTruncated(size: Int, required: Int)
    case elfBadMagic(found: [UInt8])
    case elfUnsupportedClass(UInt8)
    case elfUnsupportedDataEncoding(UInt8)
    case elfUnsupportedVersion(UInt32)
    case elfUnsupportedMachine(UInt16)
    case elfUnsupportedType(UInt16)
    case elfProgramHeaderEntryTooSmall(size: UInt16, minimum: UInt16)
    case elfProgramHeadersOutsideFile(offset: UInt64, count: UInt16, entrySize: UInt16, fileSize: UInt64)
    case elfNoLoadableSegments

    // ELF segments
    case elfSegmentFileRangeOverflow(index: Int, offset: UInt64, size: UInt64)
    case elfSegmentOutsideFile(index: Int, offset: UInt64, size: UInt64, fileSize: UInt64)
    case elfSegmentFileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
    case elfSegmentAddressOverflow(index: Int, address: UInt64, size: UInt64)
    case elfSegmentOutsideMemory(index: Int, start: UInt64, end: UInt64, memorySize: UInt64)
    case elfSegmentOutsideIdentityMap(index: Int, start: UInt64, end: UInt64, limit: UInt64)
    case elfSegmentOverlapsBootStructures(index: Int, start: UInt64, end: UInt64)
    case elfSegmentOverlapsStacks(index: Int, start: UInt64, end: UInt64)
    case elfSegmentsOverlap(first: Int, second: Int)
    case elfEntryNotExecutable(entry: UInt64)

    public var description: String {
        switch self {
        case let .vcpuCountOutOfRange(count, maximum):
            return "vCPU count \(count) is out of range 1–\(maximum)"
        case let .memoryTooSmall(mode, memorySize, required):
            return "\(mode.rawValue)-mode boot needs at least \(hex(required)) bytes of RAM, the guest has \(hex(memorySize))"
        case .emptyImage:
            return "image is empty"
        case let .imageExceedsMemory(mode, loadAddress, size, memorySize):
            return "\(mode.rawValue)-mode image of \(size) bytes at \(hex(loadAddress)) does not fit in \(hex(memorySize)) bytes of RAM"
        case let .realModeImageTooLarge(size, end, limit):
            return "real-mode image of \(size) bytes ends at \(hex(end)), past the end of conventional memory at \(hex(limit))"
        case let .imageOutsideIdentityMap(loadAddress, size, limit):
            return "long-mode image of \(size) bytes at \(hex(loadAddress)) extends past the identity-mapped \(hex(limit))"
        case let .elfHeaderTruncated(size, required):
            return "ELF header truncated: file has \(size) bytes, the header needs \(required)"
        case let .elfBadMagic(found):
            return "not an ELF file: magic is \(found.map { hex($0) }.joined(separator: " ")), expected 0x7f 'E' 'L' 'F'"
        case let .elfUnsupportedClass(value):
            return "unsupported ELF class \(value) (only ELFCLASS64 = 2)"
        case let .elfUnsupportedDataEncoding(value):
            return "unsupported ELF data encoding \(value) (only little-endian ELFDATA2LSB = 1)"
        case let .elfUnsupportedVersion(value):
            return "unsupported ELF version \(value) (only EV_CURRENT = 1)"
        case let .elfUnsupportedMachine(value):
            return "unsupported ELF machine \(value) (only x86-64, EM_X86_64 = 62)"
        case let .elfUnsupportedType(value):
            return "unsupported ELF type \(value) (only executables, ET_EXEC = 2)"
        case let .elfProgramHeaderEntryTooSmall(size, minimum):
            return "ELF program header entry size \(size) is smaller than \(minimum)"
        case let .elfProgramHeadersOutsideFile(offset, count, entrySize, fileSize):
            return "ELF program headers (\(count) × \(entrySize) bytes at offset \(hex(offset))) extend past the end of the \(fileSize)-byte file"
        case .elfNoLoadableSegments:
            return "ELF file has no PT_LOAD segment"
        case let .elfSegmentFileRangeOverflow(index, offset, size):
            return "ELF segment \(index): file offset \(hex(offset)) + size \(hex(size)) overflows"
        case let .elfSegmentOutsideFile(index, offset, size, fileSize):
            return "ELF segment \(index): file range \(hex(offset))+\(hex(size)) extends past the end of the \(fileSize)-byte file"
        case let .elfSegmentFileSizeExceedsMemorySize(index, fileSize, memorySize):
            return "ELF segment \(index): file size \(hex(fileSize)) exceeds memory size \(hex(memorySize))"
        case let .elfSegmentAddressOverflow(index, address, size):
            return "ELF segment \(index): physical address \(hex(address)) + memory size \(hex(size)) overflows"
        case let .elfSegmentOutsideMemory(index, start, end, memorySize):
            return "ELF segment \(index): [\(hex(start)), \(hex(end))) lies outside guest RAM [0, \(hex(memorySize)))"
        case let .elfSegmentOutsideIdentityMap(index, start, end, limit):
            return "ELF segment \(index): [\(hex(start)), \(hex(end))) extends past the identity-mapped \(hex(limit))"
        case let .elfSegmentOverlapsBootStructures(index, start, end):
            return "ELF segment \(index): [\(hex(start)), \(hex(end))) overlaps the boot structures [\(hex(BootLayout.bootStructuresStart)), \(hex(BootLayout.bootStructuresEnd)))"
        case let .elfSegmentOverlapsStacks(index, start, end):
            return "ELF segment \(index): [\(hex(start)), \(hex(end))) overlaps the vCPU stacks [\(hex(BootLayout.longModeStacksStart)), \(hex(BootLayout.longModeStackTop)))"
        case let .elfSegmentsOverlap(first, second):
            return "ELF segments \(first) and \(second) overlap in guest-physical memory"
        case let .elfEntryNotExecutable(entry):
            return "ELF entry point \(hex(entry)) is not inside an executable PT_LOAD segment"
        }
    }
}

/// "0x" + lowercase hex; kept here so the module needs no Foundation.
func hex<T: BinaryInteger>(_ value: T) -> String {
    "0x" + String(value, radix: 16)
}
