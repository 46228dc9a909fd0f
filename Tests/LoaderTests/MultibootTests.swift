// LoaderTests: multiboot kernels that load — a flat image placed by the
// header's address fields and an ELF32 image — checked by decoding what the
// kernel would find in memory: segments, the information structure, the
// memory map, module table and strings, and the entry CPU state. The image
// builders used by the other Multiboot*Tests files live here too.
import Testing
@testable import Loader

// MARK: Builders

/// The 12-byte multiboot header (plus the five address fields when given).
func multibootHeader(flags: UInt32, checksum: UInt32? = nil, addresses: [UInt32] = []) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 12 + 4 * addresses.count)
    put32(&h, 0, 0x1BAD_B002)
    put32(&h, 4, flags)
    put32(&h, 8, checksum ?? (0 &- 0x1BAD_B002 &- flags))
    for (i, a) in addresses.enumerated() { put32(&h, 12 + 4 * i, a) }
    return h
}

/// A flat kernel with the address fields (flag bit 16): the file is loaded
/// at `loadAddress`, the header sits at `headerOffset`, code at `codeOffset`.
struct AOutKernelBuilder {
    var size = 0x200
    var headerOffset = 0x40
    var codeOffset = 0x80
    var flags: UInt32 = 0x0001_0003
    var checksum: UInt32? = nil
    var loadAddress: UInt32 = 0x10_0000
    var headerAddress: UInt32? = nil  // default loadAddress + headerOffset
    var loadEndAddress: UInt32? = nil // default loadAddress + size
    var bssEndAddress: UInt32? = nil  // default load end + 0x1000
    var entryAddress: UInt32? = nil   // default loadAddress + codeOffset

    var loadEnd: UInt32 { loadEndAddress ?? loadAddress + UInt32(size) }
    var bssEnd: UInt32 { bssEndAddress ?? loadEnd + 0x1000 }
    var entry: UInt32 { entryAddress ?? loadAddress + UInt32(codeOffset) }

    func build() -> [UInt8] {
        var image = [UInt8](repeating: 0xCC, count: size)
        let header = multibootHeader(flags: flags, checksum: checksum, addresses: [
            headerAddress ?? loadAddress + UInt32(headerOffset), loadAddress, loadEnd, bssEnd, entry,
        ])
        let headerEnd = min(size, headerOffset + header.count)
        image.replaceSubrange(headerOffset..<headerEnd, with: header.prefix(headerEnd - headerOffset))
        if codeOffset + 3 <= size { image.replaceSubrange(codeOffset..<codeOffset + 3, with: [0xFA, 0xF4, 0xEB]) }
        return image
    }
}

/// An i386 ELF32 executable: 52-byte header, program headers at 52, then each
/// segment's file bytes. The multiboot header (no address fields) starts the
/// first segment's data, so it lands inside the first 8 KiB.
struct ELF32Builder {
    struct Segment {
        var type: UInt32 = 1
        var flags: UInt32 = 5
        var physicalAddress: UInt32
        var virtualAddress: UInt32? = nil
        var data: [UInt8] = []
        var memorySize: UInt32? = nil
        var offsetOverride: UInt32? = nil
        var fileSizeOverride: UInt32? = nil
    }

    var elfClass: UInt8 = 1
    var type: UInt16 = 2
    var machine: UInt16 = 3
    var entry: UInt32 = 0x10_0000 + 12
    var programHeaderEntrySize: UInt16 = 32
    var programHeaderCountOverride: UInt16? = nil
    var programHeaderOffsetOverride: UInt32? = nil
    var segments: [Segment] = []

    /// Text (multiboot header, then code) at 1 MiB, data with BSS at 2 MiB.
    static func sample(flags: UInt32 = 0x3) -> ELF32Builder {
        var b = ELF32Builder()
        b.segments = [
            Segment(flags: 5, physicalAddress: 0x10_0000,
                    data: multibootHeader(flags: flags) + [0xFA, 0xF4, 0xEB, 0xFD]),
            Segment(flags: 6, physicalAddress: 0x20_0000, data: [1, 2, 3, 4], memorySize: 0x1000),
            Segment(type: 0x6474_E551, flags: 6, physicalAddress: 0, data: [], memorySize: 0),
        ]
        return b
    }

