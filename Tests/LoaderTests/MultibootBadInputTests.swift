// LoaderTests: one test per way a multiboot kernel, its modules or its
// command line is rejected, each checking the exact typed error.
import Testing
@testable import Loader

@Suite struct MultibootBadInputTests {
    let good = AOutKernelBuilder()

    // MARK: Machine shape and empty input

    @Test func vcpuCountOutOfRange() {
        #expect(multibootError(good.build(), vcpus: 0) == .vcpuCountOutOfRange(count: 0, maximum: 64))
        #expect(multibootError(good.build(), vcpus: 65) == .vcpuCountOutOfRange(count: 65, maximum: 64))
    }

    @Test func emptyImage() {
        #expect(multibootError([]) == .emptyImage)
    }

    @Test func memoryTooSmall() {
        #expect(multibootError(good.build(), memory: 2 * MiB - 1) ==
                .memoryTooSmall(mode: .multiboot, memorySize: 2 * MiB - 1, required: 2 * MiB))
    }

    // MARK: Header

    @Test func noHeader() {
        #expect(multibootError([UInt8](repeating: 0x90, count: 100)) == .multibootHeaderNotFound(searchedBytes: 100))
        // A valid header that starts past the first 8192 bytes does not count.
        let late = [UInt8](repeating: 0, count: 8192) + AOutKernelBuilder().build()
        #expect(multibootError(late) == .multibootHeaderNotFound(searchedBytes: 8192))
    }

    @Test func misalignedMagicIsNotAHeader() {
        let image = [0, 0] + multibootHeader(flags: 0) + [0, 0]
        #expect(multibootError(image) == .multibootHeaderNotFound(searchedBytes: 16))
    }

    @Test func badChecksum() {
        var b = good
        b.checksum = 0x1234_5678
        #expect(multibootError(b.build()) == .multibootBadChecksum(offset: 0x40, flags: 0x0001_0003, checksum: 0x1234_5678))
    }

    @Test func headerInAnImageTooShort() {
        // Magic in the last four bytes: flags and checksum are missing.
        let image = [UInt8](repeating: 0, count: 8) + [0x02, 0xB0, 0xAD, 0x1B]
        #expect(multibootError(image) == .multibootHeaderTruncated(offset: 8, required: 12, fileSize: 12))
        // Flag bit 16 promises five more fields than the file has.
        let short = multibootHeader(flags: 0x0001_0000) + [0, 0, 0, 0]
        #expect(multibootError(short) == .multibootHeaderTruncated(offset: 0, required: 32, fileSize: 16))
    }

    @Test func unknownRequiredFlags() {
        var b = good
        b.flags = 0x0001_0008 | 0x0000_8000
        #expect(multibootError(b.build()) == .multibootUnsupportedRequiredFlags(flags: 0x0001_8008, unsupported: 0x8008))
    }

    // MARK: Address fields

    @Test func headerAddressBelowLoadAddress() {
        var b = good
        b.headerAddress = 0xF_FFFF
        #expect(multibootError(b.build()) ==
                .multibootHeaderAddressBeforeLoadAddress(headerAddress: 0xF_FFFF, loadAddress: 0x10_0000))
    }

    @Test func loadAddressBeforeTheFileStart() {
        var b = good
        b.headerAddress = 0x10_0044  // 0x44 past load_addr, but the header is only 0x40 into the file
        #expect(multibootError(b.build()) ==
                .multibootHeaderAddressBeyondFileStart(headerAddress: 0x10_0044, loadAddress: 0x10_0000, headerOffset: 0x40))
    }

    @Test func loadEndBeforeLoadAddress() {
        var b = good
        b.loadEndAddress = 0xF_0000
        b.bssEndAddress = 0
        #expect(multibootError(b.build()) ==
                .multibootLoadEndBeforeLoadAddress(loadAddress: 0x10_0000, loadEndAddress: 0xF_0000))
    }

    @Test func loadRangePastTheEndOfTheFile() {
        var b = good
        b.loadEndAddress = 0x10_0201
        #expect(multibootError(b.build()) == .multibootLoadRangeOutsideFile(offset: 0, size: 0x201, fileSize: 0x200))
    }

    @Test func headerOutsideTheLoadedPart() {
        var b = good
        b.loadEndAddress = 0x10_0050  // stops inside the header
        b.entryAddress = 0x10_0000
        #expect(multibootError(b.build()) ==
                .multibootHeaderOutsideLoadedPart(headerAddress: 0x10_0040, loadStart: 0x10_0000, loadEnd: 0x10_0050))
    }

    @Test func bssEndBeforeLoadEnd() {
        var b = good
        b.bssEndAddress = 0x10_01FF
        #expect(multibootError(b.build()) == .multibootBSSEndBeforeLoadEnd(bssEndAddress: 0x10_01FF, loadEnd: 0x10_0200))
    }

    @Test func entryOutsideTheLoadedKernel() {
        var b = good
        b.entryAddress = 0x10_0200  // first BSS byte: nothing to run there
        #expect(multibootError(b.build()) ==
                .multibootEntryOutsideKernel(entry: 0x10_0200, start: 0x10_0000, end: 0x10_0200))
        b.entryAddress = 0xF_FFFF
        #expect(multibootError(b.build()) ==
                .multibootEntryOutsideKernel(entry: 0xF_FFFF, start: 0x10_0000, end: 0x10_0200))
    }

    // MARK: ELF32

    @Test func flatImageWithoutAddressFieldsMustBeELF() {
        let image = multibootHeader(flags: 0x3) + [0xF4]
        #expect(multibootError(image) == .multibootImageNotELF(found: [0x02, 0xB0, 0xAD, 0x1B]))
    }

    @Test func elf64WithoutAddressFields() {
        var b = ELF32Builder.sample()
        b.elfClass = 2
        #expect(multibootError(b.build()) == .multibootELFUnsupportedClass(2))
    }

    @Test func elfWrongMachineAndType() {
        var b = ELF32Builder.sample()
        b.machine = 62
        #expect(multibootError(b.build()) == .multibootELFUnsupportedMachine(62))
        b = ELF32Builder.sample()
        b.type = 3
        #expect(multibootError(b.build()) == .elfUnsupportedType(3))
    }

    @Test func elfHeaderTruncated() {
        // 40 bytes: the start of an ELF32 header with a valid multiboot header at offset 24.
        var image = Array(ELF32Builder.sample().build().prefix(24))
        image += multibootHeader(flags: 0x3) + [0, 0, 0, 0]
        #expect(image.count == 40)
        #expect(multibootError(image) == .elfHeaderTruncated(size: 40, required: 52))
    }

    @Test func elfProgramHeadersOutsideFile() {
        var b = ELF32Builder.sample()
        b.programHeaderCountOverride = 200
        let image = b.build()
        #expect(multibootError(image) ==
                .elfProgramHeadersOutsideFile(offset: 52, count: 200, entrySize: 32, fileSize: UInt64(image.count)))
    }

    @Test func elfProgramHeaderEntryTooSmall() {
        var image = ELF32Builder.sample().build()
        put16(&image, 42, 31)  // patched afterwards so the multiboot header stays where it was
        #expect(multibootError(image) == .elfProgramHeaderEntryTooSmall(size: 31, minimum: 32))
    }

    @Test func elfSegmentOutsideFile() {
        var b = ELF32Builder.sample()
        b.segments[1].fileSizeOverride = 0x800
        b.segments[1].memorySize = 0x1000
        let image = b.build()
        #expect(multibootError(image) == .elfSegmentOutsideFile(index: 1, offset: UInt64(image.count - 4), size: 0x800,
                                                                 fileSize: UInt64(image.count)))
    }

    @Test func elfFileSizeExceedsMemorySize() {
        var b = ELF32Builder.sample()
        b.segments[1].memorySize = 2
        #expect(multibootError(b.build()) == .elfSegmentFileSizeExceedsMemorySize(index: 1, fileSize: 4, memorySize: 2))
    }

    @Test func elfSegmentsOverlap() {
        var b = ELF32Builder.sample()
        b.segments[1].physicalAddress = 0x10_0008
        #expect(multibootError(b.build()) == .elfSegmentsOverlap(first: 0, second: 1))
    }

    @Test func elfEntryNotExecutable() {
        var b = ELF32Builder.sample()
        b.entry = 0x20_0000  // the data segment
        #expect(multibootError(b.build()) == .elfEntryNotExecutable(entry: 0x20_0000))
    }

    @Test func elfWithoutLoadSegments() {
        var b = ELF32Builder.sample()
        b.segments[0].type = 4  // PT_NOTE
        b.segments[1].type = 4
        #expect(multibootError(b.build()) == .elfNoLoadableSegments)
    }

    // MARK: Placement

    @Test func kernelOutsideMemory() {
        var b = good
        b.loadAddress = UInt32(4 * MiB - 0x100)
        #expect(multibootError(b.build(), memory: 4 * MiB) ==
                .multibootKernelOutsideMemory(start: 4 * MiB - 0x100, end: 4 * MiB + 0x1100, limit: 4 * MiB))
        var e = ELF32Builder.sample()
        e.segments[1].memorySize = 0x20_0000
        #expect(multibootError(e.build(), memory: 3 * MiB) ==
                .multibootKernelOutsideMemory(start: 0x20_0000, end: 0x40_0000, limit: 3 * MiB))
    }

    @Test func kernelIntoThePCIHole() {
        // RAM beyond 3 GiB continues at 4 GiB: a kernel crossing 3 GiB is
        // rejected even when RAM is larger, and so is one in the hole.
        var b = good
        b.loadAddress = 0xBFFF_F000
        b.bssEndAddress = 0
        #expect(multibootError(b.build(), memory: 8 << 30) == nil)
        b.loadAddress = 0xBFFF_FF00
        b.loadEndAddress = 0  // to the end of the file: 0x200 bytes, past 3 GiB
        #expect(multibootError(b.build(), memory: 8 << 30) ==
                .multibootKernelOutsideMemory(start: 0xBFFF_FF00, end: 0xC000_0100, limit: 0xC000_0000))
        b.loadAddress = 0xFFFF_F000
        b.loadEndAddress = 0
        #expect(multibootError(b.build(), memory: 8 << 30) ==
                .multibootKernelOutsideMemory(start: 0xFFFF_F000, end: 0xFFFF_F200, limit: 0xC000_0000))
    }

    @Test func kernelInReservedMemory() {
        var b = good
        b.loadAddress = 0xA_0000
        #expect(multibootError(b.build()) == .multibootKernelOverlapsReservedMemory(start: 0xA_0000, end: 0xA_1200))
    }

    @Test func modulesTooLargeForMemory() {
        let big = MultibootModule(size: 3 * MiB, commandLine: "big")
        // Kernel ends at 0x10_1200, so the module starts at 0x10_2000 and would end past 4 MiB.
        #expect(multibootError(good.build(), modules: [big], memory: 4 * MiB) ==
                .multibootModuleExceedsMemory(index: 0, start: 0x10_2000, size: 3 * MiB, limit: 4 * MiB))
        let small = MultibootModule(size: 1, commandLine: "")
        #expect(multibootError(good.build(), modules: [small, big], memory: 4 * MiB) ==
                .multibootModuleExceedsMemory(index: 1, start: 0x10_3000, size: 3 * MiB, limit: 4 * MiB))
        // Sizes only: an 8 GiB module is refused without a byte of it existing.
        let huge = MultibootModule(size: 8 << 30, commandLine: "huge")
        #expect(multibootError(good.build(), modules: [huge], memory: 3072 * MiB) ==
                .multibootModuleExceedsMemory(index: 0, start: 0x10_2000, size: 8 << 30, limit: 3072 * MiB))
        #expect(multibootError(good.build(), modules: [MultibootModule(size: .max)], memory: 64 * MiB) ==
                .multibootModuleExceedsMemory(index: 0, start: 0x10_2000, size: .max, limit: 64 * MiB))
    }

    @Test func noRoomForTheInformationArea() {
        // Kernel from 0x1000 to just under the EBDA, a module filling RAM from
        // 1 MiB: 3 KiB are free, the area needs two pages.
        var b = good
        b.loadAddress = 0x1000
        b.bssEndAddress = 0x9_F000
        let fill = MultibootModule(size: 1 * MiB, commandLine: "fill")
        #expect(multibootError(b.build(), modules: [fill], memory: 2 * MiB) ==
                .multibootInfoAreaDoesNotFit(size: 0x2000, limit: 2 * MiB))
        // Long command lines make the area larger: it no longer fits where it did.
        #expect(multibootError(b.build(), modules: [MultibootModule(size: 1 * MiB - 0x2000)], memory: 2 * MiB) == nil)
        #expect(multibootError(b.build(), append: String(repeating: "a", count: 4000),
                               modules: [MultibootModule(size: 1 * MiB - 0x2000)], memory: 2 * MiB) ==
                .multibootInfoAreaDoesNotFit(size: 0x3000, limit: 2 * MiB))
    }

    @Test func overlappingRegionsAreCaught() {
        // Placement never produces overlaps; the final check is the backstop for that promise.
        #expect(throws: LoaderError.multibootRegionsOverlap(firstStart: 0x10_0000, firstEnd: 0x10_2000,
                                                             secondStart: 0x10_1000, secondEnd: 0x10_3000)) {
            try MultibootLoader.checkDisjoint([(0x9000, 0x9600), (0x10_1000, 0x10_3000), (0x10_0000, 0x10_2000)])
        }
        #expect(throws: Never.self) {
            try MultibootLoader.checkDisjoint([(0x10_0000, 0x10_1000), (0x10_1000, 0x10_2000), (5, 5)])
        }
    }

    @Test func tooManyModules() {
        let mods = [MultibootModule](repeating: MultibootModule(size: 1), count: 65)
        #expect(multibootError(good.build(), modules: mods) == .multibootTooManyModules(count: 65, maximum: 64))
    }

    // MARK: Command lines

    @Test func commandLineTooLong() {
        // "k " + append: the kernel path and its space count too.
        let line = String(repeating: "x", count: 4095)
        #expect(multibootError(good.build(), kernelPath: "k", append: line) ==
                .multibootCommandLineTooLong(length: 4097, maximum: 4096))
        #expect(multibootError(good.build(), kernelPath: String(repeating: "p", count: 4096)) ==
                .multibootCommandLineTooLong(length: 4097, maximum: 4096))
        // Bytes, not characters: 2048 two-byte characters are 4096 bytes, plus "k ".
        #expect(multibootError(good.build(), kernelPath: "k", append: String(repeating: "é", count: 2048)) ==
                .multibootCommandLineTooLong(length: 4098, maximum: 4096))
    }

    @Test func commandLineWithNUL() {
        #expect(multibootError(good.build(), append: "a\u{0}b") == .multibootCommandLineContainsNUL)
        #expect(multibootError(good.build(), kernelPath: "k\u{0}") == .multibootCommandLineContainsNUL)
    }

    @Test func moduleCommandLineTooLongOrWithNUL() {
        let mods = [MultibootModule(size: 1, commandLine: "ok"),
                    MultibootModule(size: 2, commandLine: String(repeating: "m", count: 4097))]
        #expect(multibootError(good.build(), modules: mods) ==
                .multibootModuleCommandLineTooLong(index: 1, length: 4097, maximum: 4096))
        #expect(multibootError(good.build(), modules: [MultibootModule(size: 1, commandLine: "x\u{0}")]) ==
                .multibootModuleCommandLineContainsNUL(index: 0))
    }

    @Test func everyErrorHasAOneLineDescription() {
        let errors: [LoaderError] = [
            .multibootHeaderNotFound(searchedBytes: 8192),
            .multibootHeaderTruncated(offset: 0, required: 32, fileSize: 16),
            .multibootBadChecksum(offset: 0, flags: 0, checksum: 0),
            .multibootUnsupportedRequiredFlags(flags: 8, unsupported: 8),
            .multibootHeaderAddressBeforeLoadAddress(headerAddress: 0, loadAddress: 1),
            .multibootHeaderAddressBeyondFileStart(headerAddress: 9, loadAddress: 0, headerOffset: 4),
            .multibootLoadEndBeforeLoadAddress(loadAddress: 2, loadEndAddress: 1),
            .multibootLoadRangeOutsideFile(offset: 0, size: 9, fileSize: 8),
            .multibootHeaderOutsideLoadedPart(headerAddress: 0, loadStart: 0, loadEnd: 4),
            .multibootBSSEndBeforeLoadEnd(bssEndAddress: 1, loadEnd: 2),
            .multibootEntryOutsideKernel(entry: 0, start: 1, end: 2),
            .multibootImageNotELF(found: [1, 2, 3, 4]),
            .multibootELFUnsupportedClass(2),
            .multibootELFUnsupportedMachine(62),
            .multibootKernelOutsideMemory(start: 0, end: 1, limit: 0),
            .multibootKernelOverlapsReservedMemory(start: 0, end: 1),
            .multibootTooManyModules(count: 65, maximum: 64),
            .multibootModuleExceedsMemory(index: 0, start: 0, size: 1, limit: 0),
            .multibootRegionsOverlap(firstStart: 0, firstEnd: 2, secondStart: 1, secondEnd: 3),
            .multibootCommandLineTooLong(length: 4097, maximum: 4096),
            .multibootCommandLineContainsNUL,
            .multibootModuleCommandLineTooLong(index: 0, length: 4097, maximum: 4096),
            .multibootModuleCommandLineContainsNUL(index: 0),
            .multibootInfoAreaDoesNotFit(size: 0x2000, limit: 0),
        ]
        for error in errors {
            #expect(!error.description.isEmpty)
            #expect(!error.description.contains("\n"))
        }
    }
}
