// LoaderTests: multiboot kernels that load — a flat image placed by the
// header's address fields and an ELF32 image, at 1 MiB and below the old
// fixed 0x9000 — checked by decoding what the kernel would find in memory:
// segments, module placement, the information structure, the memory map,
// module table and QEMU-style command lines, and the entry CPU state. The
// image builders and the layout checker used by the other Multiboot*Tests
// files live here too.
import KVMABI
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
func multibootError(_ image: [UInt8], kernelPath: String = "kernel", append: String = "",
                    modules: [MultibootModule] = [], memory: UInt64 = 64 * MiB, vcpus: Int = 1) -> LoaderError? {
    do {
        _ = try MultibootLoader.load(image, kernelPath: kernelPath, append: append, modules: modules,
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

/// Everything the kernel is handed — information structure, memory map,
/// loader name, module table, every command line, the boot GDT and stack —
/// lies in RAM, overlaps no loaded byte (kernel segments, modules) and no
/// other part, and the information structure points at the right things.
func expectSoundLayout(_ boot: BootImage, memory: UInt64, commandLine: String, modules: [MultibootModule],
                       sourceLocation: SourceLocation = #_sourceLocation) {
    let state = boot.cpuState(vcpu: 0, of: 1)
    guard let info = DecodedInfo(boot.segments, at: state.rbx) else {
        Issue.record("no information structure at EBX \(hex(state.rbx))", sourceLocation: sourceLocation)
        return
    }
    #expect(info.commandLine == commandLine, sourceLocation: sourceLocation)
    #expect(info.modules.map(\.string) == modules.map(\.commandLine), sourceLocation: sourceLocation)
    #expect(info.modules.map { UInt64($0.start)..<UInt64($0.end) } == boot.moduleRanges, sourceLocation: sourceLocation)
    #expect(boot.moduleRanges.map { $0.upperBound - $0.lowerBound } == modules.map(\.size), sourceLocation: sourceLocation)
    #expect(boot.moduleRanges.allSatisfy { $0.lowerBound % 0x1000 == 0 }, sourceLocation: sourceLocation)

    let infoAddress = state.rbx
    let mmap = UInt64(read32(boot.segments, infoAddress + 48) ?? 0)
    let table = UInt64(read32(boot.segments, infoAddress + 24) ?? 0)
    let cmdline = UInt64(read32(boot.segments, infoAddress + 16) ?? 0)
    let name = UInt64(read32(boot.segments, infoAddress + 64) ?? 0)
    var parts: [(what: String, range: Range<UInt64>)] = [
        ("info", infoAddress..<infoAddress + 88),
        ("mmap", mmap..<mmap + UInt64(info.memoryMap.count * 24)),
        ("loader name", name..<name + UInt64(MultibootConstants.bootLoaderName.utf8.count + 1)),
        ("module table", table..<table + UInt64(modules.count * 16)),
        ("cmdline", cmdline..<cmdline + UInt64(commandLine.utf8.count + 1)),
        ("gdt", state.gdt.base..<state.gdt.base + UInt64(state.gdt.limit) + 1),
        ("stack", state.rsp - BootLayout.multibootStackSize..<state.rsp),
    ]
    for (index, module) in modules.enumerated() {
        let string = UInt64(read32(boot.segments, table + UInt64(index * 16) + 8) ?? 0)
        parts.append(("module \(index) string", string..<string + UInt64(module.commandLine.utf8.count + 1)))
    }
    let area = boot.segments[0]
    var loaded = boot.segments.dropFirst().map { $0.guestPhysicalAddress..<$0.endAddress }
    loaded += boot.moduleRanges.filter { !$0.isEmpty }
    let reserved = BootLayout.multibootReservedStart..<BootLayout.multibootReservedEnd
    for (what, range) in parts {
        #expect(range.upperBound <= memory && range.lowerBound >= 0x1000, "\(what) \(range) outside RAM",
                sourceLocation: sourceLocation)
        #expect(!range.overlaps(reserved), "\(what) \(range) in the reserved hole", sourceLocation: sourceLocation)
        for piece in loaded {
            #expect(!range.overlaps(piece), "\(what) \(range) overlaps loaded \(piece)", sourceLocation: sourceLocation)
        }
        for (other, otherRange) in parts where other != what {
            #expect(!range.overlaps(otherRange), "\(what) overlaps \(other)", sourceLocation: sourceLocation)
        }
        // Written by the area segment, except the stack, which is only kept free.
        if what != "stack" {
            #expect(area.guestPhysicalAddress <= range.lowerBound && range.upperBound <= area.endAddress,
                    "\(what) outside the area segment", sourceLocation: sourceLocation)
        }
    }
    // QEMU's rule: the area sits above every loaded piece when RAM has room there.
    if let top = loaded.map(\.upperBound).max(), top + 0x4_0000 < memory, top >= reserved.upperBound {
        #expect(area.guestPhysicalAddress >= top, sourceLocation: sourceLocation)
    }
}

// MARK: Tests

@Suite struct MultibootTests {
    let modules = [
        MultibootModule(size: 10, commandLine: "env.txt"),
        MultibootModule(size: 0x1801, commandLine: "blob arg1 arg2"),
    ]

    @Test func addressFieldsImageSegmentsAndEntry() throws {
        let b = AOutKernelBuilder()
        let image = b.build()
        let boot = try MultibootLoader.load(image, kernelPath: "k", append: "console=ttyS0", modules: modules,
                                            memorySize: 64 * MiB, vcpuCount: 2)
        #expect(boot.mode == .multiboot)
        #expect(boot.entry == 0x10_0080)
        #expect(boot.segments.count == 2)  // area, kernel; the caller copies the modules
        let kernel = boot.segments[1]
        #expect(kernel.guestPhysicalAddress == 0x10_0000)
        #expect(kernel.bytes.count == 0x200 + 0x1000)  // file, then BSS to bss_end_addr
        #expect(Array(kernel.bytes.prefix(0x200)) == image)
        #expect(kernel.bytes.suffix(0x1000).allSatisfy { $0 == 0 })
        // Modules: page-aligned right after the kernel's BSS, each on its own page.
        #expect(boot.moduleRanges == [0x10_2000..<0x10_200A, 0x10_3000..<0x10_4801])
        // The multiboot area: on the next page above the last module.
        #expect(boot.segments[0].guestPhysicalAddress == 0x10_5000)
        expectSoundLayout(boot, memory: 64 * MiB, commandLine: "k console=ttyS0", modules: modules)
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
        let boot = try MultibootLoader.load(image, kernelPath: "k", append: "", modules: [], memorySize: 4 * MiB,
                                            vcpuCount: 1)
        #expect(boot.segments[1].guestPhysicalAddress == 0x10_0000)
        #expect(boot.segments[1].bytes == Array(image[0x20...]))
        #expect(boot.entry == 0x10_0060)
    }

    @Test func elf32ImageSegmentsAndEntry() throws {
        let b = ELF32Builder.sample()
        let boot = try MultibootLoader.load(b.build(), kernelPath: "k", append: "x", modules: modules,
                                            memorySize: 64 * MiB, vcpuCount: 1)
        #expect(boot.entry == 0x10_000C)
        #expect(boot.segments.map(\.guestPhysicalAddress) == [0x20_4000, 0x10_0000, 0x20_0000])
        #expect(boot.segments[1].bytes == b.segments[0].data)
        #expect(boot.segments[2].bytes.count == 0x1000)
        #expect(Array(boot.segments[2].bytes.prefix(4)) == [1, 2, 3, 4])
        #expect(boot.moduleRanges == [0x20_1000..<0x20_100A, 0x20_2000..<0x20_3801])
        expectSoundLayout(boot, memory: 64 * MiB, commandLine: "k x", modules: modules)
    }

    @Test func higherHalfELFEntryIsTranslatedToPhysical() throws {
        // Linked at 0xC010_0000, loaded at 1 MiB: the entry is virtual, as QEMU's ELF loader handles.
        var b = ELF32Builder.sample()
        b.segments[0].virtualAddress = 0xC010_0000
        b.entry = 0xC010_000C
        let boot = try MultibootLoader.load(b.build(), kernelPath: "k", append: "", modules: [], memorySize: 4 * MiB,
                                            vcpuCount: 1)
        #expect(boot.entry == 0x10_000C)
        #expect(boot.cpuState(vcpu: 0, of: 1).rip == 0x10_000C)
    }

    @Test func informationStructure() throws {
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), kernelPath: "build/kernel.elf",
                                            append: "console=ttyS0 é", modules: modules, memorySize: 64 * MiB,
                                            vcpuCount: 1)
        let state = boot.cpuState(vcpu: 0, of: 1)
        #expect(state.rbx == 0x10_5020)
        let info = try #require(DecodedInfo(boot.segments, at: state.rbx))
        // MEM | CMDLINE | MODS | MMAP | BOOT_LOADER_NAME
        #expect(info.flags == 0x24D)
        #expect(info.memLower == 639)
        #expect(info.memUpper == (64 * 1024 - 1024))
        #expect(info.commandLine == "build/kernel.elf console=ttyS0 é")
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
            #expect(UInt64(entry.end - entry.start) == module.size)  // mod_end is exclusive
            #expect(entry.string == module.commandLine)
            #expect(entry.reserved == 0)
        }
        // The area holds exactly the structures and the strings, packed; the stack page follows.
        let area = boot.segments[0]
        let strings = "build/kernel.elf console=ttyS0 é".utf8.count + 1 + 8 + 15
        #expect(area.endAddress == area.guestPhysicalAddress + 0x130 + 2 * 16 + UInt64(strings))
        #expect(state.rsp == area.guestPhysicalAddress + 0x2000)
        expectSoundLayout(boot, memory: 64 * MiB, commandLine: "build/kernel.elf console=ttyS0 é", modules: modules)
    }

    @Test func noModulesStillReportsAnEmptyModuleList() throws {
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), kernelPath: "k", append: "", modules: [],
                                            memorySize: 2 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx))
        #expect(info.flags & 0x8 != 0)
        #expect(info.modules.isEmpty)
        #expect(info.commandLine == "k ")
        #expect(info.memUpper == 1024)
        #expect(info.memoryMap.last == MultibootMemoryRegion(base: 0x10_0000, length: 1 * MiB, type: 1))
    }

    @Test func emptyModuleOccupiesNoMemory() throws {
        let mods = [MultibootModule(size: 0, commandLine: "empty"), MultibootModule(size: 1, commandLine: "one")]
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), kernelPath: "k", append: "", modules: mods,
                                            memorySize: 4 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx))
        #expect(info.modules.map(\.start) == [0x10_2000, 0x10_2000])
        #expect(info.modules.map(\.end) == [0x10_2000, 0x10_2001])
        #expect(info.modules.map(\.string) == ["empty", "one"])
        expectSoundLayout(boot, memory: 4 * MiB, commandLine: "k ", modules: mods)
    }

    @Test func cpuStateIsFlat32BitProtectedModeWithMagicAndInfo() throws {
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), kernelPath: "k", append: "", modules: [],
                                            memorySize: 16 * MiB, vcpuCount: 4)
        let s = boot.cpuState(vcpu: 0, of: 4)
        let area = boot.segments[0].guestPhysicalAddress
        #expect(area == 0x10_2000)  // the page after the kernel's BSS
        #expect(s.rip == 0x10_0080)
        #expect(s.rax == 0x2BAD_B002)
        #expect(s.rbx == area + 0x20)
        #expect(s.rsp == area + 0x2000)  // top of the stack page above the area's structures
        #expect(s.rflags == 0x2)  // bit 1 set, IF clear
        #expect(s.cr0 == 0x11)
        #expect(s.cr3 == 0 && s.cr4 == 0 && s.efer == 0)
        #expect(s.cs == Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 0xB, present: true,
                                        db: true, s: true, g: true))
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 0x3, present: true,
                                   db: true, s: true, g: true)
        #expect([s.ds, s.es, s.fs, s.gs, s.ss].allSatisfy { $0 == data })
        #expect(s.idt == DescriptorTableRegister(base: 0, limit: 0))
        // The GDT in memory describes exactly the loaded segment caches, so reloading a selector changes nothing.
        #expect(s.gdt == DescriptorTableRegister(base: area, limit: 23))
        #expect(read64(boot.segments, area) == 0)
        #expect(read64(boot.segments, area + 8).map { decodeDescriptor($0, selector: 0x08) } == s.cs)
        #expect(read64(boot.segments, area + 16).map { decodeDescriptor($0, selector: 0x10) } == data)
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
        let boot = try MultibootLoader.load(b.build(), kernelPath: "k", append: "", modules: [], memorySize: 4 * MiB,
                                            vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx))
        #expect(info.flags & (1 << 11 | 1 << 12) == 0)  // no VBE, no framebuffer
        _ = try MultibootLoader.load(ELF32Builder.sample(flags: 0x4).build(), kernelPath: "k", append: "", modules: [],
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
        #expect(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx)?.commandLine == " ")
    }

    @Test func largestAllowedStringsAndModuleCountFit() throws {
        let line = String(repeating: "x", count: 4096)
        let mods = (0..<64).map { MultibootModule(size: UInt64($0), commandLine: line) }
        let boot = try MultibootLoader.load(AOutKernelBuilder().build(), kernelPath: "k", append: String(line.dropFirst(2)),
                                            modules: mods, memorySize: 64 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx))
        #expect(info.modules.count == 64)
        #expect(info.modules.allSatisfy { $0.string == line })
        #expect(info.commandLine?.utf8.count == 4096)
        expectSoundLayout(boot, memory: 64 * MiB, commandLine: "k " + line.dropFirst(2), modules: mods)
    }

    // MARK: QEMU compatibility

    @Test func commandLineIsTheKernelPathThenAppendAsInQEMU() throws {
        #expect(MultibootLoader.commandLine(kernelPath: "x86/msr.flat", append: "-smp 2") == "x86/msr.flat -smp 2")
        // QEMU formats "%s %s": an empty -append leaves the trailing space.
        #expect(MultibootLoader.commandLine(kernelPath: "x86/msr.flat", append: "") == "x86/msr.flat ")
        // The path as the user typed it, relative or not; module strings stay whole.
        let mods = [MultibootModule(size: 4, commandLine: "env.txt"), MultibootModule(size: 4, commandLine: "../m.bin a b")]
        let boot = try MultibootLoader.load(ELF32Builder.sample().build(), kernelPath: "./build/k.elf",
                                            append: "first second", modules: mods, memorySize: 8 * MiB, vcpuCount: 1)
        let info = try #require(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx))
        #expect(info.commandLine == "./build/k.elf first second")
        #expect(info.commandLine?.split(separator: " ").first == "./build/k.elf")  // argv[0]
        #expect(info.modules.map(\.string) == ["env.txt", "../m.bin a b"])
        // The whole command line counts against the cap.
        #expect(multibootError(AOutKernelBuilder().build(), kernelPath: "k", append: String(repeating: "a", count: 4094)) == nil)
        #expect(multibootError(AOutKernelBuilder().build(), kernelPath: "k", append: String(repeating: "a", count: 4095)) ==
                .multibootCommandLineTooLong(length: 4097, maximum: 4096))
    }

    @Test func kernelLinkedAt0x8000Loads() throws {
        // Where QEMU (and Deflect before) put the information structure: the
        // kernel owns 0x8000-0xA200 now and the area goes above it.
        var b = AOutKernelBuilder()
        b.loadAddress = 0x8000
        let boot = try MultibootLoader.load(b.build(), kernelPath: "low.elf", append: "a", modules: [],
                                            memorySize: 4 * MiB, vcpuCount: 1)
        #expect(boot.segments[1].guestPhysicalAddress == 0x8000)
        #expect(boot.segments[1].endAddress == 0x9200)
        #expect(boot.segments[0].guestPhysicalAddress == 0xA000)
        expectSoundLayout(boot, memory: 4 * MiB, commandLine: "low.elf a", modules: [])
        // With modules: they start at 1 MiB, the area goes above them.
        let withModules = try MultibootLoader.load(b.build(), kernelPath: "low.elf", append: "", modules: modules,
                                                   memorySize: 4 * MiB, vcpuCount: 1)
        #expect(withModules.moduleRanges.first?.lowerBound == 0x10_0000)
        #expect(withModules.segments[0].guestPhysicalAddress == 0x10_3000)
        expectSoundLayout(withModules, memory: 4 * MiB, commandLine: "low.elf ", modules: modules)
        // An ELF32 kernel linked at 0x8000 too.
        var e = ELF32Builder.sample()
        e.segments[0].physicalAddress = 0x8000
        e.segments[1].physicalAddress = 0x9000
        e.entry = 0x800C
        let elf = try MultibootLoader.load(e.build(), kernelPath: "low.elf", append: "", modules: modules,
                                           memorySize: 4 * MiB, vcpuCount: 1)
        expectSoundLayout(elf, memory: 4 * MiB, commandLine: "low.elf ", modules: modules)
    }

    @Test func kernelAtOneMiBWithModulesKeepsEverythingApart() throws {
        let mods = (0..<5).map { MultibootModule(size: UInt64(0x1000 * $0 + 7), commandLine: "m\($0) x") }
        for memory in [3 * MiB, 16 * MiB, 3072 * MiB] {
            let boot = try MultibootLoader.load(ELF32Builder.sample().build(), kernelPath: "/abs/k", append: "p q",
                                                modules: mods, memorySize: memory, vcpuCount: 1)
            expectSoundLayout(boot, memory: memory, commandLine: "/abs/k p q", modules: mods)
        }
    }

    @Test func areaAvoidsTheReservedHoleAndFallsBackBelowTheKernel() throws {
        // A low kernel ending just under the EBDA: no room above it below 640 KiB, so the area goes to 1 MiB.
        var low = AOutKernelBuilder()
        low.loadAddress = 0x8000
        low.bssEndAddress = 0x9_E000
        let boot = try MultibootLoader.load(low.build(), kernelPath: "k", append: "", modules: [],
                                            memorySize: 2 * MiB, vcpuCount: 1)
        #expect(boot.segments[0].guestPhysicalAddress == 0x10_0000)
        expectSoundLayout(boot, memory: 2 * MiB, commandLine: "k ", modules: [])
        // A kernel filling RAM from 1 MiB to the end: the area takes the lowest free pages instead.
        var high = AOutKernelBuilder()
        high.bssEndAddress = UInt32(2 * MiB)
        let full = try MultibootLoader.load(high.build(), kernelPath: "k", append: "", modules: [],
                                            memorySize: 2 * MiB, vcpuCount: 1)
        #expect(full.segments[0].guestPhysicalAddress == 0x1000)
        expectSoundLayout(full, memory: 2 * MiB, commandLine: "k ", modules: [])
    }
}