    func build() -> [UInt8] {
        let headerSize = 52
        var out = [UInt8](repeating: 0, count: headerSize + segments.count * Int(programHeaderEntrySize))
        var offsets: [Int] = []
        for s in segments {
            offsets.append(out.count)
            out += s.data
        }
        out.replaceSubrange(0..<4, with: [0x7F, 0x45, 0x4C, 0x46])
        out[4] = elfClass; out[5] = 1; out[6] = 1
        put16(&out, 16, type)
        put16(&out, 18, machine)
        put32(&out, 20, 1)
        put32(&out, 24, entry)
        put32(&out, 28, programHeaderOffsetOverride ?? UInt32(headerSize))
        put16(&out, 40, UInt16(headerSize))
        put16(&out, 42, programHeaderEntrySize)
        put16(&out, 44, programHeaderCountOverride ?? UInt16(segments.count))
        for (i, s) in segments.enumerated() {
            let base = headerSize + i * Int(programHeaderEntrySize)
            guard base + 32 <= out.count else { continue }
            put32(&out, base, s.type)
            put32(&out, base + 4, s.offsetOverride ?? UInt32(offsets[i]))
            put32(&out, base + 8, s.virtualAddress ?? s.physicalAddress)
            put32(&out, base + 12, s.physicalAddress)
            put32(&out, base + 16, s.fileSizeOverride ?? UInt32(s.data.count))
            put32(&out, base + 20, s.memorySize ?? UInt32(s.data.count))
            put32(&out, base + 24, s.flags)
            put32(&out, base + 28, 0x1000)
        }
        return out
    }
}

/// `MultibootLoader.load` that returns the error instead of throwing.
func multibootError(_ image: [UInt8], commandLine: String = "", modules: [MultibootModule] = [],
                    memory: UInt64 = 64 * MiB, vcpus: Int = 1) -> LoaderError? {
    do {
        _ = try MultibootLoader.load(image, commandLine: commandLine, modules: modules,
                                     memorySize: memory, vcpuCount: vcpus)
        return nil
    } catch {
        return error
    }
}

// MARK: Guest-memory decoding

func read32(_ segments: [MemorySegment], _ address: UInt64) -> UInt32? {
    var value: UInt32 = 0
    for i in (0..<4).reversed() {
        guard let b = byte(segments, address + UInt64(i)) else { return nil }
        value = value << 8 | UInt32(b)
    }
    return value
}

func readBytes(_ segments: [MemorySegment], _ address: UInt64, _ count: Int) -> [UInt8]? {
    var out: [UInt8] = []
    for i in 0..<count {
        guard let b = byte(segments, address + UInt64(i)) else { return nil }
        out.append(b)
    }
    return out
}

