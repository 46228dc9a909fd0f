// LoaderTests: ELF64 parsing and layout of well-formed images built by ELFBuilder.
import Testing
@testable import Loader

@Suite struct ELFTests {
    @Test func sampleParses() throws {
        let elf = try ELF64Image(parsing: ELFBuilder.sample().build())
        #expect(elf.identification == ELFIdentification(elfClass: 2, dataEncoding: 1, version: 1, osABI: 0))
        #expect(elf.machine == 62 && elf.type == 2 && elf.version == 1)
        #expect(elf.entry == 0x10_0000)
        #expect(elf.programHeaderOffset == 64 && elf.programHeaderEntrySize == 56)
        #expect(elf.programHeaders.count == 3)
        #expect(elf.loadSegments.map(\.index) == [0, 1])
        let code = elf.programHeaders[0]
        #expect(code.isLoad && code.isExecutable)
        #expect(code.physicalAddress == 0x10_0000 && code.fileSize == 3 && code.memorySize == 3)
        #expect(code.offset == 64 + 3 * 56)
        #expect(!elf.programHeaders[1].isExecutable)
        #expect(!elf.programHeaders[2].isLoad)
    }

    @Test func loadCopiesFileBytesAndZeroFillsTheRest() throws {
        let boot = try ImageLoader.load(ELFBuilder.sample().build(), mode: .elf, memorySize: 16 * MiB, vcpuCount: 2)
        #expect(boot.mode == .elf)
        #expect(boot.entry == 0x10_0000)
        let image = Array(boot.segments.dropFirst(2))
        #expect(Array(boot.segments.prefix(2)) == LongModeBootStructures.segments())
        #expect(image.count == 2)
        #expect(image[0] == MemorySegment(guestPhysicalAddress: 0x10_0000, bytes: [0x90, 0x90, 0xF4]))
        #expect(image[1].guestPhysicalAddress == 0x20_0000)
        #expect(image[1].bytes.count == 0x1000)
        #expect(Array(image[1].bytes.prefix(4)) == [1, 2, 3, 4])
        #expect(image[1].bytes.dropFirst(4).allSatisfy { $0 == 0 })
    }

    /// A segment from a slice in the middle of an image: its bytes, then
    /// zeros to the memory size; never shorter than the file bytes.
    @Test func aSegmentIsItsFileBytesThenZeros() {
        let image: [UInt8] = [9, 9, 1, 2, 3, 9]
        let segment = MemorySegment(guestPhysicalAddress: 0x1000, fileBytes: image[2..<5], memorySize: 7)
        #expect(segment.bytes == [1, 2, 3, 0, 0, 0, 0] && segment.endAddress == 0x1007)
        #expect(MemorySegment(guestPhysicalAddress: 0, fileBytes: image[2..<5], memorySize: 3).bytes == [1, 2, 3])
        #expect(MemorySegment(guestPhysicalAddress: 0, fileBytes: image[2..<5], memorySize: 1).bytes == [1, 2, 3])
        #expect(MemorySegment(guestPhysicalAddress: 0, fileBytes: image[0..<0], memorySize: 2).bytes == [0, 0])
    }

    @Test func cpuStateMatchesFlatLongModeExceptTheEntry() throws {
        var b = ELFBuilder.sample()
        b.entry = 0x10_0002  // the hlt, inside the executable segment
        let elf = try ImageLoader.load(b.build(), mode: .elf, memorySize: 16 * MiB, vcpuCount: 3)
        let flat = try ImageLoader.load([0xF4], mode: .long, memorySize: 16 * MiB, vcpuCount: 3)
        for i in 0..<3 {
            var expected = flat.cpuState(vcpu: i, of: 3)
            expected.rip = 0x10_0002
            #expect(elf.cpuState(vcpu: i, of: 3) == expected)
        }
    }

    @Test func nonLoadHeadersAreIgnoredEvenWithNonsenseFields() throws {
        var b = ELFBuilder.sample()
        b.segments[2].offsetOverride = .max
        b.segments[2].fileSizeOverride = .max
        b.segments[2].physicalAddress = 0x1000  // would overlap the GDT if it were loaded
        let boot = try ImageLoader.load(b.build(), mode: .elf, memorySize: 16 * MiB, vcpuCount: 1)
        #expect(boot.segments.count == 4)
    }

    @Test func emptyLoadSegmentIsSkipped() throws {
        var b = ELFBuilder.sample()
        b.segments.append(.init(flags: 4, physicalAddress: 0x1000, data: [], memorySize: 0))
        let boot = try ImageLoader.load(b.build(), mode: .elf, memorySize: 16 * MiB, vcpuCount: 1)
        #expect(!boot.segments.contains { $0.guestPhysicalAddress == 0x1000 && $0.bytes.isEmpty })
        #expect(boot.segments.count == 4)
    }

    @Test func segmentsMayTouchButNotOverlapReservedRegions() throws {
        var b = ELFBuilder()
        b.entry = 0x8000
        b.segments = [
            .init(flags: 5, physicalAddress: 0x8000, data: [0xF4], memorySize: 0x4_0000 - 0x8000),  // up to the stacks
            .init(flags: 6, physicalAddress: 0x0, data: [0], memorySize: 0x1000),                    // up to the GDT
            .init(flags: 6, physicalAddress: 0x8_0000, data: [0], memorySize: 0x1000),               // right after the stacks
        ]
        let boot = try ImageLoader.load(b.build(), mode: .elf, memorySize: 2 * MiB, vcpuCount: 1)
        #expect(boot.segments.count == 5)
    }

    @Test func detectMode() {
        #expect(ImageLoader.detectMode(ELFBuilder.sample().build()) == .elf)
        #expect(ImageLoader.detectMode([0x7F, 0x45, 0x4C, 0x46]) == .elf)
        #expect(ImageLoader.detectMode([0x7F, 0x45, 0x4C]) == nil)
        #expect(ImageLoader.detectMode([0xFA, 0xF4]) == nil)
        #expect(ImageLoader.detectMode([]) == nil)
    }
}
