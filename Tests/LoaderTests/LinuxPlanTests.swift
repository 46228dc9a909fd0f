// LoaderTests: the bzImage boot plan — where the kernel, initrd, command
// line and zero page go, the zero page's fields at zero-page.rst's offsets,
// the 64-bit entry state, and each refusal with its one reason.
import KVMABI
import Testing
@testable import Loader

@Suite struct LinuxPlanTests {
    let initrd = [UInt8](repeating: 0xA5, count: 0x10_0005)

    func plan(_ builder: BzImageBuilder = BzImageBuilder(), initrd: [UInt8]? = nil, commandLine: String = "console=ttyS0",
              memory: UInt64 = 64 * MiB, reserved: [Range<UInt64>] = [], rsdp: UInt64 = 0) throws -> LinuxBootPlan {
        try LinuxLoader.plan(image: builder.build(), initrd: initrd, commandLine: commandLine, memoryBytes: memory,
                             reserved: reserved, acpiRSDPAddress: rsdp)
    }

    func planError(_ builder: BzImageBuilder = BzImageBuilder(), initrd: [UInt8]? = nil,
                   commandLine: String = "", memory: UInt64 = 64 * MiB) -> LoaderError? {
        do {
            _ = try LinuxLoader.plan(image: builder.build(), initrd: initrd, commandLine: commandLine,
                                     memoryBytes: memory)
            return nil
        } catch {
            return error
        }
    }

    func segment(_ plan: LinuxBootPlan, at address: UInt64) throws -> [UInt8] {
        try #require(plan.segments.first { $0.guestPhysicalAddress == address }).bytes
    }

    @Test func relocatableKernelGoesToPrefAddress() throws {
        let p = try plan()
        #expect(p.loadAddress == 0x100_0000)
        #expect(p.runtimeStart == 0x100_0000)
        #expect(p.entry == 0x100_0200)
        #expect(p.kernelFootprint == 0x100_0000..<0x180_0000)  // init_size from the runtime address
        #expect(try segment(p, at: 0x100_0000) == BzImageBuilder().kernel)
        let cmdline = try segment(p, at: p.commandLineAddress)
        #expect(cmdline == Array("console=ttyS0".utf8) + [0])
    }

    @Test func fixedKernelLoadsAtOneMiBAndRunsAtPrefAddress() throws {
        var builder = BzImageBuilder()
        builder.relocatable = 0
        let p = try plan(builder)
        #expect(p.loadAddress == 0x10_0000)
        #expect(p.runtimeStart == 0x100_0000)
        #expect(p.entry == 0x10_0200)
        #expect(p.kernelFootprint == 0x10_0000..<0x180_0000)
    }

    @Test func unalignedPrefAddressIsAlignedUp() throws {
        var builder = BzImageBuilder()
        builder.prefAddress = 0x100_1000
        #expect(try plan(builder).loadAddress == 0x120_0000)
        builder.kernelAlignment = 3
        #expect(planError(builder) == .linuxBadKernelAlignment(3))
    }

    @Test func segmentsDoNotOverlapAndStayInRAM() throws {
        let p = try plan(initrd: initrd)
        let sorted = p.segments.sorted { $0.guestPhysicalAddress < $1.guestPhysicalAddress }
        for (a, b) in zip(sorted, sorted.dropFirst()) {
            #expect(a.endAddress <= b.guestPhysicalAddress, "\(a.guestPhysicalAddress) overlaps \(b.guestPhysicalAddress)")
        }
        for s in p.segments {
            #expect(p.memoryMap.isRAM(s.guestPhysicalAddress, s.endAddress))
        }
    }