/// The NUL-terminated string at `address` (nil if it runs off the segments).
func cString(_ segments: [MemorySegment], _ address: UInt64) -> String? {
    var bytes: [UInt8] = []
    var a = address
    while let b = byte(segments, a) {
        if b == 0 { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(b)
        a += 1
    }
    return nil
}

/// The multiboot information structure as a kernel reads it through EBX.
struct DecodedInfo {
    var flags: UInt32, memLower: UInt32, memUpper: UInt32
    var commandLine: String?
    var modules: [(start: UInt32, end: UInt32, string: String?, reserved: UInt32)]
    var memoryMap: [MultibootMemoryRegion]
    var memoryMapEntrySizes: [UInt32]
    var bootLoaderName: String?

    init?(_ s: [MemorySegment], at info: UInt64) {
        guard let flags = read32(s, info), let lower = read32(s, info + 4), let upper = read32(s, info + 8),
              let cmd = read32(s, info + 16), let count = read32(s, info + 20), let mods = read32(s, info + 24),
              let mmapLength = read32(s, info + 44), let mmap = read32(s, info + 48),
              let name = read32(s, info + 64) else { return nil }
        self.flags = flags; memLower = lower; memUpper = upper
        commandLine = cString(s, UInt64(cmd))
        modules = []
        for i in 0..<UInt64(count) {
            let e = UInt64(mods) + i * 16
            guard let start = read32(s, e), let end = read32(s, e + 4), let str = read32(s, e + 8),
                  let reserved = read32(s, e + 12) else { return nil }
            modules.append((start, end, cString(s, UInt64(str)), reserved))
        }
        // Walk the map the way the spec says: each entry's size field excludes itself.
        memoryMap = []; memoryMapEntrySizes = []
        var p = UInt64(mmap)
        while p < UInt64(mmap) + UInt64(mmapLength) {
            guard let size = read32(s, p), let base = read64(s, p + 4), let length = read64(s, p + 12),
                  let type = read32(s, p + 20) else { return nil }
            memoryMapEntrySizes.append(size)
            memoryMap.append(MultibootMemoryRegion(base: base, length: length, type: type))
            p += UInt64(size) + 4
        }
        bootLoaderName = cString(s, UInt64(name))
    }
}

// MARK: Tests

@Suite struct MultibootTests {
    let modules = [
        MultibootModule(bytes: Array("A=1\nB=two\n".utf8), commandLine: "env.txt"),
        MultibootModule(bytes: [UInt8](repeating: 0x5A, count: 0x1801), commandLine: "blob arg1 arg2"),
    ]

    @Test func addressFieldsImageSegmentsAndEntry() throws {
        let b = AOutKernelBuilder()
        let image = b.build()
        let boot = try MultibootLoader.load(image, commandLine: "kernel console=ttyS0", modules: modules,
                                            memorySize: 64 * MiB, vcpuCount: 2)
        #expect(boot.mode == .multiboot)
        #expect(boot.entry == 0x10_0080)
        #expect(boot.segments.count == 4)  // area, kernel, two modules
        #expect(boot.segments[0].guestPhysicalAddress == BootLayout.multibootAreaStart)
        let kernel = boot.segments[1]
        #expect(kernel.guestPhysicalAddress == 0x10_0000)
        #expect(kernel.bytes.count == 0x200 + 0x1000)  // file, then BSS to bss_end_addr
        #expect(Array(kernel.bytes.prefix(0x200)) == image)
        #expect(kernel.bytes.suffix(0x1000).allSatisfy { $0 == 0 })
        // Modules: page-aligned right after the kernel's BSS, each on its own page.
        #expect(boot.segments[2].guestPhysicalAddress == 0x10_2000)
        #expect(boot.segments[3].guestPhysicalAddress == 0x10_3000)
    }

    @Test func loadEndZeroLoadsToTheEndOfTheFileAndHeaderMayFollowLoadAddress() throws {
        // Header 0x40 into the file, load_addr two-thirds in: the first 0x20
        // file bytes are not loaded (text offset = 0x40 - (header_addr - load_addr)).
        var b = AOutKernelBuilder()
        b.headerAddress = 0x10_0020
        b.loadEndAddress = 0
        b.bssEndAddress = 0
        b.entryAddress = 0x10_0060
        let image = b.build()
        let boot = try MultibootLoader.load(image, commandLine: "", modules: [], memorySize: 4 * MiB, vcpuCount: 1)
        #expect(boot.segments[1].guestPhysicalAddress == 0x10_0000)
        #expect(boot.segments[1].bytes == Array(image[0x20...]))
        #expect(boot.entry == 0x10_0060)
    }

    @Test func elf32ImageSegmentsAndEntry() throws {
        let b = ELF32Builder.sample()
        let boot = try MultibootLoader.load(b.build(), commandLine: "x", modules: modules,
                                            memorySize: 64 * MiB, vcpuCount: 1)
        #expect(boot.entry == 0x10_000C)
        #expect(boot.segments.map(\.guestPhysicalAddress) == [0x9000, 0x10_0000, 0x20_0000, 0x20_1000, 0x20_2000])
        #expect(boot.segments[1].bytes == b.segments[0].data)
        #expect(boot.segments[2].bytes.count == 0x1000)
        #expect(Array(boot.segments[2].bytes.prefix(4)) == [1, 2, 3, 4])
        #expect(boot.segments[3].bytes == modules[0].bytes)
        #expect(boot.segments[4].bytes == modules[1].bytes)
    }

    @Test func higherHalfELFEntryIsTranslatedToPhysical() throws {
        // Linked at 0xC010_0000, loaded at 1 MiB: the entry is virtual, as QEMU's ELF loader handles.
        var b = ELF32Builder.sample()
        b.segments[0].virtualAddress = 0xC010_0000
        b.entry = 0xC010_000C
        let boot = try MultibootLoader.load(b.build(), commandLine: "", modules: [], memorySize: 4 * MiB, vcpuCount: 1)
        #expect(boot.entry == 0x10_000C)
        #expect(boot.cpuState(vcpu: 0, of: 1).rip == 0x10_000C)
    }

    @Test func informationStructure() throws {
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), commandLine: "kernel console=ttyS0 é",
                                            modules: modules, memorySize: 64 * MiB, vcpuCount: 1)
        let state = boot.cpuState(vcpu: 0, of: 1)
        #expect(state.rbx == BootLayout.multibootInfoAddress)
        let info = try #require(DecodedInfo(boot.segments, at: state.rbx))
        // MEM | CMDLINE | MODS | MMAP | BOOT_LOADER_NAME
        #expect(info.flags == 0x24D)
        #expect(info.memLower == 639)
        #expect(info.memUpper == (64 * 1024 - 1024))
        #expect(info.commandLine == "kernel console=ttyS0 é")
        #expect(info.bootLoaderName == "Deflect")
        #expect(info.memoryMapEntrySizes == [20, 20, 20, 20])
        #expect(info.memoryMap == [
            MultibootMemoryRegion(base: 0, length: 0x9_FC00, type: 1),
            MultibootMemoryRegion(base: 0x9_FC00, length: 0x400, type: 2),
            MultibootMemoryRegion(base: 0xF_0000, length: 0x1_0000, type: 2),
            MultibootMemoryRegion(base: 0x10_0000, length: 63 * MiB, type: 1),
        ])
        #expect(info.modules.count == 2)
        for (entry, module) in zip(info.modules, modules) {
            #expect(entry.start % 0x1000 == 0)
            #expect(entry.end - entry.start == UInt32(module.bytes.count))  // mod_end is exclusive
            #expect(entry.string == module.commandLine)
            #expect(entry.reserved == 0)
            #expect(readBytes(boot.segments, UInt64(entry.start), module.bytes.count) == module.bytes)
        }
        // Boot loader name and strings live in the area, not in RAM the kernel owns.
        let area = boot.segments[0]
        #expect(area.endAddress <= BootLayout.multibootAreaLimit)
        #expect(area.endAddress == BootLayout.multibootStringsAddress
                + UInt64("kernel console=ttyS0 é".utf8.count + 1 + 8 + 15))
    }

    @Test func noModulesStillReportsAnEmptyModuleList() throws {
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), commandLine: "", modules: [],
                                            memorySize: 2 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: BootLayout.multibootInfoAddress))
        #expect(info.flags & 0x8 != 0)
        #expect(info.modules.isEmpty)
        #expect(info.commandLine == "")
        #expect(info.memUpper == 1024)
        #expect(info.memoryMap.last == MultibootMemoryRegion(base: 0x10_0000, length: 1 * MiB, type: 1))
    }

    @Test func emptyModuleOccupiesNoMemory() throws {
        let mods = [MultibootModule(bytes: [], commandLine: "empty"), MultibootModule(bytes: [7], commandLine: "one")]
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), commandLine: "", modules: mods,
                                            memorySize: 4 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: BootLayout.multibootInfoAddress))
        #expect(info.modules.map(\.start) == [0x10_2000, 0x10_2000])
        #expect(info.modules.map(\.end) == [0x10_2000, 0x10_2001])
        #expect(info.modules.map(\.string) == ["empty", "one"])
        #expect(boot.segments.count == 3)
    }

    @Test func cpuStateIsFlat32BitProtectedModeWithMagicAndInfo() throws {
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), commandLine: "", modules: [],
                                            memorySize: 16 * MiB, vcpuCount: 4)
        let s = boot.cpuState(vcpu: 0, of: 4)
        #expect(s.rip == 0x10_0080)
        #expect(s.rax == 0x2BAD_B002)
        #expect(s.rbx == 0x9020)
        #expect(s.rsp == BootLayout.multibootStackTop)
        #expect(s.rflags == 0x2)  // bit 1 set, IF clear
        #expect(s.cr0 == 0x11)
        #expect(s.cr3 == 0 && s.cr4 == 0 && s.efer == 0)
        #expect(s.cs == SegmentRegister(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 0xB, present: true,
                                        db: true, s: true, g: true))
        let data = SegmentRegister(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 0x3, present: true,
                                   db: true, s: true, g: true)
        #expect([s.ds, s.es, s.fs, s.gs, s.ss].allSatisfy { $0 == data })
        #expect(s.idt == DescriptorTable(base: 0, limit: 0))
        // The GDT in memory describes exactly the loaded segment caches, so reloading a selector changes nothing.
        #expect(s.gdt == DescriptorTable(base: 0x9000, limit: 23))
        #expect(read64(boot.segments, 0x9000) == 0)
        #expect(read64(boot.segments, 0x9008).map { decodeDescriptor($0, selector: 0x08) } == s.cs)
        #expect(read64(boot.segments, 0x9010).map { decodeDescriptor($0, selector: 0x10) } == data)
        // One bootstrap processor: the others wait for INIT/SIPI.
        #expect(boot.applicationProcessorsWaitForSIPI)
        #expect(boot.cpuState(vcpu: 3, of: 4) == s)
    }

    @Test func existingModesKeepAllVCPUsStartingAtTheEntry() throws {
        let boot = try ImageLoader.load([0xF4], mode: .long, memorySize: 4 * MiB, vcpuCount: 2)
        #expect(!boot.applicationProcessorsWaitForSIPI)
        #expect(boot.bootstrapProcessorState == nil)
        #expect(boot.cpuState(vcpu: 1, of: 2).rdi == 1)
        #expect(boot.cpuState(vcpu: 1, of: 2).rax == 0 && boot.cpuState(vcpu: 1, of: 2).rbx == 0)
    }

    @Test func videoModeFlagIsAcceptedAndIgnored() throws {
        var b = AOutKernelBuilder()
        b.flags = 0x0001_0007
        let boot = try MultibootLoader.load(b.build(), commandLine: "", modules: [], memorySize: 4 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: BootLayout.multibootInfoAddress))
        #expect(info.flags & (1 << 11 | 1 << 12) == 0)  // no VBE, no framebuffer
        _ = try MultibootLoader.load(ELF32Builder.sample(flags: 0x4).build(), commandLine: "", modules: [],
                                     memorySize: 4 * MiB, vcpuCount: 1)
    }

    @Test func optionalFlagBitsAreIgnored() throws {
        var b = AOutKernelBuilder()
        b.flags = 0xFFFE_0000 | 0x0001_0000
        #expect(multibootError(b.build()) == nil)
    }

    @Test func firstValidHeaderWinsOverAStrayMagic() throws {
        // A stray magic with a bad checksum at offset 0 must not hide the real header.
        var image = AOutKernelBuilder().build()
        put32(&image, 0, 0x1BAD_B002)
        put32(&image, 4, 0)
        put32(&image, 8, 0)
        #expect(multibootError(image) == nil)
    }

    @Test func imageLoaderModeAndDetection() throws {
        let aout = AOutKernelBuilder().build()
        let elf32 = ELF32Builder.sample().build()
        #expect(ImageLoader.detectMode(aout) == .multiboot)
        #expect(ImageLoader.detectMode(elf32) == .multiboot)
        #expect(ImageLoader.detectMode(ELFBuilder.sample().build()) == .elf)
        #expect(ImageLoader.detectMode([0xF4]) == nil)
        let boot = try ImageLoader.load(elf32, mode: .multiboot, memorySize: 4 * MiB, vcpuCount: 1)
        #expect(boot.mode == .multiboot)
        #expect(DecodedInfo(boot.segments, at: BootLayout.multibootInfoAddress)?.commandLine == "")
    }

    @Test func largestAllowedStringsAndModuleCountFit() throws {
        let line = String(repeating: "x", count: 4096)
        let mods = (0..<64).map { MultibootModule(bytes: [UInt8($0)], commandLine: line) }
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), commandLine: line, modules: mods,
                                            memorySize: 64 * MiB, vcpuCount: 1)
        #expect(boot.segments[0].endAddress <= BootLayout.multibootAreaLimit)
        #expect(boot.segments[0].endAddress < BootLayout.multibootReservedStart)
        let info = try #require(DecodedInfo(boot.segments, at: BootLayout.multibootInfoAddress))
        #expect(info.modules.count == 64)
        #expect(info.modules.allSatisfy { $0.string == line })
    }

    @Test func qemuStyleCommandLine() {
        #expect(MultibootLoader.qemuCommandLine(kernelPath: "x86/msr.flat", append: "-smp 2") == "x86/msr.flat -smp 2")
    }

    @Test func kernelBelowOneMiBBesideTheAreaLoads() throws {
        // Low kernels are allowed as long as they miss the area actually in use and the reserved hole.
        var b = AOutKernelBuilder()
        b.loadAddress = 0x2_0000
        let boot = try MultibootLoader.load(b.build(), commandLine: "", modules: modules, memorySize: 4 * MiB,
                                            vcpuCount: 1)
        #expect(boot.segments[1].guestPhysicalAddress == 0x2_0000)
        #expect(boot.segments[2].guestPhysicalAddress == 0x10_0000)  // modules still start at 1 MiB
    }
}
