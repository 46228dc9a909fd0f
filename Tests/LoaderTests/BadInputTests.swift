// LoaderTests: one test per way an image or machine shape is rejected, each
// checking the exact typed error (and so the numbers it reports).
import Testing
@testable import Loader

@Suite struct BadInputTests {
    let flat: [UInt8] = [0xF4]

    // MARK: Machine shape

    @Test func zeroVCPUs() {
        #expect(loadError(flat, .real, vcpus: 0) == .vcpuCountOutOfRange(count: 0, maximum: 64))
    }

    @Test func tooManyVCPUs() {
        #expect(loadError(flat, .long, vcpus: 65) == .vcpuCountOutOfRange(count: 65, maximum: 64))
        #expect(loadError(flat, .long, vcpus: 64) == nil)
    }

    @Test func longModeWithLessThan2MiB() {
        #expect(loadError(flat, .long, memory: 2 * MiB - 1) ==
                .memoryTooSmall(mode: .long, memorySize: 2 * MiB - 1, required: 2 * MiB))
        #expect(loadError(ELFBuilder.sample().build(), .elf, memory: 1 * MiB) ==
                .memoryTooSmall(mode: .elf, memorySize: 1 * MiB, required: 2 * MiB))
    }

    // MARK: Flat images

    @Test(arguments: BootMode.allCases)
    func emptyImage(mode: BootMode) {
        #expect(loadError([], mode) == .emptyImage)
    }

    @Test func realModeImageTooLargeForMemory() {
        let image = [UInt8](repeating: 0, count: 0x1000)
        #expect(loadError(image, .real, memory: 0x8000) ==
                .imageExceedsMemory(mode: .real, loadAddress: 0x7C00, size: 0x1000, memorySize: 0x8000))
    }

    @Test func longModeImageTooLargeForMemory() {
        let image = [UInt8](repeating: 0, count: Int(1 * MiB) + 1)
        #expect(loadError(image, .long, memory: 2 * MiB) ==
                .imageExceedsMemory(mode: .long, loadAddress: 0x10_0000, size: 1 * MiB + 1, memorySize: 2 * MiB))
    }

    @Test func realModeImagePast640KiB() {
        let image = [UInt8](repeating: 0, count: 0xA_0000 - 0x7C00 + 1)
        #expect(loadError(image, .real) ==
                .realModeImageTooLarge(size: UInt64(image.count), end: 0xA_0001, limit: 0xA_0000))
    }

    // MARK: ELF header

    @Test func truncatedELFHeader() {
        let image = Array(ELFBuilder.sample().build().prefix(40))
        #expect(loadError(image, .elf) == .elfHeaderTruncated(size: 40, required: 64))
        #expect(loadError([0x7F, 0x45], .elf) == .elfHeaderTruncated(size: 2, required: 16))
    }

    @Test func badMagic() {
        var b = ELFBuilder.sample()
        b.magic = [0x7F, 0x45, 0x4C, 0x47]
        #expect(loadError(b.build(), .elf) == .elfBadMagic(found: [0x7F, 0x45, 0x4C, 0x47]))
        #expect(loadError([0x4D, 0x5A], .elf) == .elfBadMagic(found: [0x4D, 0x5A]))
    }

    @Test func badClass() {
        var b = ELFBuilder.sample()
        b.elfClass = 1
        #expect(loadError(b.build(), .elf) == .elfUnsupportedClass(1))
    }

    @Test func badEndianness() {
        var b = ELFBuilder.sample()
        b.dataEncoding = 2
        #expect(loadError(b.build(), .elf) == .elfUnsupportedDataEncoding(2))
    }

    @Test func badVersion() {
        var b = ELFBuilder.sample()
        b.identVersion = 0
        #expect(loadError(b.build(), .elf) == .elfUnsupportedVersion(0))
        b = ELFBuilder.sample()
        b.version = 2
        #expect(loadError(b.build(), .elf) == .elfUnsupportedVersion(2))
    }

    @Test func badMachine() {
        var b = ELFBuilder.sample()
        b.machine = 3  // EM_386
        #expect(loadError(b.build(), .elf) == .elfUnsupportedMachine(3))
    }

    @Test func badType() {
        var b = ELFBuilder.sample()
        b.type = 3  // ET_DYN
        #expect(loadError(b.build(), .elf) == .elfUnsupportedType(3))
    }

    @Test func programHeadersPastEndOfFile() {
        var b = ELFBuilder.sample()
        b.programHeaderOffsetOverride = 0x10_0000
        let image = b.build()
        #expect(loadError(image, .elf) == .elfProgramHeadersOutsideFile(
            offset: 0x10_0000, count: 3, entrySize: 56, fileSize: UInt64(image.count)))
        b.programHeaderOffsetOverride = .max - 8  // offset + table size overflows
        #expect(loadError(b.build(), .elf) == .elfProgramHeadersOutsideFile(
            offset: .max - 8, count: 3, entrySize: 56, fileSize: UInt64(image.count)))
    }

    @Test func programHeaderEntrySizeTooSmall() {
        var b = ELFBuilder.sample()
        b.programHeaderEntrySize = 48
        #expect(loadError(b.build(), .elf) == .elfProgramHeaderEntryTooSmall(size: 48, minimum: 56))
    }

    @Test func noProgramHeadersAtAll() {
        var b = ELFBuilder.sample()
        b.programHeaderCountOverride = 0
        #expect(loadError(b.build(), .elf) == .elfNoLoadableSegments)
    }

    @Test func noLoadSegment() {
        var b = ELFBuilder.sample()
        b.segments = [.init(type: 4, flags: 4, physicalAddress: 0, data: [1, 2, 3, 4])]  // PT_NOTE only
        #expect(loadError(b.build(), .elf) == .elfNoLoadableSegments)
    }

    // MARK: ELF segments

    @Test func segmentDataPastEndOfFile() {
        var b = ELFBuilder.sample()
        b.segments[1].fileSizeOverride = 0x1000
        let image = b.build()
        #expect(loadError(image, .elf) == .elfSegmentOutsideFile(
            index: 1, offset: 64 + 3 * 56 + 3, size: 0x1000, fileSize: UInt64(image.count)))
    }

    @Test func fileSizeLargerThanMemorySize() {
        var b = ELFBuilder.sample()
        b.segments[1].memorySize = 2
        #expect(loadError(b.build(), .elf) == .elfSegmentFileSizeExceedsMemorySize(index: 1, fileSize: 4, memorySize: 2))
    }

    @Test func offsetPlusSizeOverflows() {
        var b = ELFBuilder.sample()
        b.segments[0].offsetOverride = .max - 1
        #expect(loadError(b.build(), .elf) == .elfSegmentFileRangeOverflow(index: 0, offset: .max - 1, size: 3))
    }

    @Test func addressPlusMemorySizeOverflows() {
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = .max - 10
        #expect(loadError(b.build(), .elf) == .elfSegmentAddressOverflow(index: 1, address: .max - 10, size: 0x1000))
    }

    @Test func segmentBeyondMemory() {
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = 16 * MiB - 0x800
        #expect(loadError(b.build(), .elf, memory: 16 * MiB) == .elfSegmentOutsideMemory(
            index: 1, start: 16 * MiB - 0x800, end: 16 * MiB + 0x800, memorySize: 16 * MiB))
    }

    @Test func segmentAboveTheHole() {
        // RAM from 4 GiB exists in an 8 GiB guest, but segments go below the PCI hole.
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = 4 << 30
        #expect(loadError(b.build(), .elf, memory: 8 << 30) == .elfSegmentOutsideMemory(
            index: 1, start: 4 << 30, end: (4 << 30) + 0x1000, memorySize: 0xC000_0000))
    }

    @Test func segmentBeyondTheIdentityMap() throws {
        // Segment placement on its own (any caller): the page tables end at 4 GiB.
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = 4 << 30
        let image = b.build()
        let elf = try ELF64Image(parsing: image)
        #expect(throws: LoaderError.elfSegmentOutsideIdentityMap(index: 1, start: 4 << 30, end: (4 << 30) + 0x1000,
                                                                   limit: 4 << 30)) {
            try ImageLoader.placeLoadSegments(elf.loadSegments, from: image, memorySize: 8 << 30, entry: elf.entry)
        }
    }

    @Test func segmentOverlappingBootStructures() {
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = 0x7FFF
        #expect(loadError(b.build(), .elf) == .elfSegmentOverlapsBootStructures(index: 1, start: 0x7FFF, end: 0x8FFF))
        b.segments[1].physicalAddress = 0x0
        b.segments[1].memorySize = 0x1001
        #expect(loadError(b.build(), .elf) == .elfSegmentOverlapsBootStructures(index: 1, start: 0, end: 0x1001))
    }

    @Test func segmentOverlappingStacks() {
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = 0x7_F000
        b.segments[1].memorySize = 0x1001
        #expect(loadError(b.build(), .elf) == .elfSegmentOverlapsStacks(index: 1, start: 0x7_F000, end: 0x8_0001))
    }

    @Test func overlappingSegments() {
        var b = ELFBuilder.sample()
        b.segments[1].physicalAddress = 0x10_0002  // the code segment ends at 0x100003
        #expect(loadError(b.build(), .elf) == .elfSegmentsOverlap(first: 0, second: 1))
    }

    @Test func entryOutsideExecutableSegments() {
        var b = ELFBuilder.sample()
        b.entry = 0x20_0000  // inside the data segment, which is not executable
        #expect(loadError(b.build(), .elf) == .elfEntryNotExecutable(entry: 0x20_0000))
        b.entry = 0x10_0003  // one past the end of the code segment
        #expect(loadError(b.build(), .elf) == .elfEntryNotExecutable(entry: 0x10_0003))
        b.entry = 0
        #expect(loadError(b.build(), .elf) == .elfEntryNotExecutable(entry: 0))
    }

    @Test func everyDescriptionIsOneNonEmptyLine() {
        let errors: [LoaderError] = [
            .vcpuCountOutOfRange(count: 0, maximum: 64), .memoryTooSmall(mode: .long, memorySize: 1, required: 2),
            .emptyImage, .imageExceedsMemory(mode: .real, loadAddress: 1, size: 2, memorySize: 3),
            .realModeImageTooLarge(size: 1, end: 2, limit: 3), .imageOutsideIdentityMap(loadAddress: 1, size: 2, limit: 3),
            .elfHeaderTruncated(size: 1, required: 64), .elfBadMagic(found: [1, 2]), .elfUnsupportedClass(1),
            .elfUnsupportedDataEncoding(2), .elfUnsupportedVersion(0), .elfUnsupportedMachine(3),
            .elfUnsupportedType(3), .elfProgramHeaderEntryTooSmall(size: 1, minimum: 56),
            .elfProgramHeadersOutsideFile(offset: 1, count: 2, entrySize: 3, fileSize: 4), .elfNoLoadableSegments,
            .elfSegmentFileRangeOverflow(index: 0, offset: 1, size: 2),
            .elfSegmentOutsideFile(index: 0, offset: 1, size: 2, fileSize: 3),
            .elfSegmentFileSizeExceedsMemorySize(index: 0, fileSize: 2, memorySize: 1),
            .elfSegmentAddressOverflow(index: 0, address: 1, size: 2),
            .elfSegmentOutsideMemory(index: 0, start: 1, end: 2, memorySize: 1),
            .elfSegmentOutsideIdentityMap(index: 0, start: 1, end: 2, limit: 1),
            .elfSegmentOverlapsBootStructures(index: 0, start: 1, end: 2),
            .elfSegmentOverlapsStacks(index: 0, start: 1, end: 2), .elfSegmentsOverlap(first: 0, second: 1),
            .elfEntryNotExecutable(entry: 5),
        ]
        for error in errors {
            #expect(!error.description.isEmpty)
            #expect(!error.description.contains("\n"))
        }
        #expect(LoaderError.elfUnsupportedMachine(3).description.contains("62"))
        #expect(LoaderError.elfSegmentOutsideMemory(index: 2, start: 0x10, end: 0x20, memorySize: 0x18).description
                == "ELF segment 2: [0x10, 0x20) lies outside guest RAM [0, 0x18)")
    }
}