    @Test func entryStateFollowsThe64BitProtocol() throws {
        let p = try plan()
        let state = try #require(p.bootImage.bootstrapProcessorState)
        #expect(p.bootImage.mode == .linux)
        #expect(p.bootImage.applicationProcessorsWaitForSIPI)
        #expect(state == p.cpuState)
        #expect(state.rip == 0x100_0200)
        #expect(state.rsi == p.zeroPageAddress)
        #expect(state.rdi == 0 && state.rbx == 0)
        #expect(state.rflags == 0x2)  // interrupts off
        #expect(state.cs.selector == 0x10 && state.cs.l)
        #expect([state.ds, state.es, state.ss].allSatisfy { $0.selector == 0x18 })
        #expect(state.cr3 == BootLayout.pml4Address)
        #expect(state.efer & ControlBits.eferLMA != 0)
        #expect(state.gdt == DescriptorTableRegister(base: 0x1000, limit: 31))
        // The GDT holds __BOOT_CS and __BOOT_DS where the selectors point.
        let gdt = try segment(p, at: 0x1000)
        #expect(decodeDescriptor(get64(gdt, 0x10), selector: 0x10) == state.cs)
        #expect(decodeDescriptor(get64(gdt, 0x18), selector: 0x18) == state.ds)
        // The kernel, zero page and command line are identity-mapped.
        for address in [p.entry, p.zeroPageAddress, p.commandLineAddress, p.kernelFootprint.upperBound - 1] {
            #expect(translate(address, cr3: state.cr3, memory: p.segments) == address)
        }
    }

