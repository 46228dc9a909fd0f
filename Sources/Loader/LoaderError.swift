// Loader: every reason an image cannot be booted, each with the numbers that
// matter and a one-line description for the user.
import KVMABI

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

    // Multiboot header (offsets are file offsets of the header's magic)
    case multibootHeaderNotFound(searchedBytes: Int)
    case multibootHeaderTruncated(offset: Int, required: Int, fileSize: Int)
    case multibootBadChecksum(offset: Int, flags: UInt32, checksum: UInt32)
    case multibootUnsupportedRequiredFlags(flags: UInt32, unsupported: UInt32)

    // Multiboot address fields (header flag bit 16)
    case multibootHeaderAddressBeforeLoadAddress(headerAddress: UInt32, loadAddress: UInt32)
    case multibootHeaderAddressBeyondFileStart(headerAddress: UInt32, loadAddress: UInt32, headerOffset: Int)
    case multibootLoadEndBeforeLoadAddress(loadAddress: UInt32, loadEndAddress: UInt32)
    case multibootLoadRangeOutsideFile(offset: UInt64, size: UInt64, fileSize: UInt64)
    case multibootHeaderOutsideLoadedPart(headerAddress: UInt32, loadStart: UInt64, loadEnd: UInt64)
    case multibootBSSEndBeforeLoadEnd(bssEndAddress: UInt32, loadEnd: UInt64)
    case multibootEntryOutsideKernel(entry: UInt32, start: UInt64, end: UInt64)

    // Multiboot ELF32 images (header flag bit 16 clear); the other ELF cases apply too
    case multibootImageNotELF(found: [UInt8])
    case multibootELFUnsupportedClass(UInt8)
    case multibootELFUnsupportedMachine(UInt16)

    // Multiboot placement
    case multibootKernelOutsideMemory(start: UInt64, end: UInt64, limit: UInt64)
    case multibootKernelOverlapsReservedMemory(start: UInt64, end: UInt64)
    case multibootTooManyModules(count: Int, maximum: Int)
    case multibootModuleExceedsMemory(index: Int, start: UInt64, size: UInt64, limit: UInt64)
    case multibootRegionsOverlap(firstStart: UInt64, firstEnd: UInt64, secondStart: UInt64, secondEnd: UInt64)
    case multibootCommandLineTooLong(length: Int, maximum: Int)
    case multibootCommandLineContainsNUL
    case multibootModuleCommandLineTooLong(index: Int, length: Int, maximum: Int)
    case multibootModuleCommandLineContainsNUL(index: Int)
    case multibootInfoAreaDoesNotFit(size: UInt64, limit: UInt64)

    // Linux bzImage (boot.rst) and PVH
    case linuxNotBzImage(reason: String)
    case linuxImageTruncated(size: Int, required: Int, what: String)
    case linuxProtocolTooOld(version: String, minimum: String)
    case linuxNo64BitEntry(xloadflags: UInt16)
    case linuxBadKernelAlignment(UInt32)
    case linuxKernelDoesNotFit(start: UInt64, end: UInt64, ramLimit: UInt64)
    case linuxInitrdTooLarge(size: UInt64, available: UInt64, limit: UInt64)
    case linuxCommandLineTooLong(length: Int, maximum: Int)
    case linuxCommandLineContainsNUL
    case linuxTooManyMemoryMapEntries(count: Int, maximum: Int)
    case linuxRegionsOverlap(first: String, second: String)
    case linuxRegionOutsideRAM(region: String, start: UInt64, end: UInt64)
    case pvhNoEntryNote
    case pvhBadEntryNote(reason: String)

    /// True when the modules (`--module`, QEMU's -initrd) are the problem, not the kernel image.
    public var concernsModules: Bool {
        switch self {
        case .multibootTooManyModules, .multibootModuleExceedsMemory, .multibootModuleCommandLineTooLong,
             .multibootModuleCommandLineContainsNUL:
            return true
        default:
            return false
        }
    }

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
        case let .multibootHeaderNotFound(searchedBytes):
            return "no multiboot header (magic 0x1badb002 with a valid checksum at a 4-byte aligned offset) in the first \(searchedBytes) bytes"
        case let .multibootHeaderTruncated(offset, required, fileSize):
            return "multiboot header at offset \(hex(offset)) needs \(required) bytes, but the \(fileSize)-byte image ends first"
        case let .multibootBadChecksum(offset, flags, checksum):
            return "multiboot header at offset \(hex(offset)): checksum \(hex(checksum)) is wrong for flags \(hex(flags)) (magic + flags + checksum must be 0)"
        case let .multibootUnsupportedRequiredFlags(flags, unsupported):
            return "multiboot header flags \(hex(flags)) require features Deflect does not know (bits \(hex(unsupported)))"
        case let .multibootHeaderAddressBeforeLoadAddress(headerAddress, loadAddress):
            return "multiboot header_addr \(hex(headerAddress)) is below load_addr \(hex(loadAddress))"
        case let .multibootHeaderAddressBeyondFileStart(headerAddress, loadAddress, headerOffset):
            return "multiboot header_addr \(hex(headerAddress)) − load_addr \(hex(loadAddress)) exceeds the header's file offset \(hex(headerOffset)): load_addr would lie before the file"
        case let .multibootLoadEndBeforeLoadAddress(loadAddress, loadEndAddress):
            return "multiboot load_end_addr \(hex(loadEndAddress)) is below load_addr \(hex(loadAddress))"
        case let .multibootLoadRangeOutsideFile(offset, size, fileSize):
            return "multiboot load range (\(hex(size)) bytes from file offset \(hex(offset))) extends past the end of the \(fileSize)-byte image"
        case let .multibootHeaderOutsideLoadedPart(headerAddress, loadStart, loadEnd):
            return "multiboot header_addr \(hex(headerAddress)) does not lie inside the loaded part [\(hex(loadStart)), \(hex(loadEnd)))"
        case let .multibootBSSEndBeforeLoadEnd(bssEndAddress, loadEnd):
            return "multiboot bss_end_addr \(hex(bssEndAddress)) is below the end of the loaded part \(hex(loadEnd))"
        case let .multibootEntryOutsideKernel(entry, start, end):
            return "multiboot entry_addr \(hex(entry)) is outside the loaded kernel [\(hex(start)), \(hex(end)))"
        case let .multibootImageNotELF(found):
            return "multiboot header has no address fields (flag bit 16), so the image must be ELF32, but its magic is \(found.map { hex($0) }.joined(separator: " "))"
        case let .multibootELFUnsupportedClass(value):
            return "unsupported ELF class \(value) for multiboot (only ELFCLASS32 = 1; a 64-bit image needs the header's address fields, flag bit 16)"
        case let .multibootELFUnsupportedMachine(value):
            return "unsupported ELF machine \(value) for multiboot (only i386, EM_386 = 3)"
        case let .multibootKernelOutsideMemory(start, end, limit):
            return "multiboot kernel [\(hex(start)), \(hex(end))) lies outside guest RAM below 4 GiB [0, \(hex(limit)))"
        case let .multibootKernelOverlapsReservedMemory(start, end):
            return "multiboot kernel bytes [\(hex(start)), \(hex(end))) overlap reserved memory [\(hex(BootLayout.multibootReservedStart)), \(hex(BootLayout.multibootReservedEnd)))"
        case let .multibootTooManyModules(count, maximum):
            return "\(count) multiboot modules (--module) given, at most \(maximum) are supported"
        case let .multibootModuleExceedsMemory(index, start, size, limit):
            return "multiboot module \(index + 1) (--module number \(index + 1), \(size) bytes from \(hex(start)), page-aligned after the kernel and the modules before it) does not fit below \(hex(limit)) (guest RAM, at most 4 GiB; see --memory)"
        case let .multibootRegionsOverlap(firstStart, firstEnd, secondStart, secondEnd):
            return "multiboot memory regions [\(hex(firstStart)), \(hex(firstEnd))) and [\(hex(secondStart)), \(hex(secondEnd))) overlap"
        case let .multibootCommandLineTooLong(length, maximum):
            return "kernel command line is \(length) bytes, at most \(maximum) are supported"
        case .multibootCommandLineContainsNUL:
            return "kernel command line contains a NUL byte"
        case let .multibootModuleCommandLineTooLong(index, length, maximum):
            return "command line of multiboot module \(index + 1) (--module number \(index + 1)) is \(length) bytes, at most \(maximum) are supported"
        case let .multibootModuleCommandLineContainsNUL(index):
            return "command line of multiboot module \(index + 1) (--module number \(index + 1)) contains a NUL byte"
        case let .multibootInfoAreaDoesNotFit(size, limit):
            return "no room for the multiboot information area (\(hex(size)) bytes: information structure, memory map, module list, command lines, boot stack) in guest RAM below \(hex(limit)) outside the kernel and modules"
        case let .linuxNotBzImage(reason):
            return "not a Linux bzImage: \(reason)"
        case let .linuxImageTruncated(size, required, what):
            return "Linux image truncated: \(what) needs \(required) bytes, the file has \(size)"
        case let .linuxProtocolTooOld(version, minimum):
            return "Linux boot protocol \(version) is too old: Deflect needs \(minimum) or later (a 64-bit entry)"
        case let .linuxNo64BitEntry(xloadflags):
            return "Linux image has no 64-bit entry (xloadflags \(hex(xloadflags)) lack XLF_KERNEL_64)"
        case let .linuxBadKernelAlignment(alignment):
            return "Linux setup header: kernel_alignment \(hex(alignment)) is not a power of two"
        case let .linuxKernelDoesNotFit(start, end, ramLimit):
            return "Linux kernel needs [\(hex(start)), \(hex(end))) (the loaded image and init_size from its runtime address), which does not fit in guest RAM below \(hex(ramLimit)) (see --memory)"
        case let .linuxInitrdTooLarge(size, available, limit):
            return "initrd of \(size) bytes does not fit: \(available) bytes of RAM are free above the kernel and below \(hex(limit)) (initrd_addr_max and the RAM below the PCI hole; see --memory)"
        case let .linuxCommandLineTooLong(length, maximum):
            return "kernel command line is \(length) bytes, the kernel accepts at most \(maximum) (cmdline_size)"
        case .linuxCommandLineContainsNUL:
            return "kernel command line contains a NUL byte"
        case let .linuxTooManyMemoryMapEntries(count, maximum):
            return "the memory map has \(count) entries, the boot parameters hold at most \(maximum)"
        case let .linuxRegionsOverlap(first, second):
            return "Linux boot: \(first) and \(second) overlap in guest-physical memory"
        case let .linuxRegionOutsideRAM(region, start, end):
            return "Linux boot: \(region) [\(hex(start)), \(hex(end))) is not inside one RAM range of the memory map (see --memory)"
        case .pvhNoEntryNote:
            return "ELF image has no PVH entry (no XEN_ELFNOTE_PHYS32_ENTRY note, type 18, name \"Xen\", in a PT_NOTE segment)"
        case let .pvhBadEntryNote(reason):
            return "ELF image's PVH entry note is unusable: \(reason)"
        }
    }
}