    @Test func zeroPageFieldsAtTheirOffsets() throws {
        let p = try plan(initrd: initrd, reserved: [0x9_FC00..<0xA_0000], rsdp: 0xF_0000)
        let page = try segment(p, at: p.zeroPageAddress)
        #expect(page.count == 4096)
        #expect(get32(page, 0x202) == 0x5372_6448)           // header copied: HdrS
        #expect(get16(page, 0x206) == 0x020F)                // version
        #expect(page[0x1F1] == 4)                            // setup_sects
        #expect(page[0x210] == 0xFF)                         // type_of_loader
        #expect(page[0x211] == 0x81)                         // LOADED_HIGH | CAN_USE_HEAP
        #expect(get16(page, 0x224) == 0xDE00)                // heap_end_ptr
        #expect(get32(page, 0x228) == 0x2_0000)              // cmd_line_ptr
        #expect(get32(page, 0x0C8) == 0)                     // ext_cmd_line_ptr
        let initrdRange = try #require(p.initrd)
        #expect(get32(page, 0x218) == initrdRange.lowerBound) // ramdisk_image
        #expect(get32(page, 0x21C) == 0x10_0005)             // ramdisk_size
        #expect(get32(page, 0x0C0) == 0 && get32(page, 0x0C4) == 0)
        #expect(get64(page, 0x070) == 0xF_0000)              // acpi_rsdp_addr
        #expect(page[0x1E8] == 4)                            // e820_entries
        let e820 = (0..<5).map { i in
            [get64(page, 0x2D0 + i * 20), get64(page, 0x2D0 + i * 20 + 8), get32(page, 0x2D0 + i * 20 + 16)]
        }
        #expect(e820 == [
            [0, 0x9_FC00, 1],
            [0x9_FC00, 0x6_0400, 2],
            [0x10_0000, 63 * MiB, 1],
            [0xC000_0000, 0x4000_0000, 2],
            [0, 0, 0],
        ])
    }

    @Test func zeroPageSplitsAddressesAbove4GiB() throws {
        let zero = ZeroPage(setupHeader: try BzImage(parsing: BzImageBuilder().build()).setupHeaderBytes,
                            commandLineAddress: 0x1_0002_0000, initrd: 0x2_0000_1000..<0x2_0000_3000,
                            memoryMap: E820Map(memoryBytes: 64 * MiB))
        let page = try zero.bytes()
        #expect(get32(page, 0x228) == 0x2_0000 && get32(page, 0x0C8) == 1)
        #expect(get32(page, 0x218) == 0x1000 && get32(page, 0x0C0) == 2)
        #expect(get32(page, 0x21C) == 0x2000 && get32(page, 0x0C4) == 0)
    }

    @Test func tooManyMemoryMapEntriesAreRefused() {
        let reserved = (0..<70).map { i -> Range<UInt64> in
            let start = 0x200_0000 + UInt64(i) * 0x2000
            return start..<start + 0x1000
        }
        let zero = ZeroPage(setupHeader: [], commandLineAddress: 0, initrd: nil,
                            memoryMap: E820Map(memoryBytes: 64 * MiB, reserved: reserved))
        #expect(throws: LoaderError.linuxTooManyMemoryMapEntries(count: 144, maximum: 128)) { try zero.bytes() }
    }

    @Test func initrdGoesToTheTopOfRAM() throws {
        let p = try plan(initrd: initrd)
        let range = try #require(p.initrd)
        #expect(range.count == initrd.count)
        #expect(range.lowerBound % 4096 == 0)
        #expect(range.lowerBound == (64 * MiB - 0x10_0005) & ~0xFFF)
        #expect(try segment(p, at: range.lowerBound) == initrd)
    }

    @Test func initrdStaysUnderInitrdAddrMax() throws {
        var builder = BzImageBuilder()
        builder.initrdAddrMax = 0x37FF_FFFF  // the 896 MiB limit of older kernels
        let p = try plan(builder, initrd: initrd, memory: 2048 * MiB)
        let range = try #require(p.initrd)
        #expect(range.upperBound <= 0x3800_0000)
        #expect(range.lowerBound == (0x3800_0000 - 0x10_0005) & ~0xFFF)
        // With 3 GiB and the default limit (2 GiB - 1), the top of the allowed range.
        let q = try plan(initrd: initrd, memory: 3072 * MiB)
        #expect(q.initrd?.upperBound ?? 0 <= 0x8000_0000)
        #expect(q.initrd?.lowerBound == (0x8000_0000 - 0x10_0005) & ~0xFFF)
    }

    @Test func initrdSkipsReservedRanges() throws {
        let p = try plan(initrd: initrd, reserved: [64 * MiB - 0x1000..<64 * MiB])
        #expect(p.initrd?.upperBound ?? .max <= 64 * MiB - 0x1000)
    }

    // MARK: Refusals

    @Test func kernelThatDoesNotFitIsRefused() {
        // 16 MiB of RAM: pref_address 16 MiB + init_size 8 MiB cannot fit.
        #expect(planError(memory: 16 * MiB)
                == .linuxKernelDoesNotFit(start: 0x100_0000, end: 0x180_0000, ramLimit: 16 * MiB))
        #expect(planError(memory: 24 * MiB) == nil)
    }

    @Test func initrdLargerThanTheMemoryUnderItsLimitIsRefused() {
        let big = [UInt8](repeating: 0, count: Int(40 * MiB + 1))
        // 64 MiB of RAM, the kernel needs up to 24 MiB: 40 MiB are free above it.
        #expect(planError(initrd: big) == .linuxInitrdTooLarge(size: 40 * MiB + 1, available: 40 * MiB, limit: 64 * MiB))
        #expect(planError(initrd: Array(big.dropLast())) == nil)
        var builder = BzImageBuilder()
        builder.initrdAddrMax = 0x1FF_FFFF  // 32 MiB
        let nine = [UInt8](repeating: 0, count: Int(9 * MiB))
        guard case .linuxInitrdTooLarge(_, let available, let limit) = planError(builder, initrd: nine, memory: 1024 * MiB) else {
            Issue.record("an initrd above initrd_addr_max must be refused")
            return
        }
        #expect(available == 8 * MiB && limit == 32 * MiB)
    }

    @Test func commandLineLongerThanCmdlineSizeIsRefused() {
        var builder = BzImageBuilder()
        builder.cmdlineSize = 16
        #expect(planError(builder, commandLine: String(repeating: "x", count: 17))
                == .linuxCommandLineTooLong(length: 17, maximum: 16))
        #expect(planError(builder, commandLine: String(repeating: "x", count: 16)) == nil)
        #expect(planError(commandLine: "a\u{0}b") == .linuxCommandLineContainsNUL)
    }

    @Test func eachRefusalIsOneLineNamingTheReason() {
        var old = BzImageBuilder(); old.version = 0x0200
        var no64 = BzImageBuilder(); no64.xloadflags = 0
        var notLinux = BzImageBuilder(); notLinux.magic = 0
        let errors = [planError(old), planError(no64), planError(notLinux), planError(memory: 8 * MiB),
                      planError(initrd: [UInt8](repeating: 0, count: Int(64 * MiB))),
                      planError(commandLine: String(repeating: "y", count: 5000))]
        for error in errors {
            let text = error?.description ?? ""
            #expect(!text.isEmpty && !text.contains("\n"))
        }
        #expect(Set(errors.map { String(describing: $0) }).count == errors.count)
    }

    @Test func imageLoaderLoadsLinuxWithoutExtras() throws {
        let boot = try ImageLoader.load(BzImageBuilder().build(), mode: .linux, memorySize: 64 * MiB, vcpuCount: 2)
        #expect(boot.entry == 0x100_0200)
        #expect(boot.cpuState(vcpu: 1, of: 2).rsi == LinuxBootLayout.bootInfoAddress)
    }
}
