// LoaderTests: PVH — the XEN_ELFNOTE_PHYS32_ENTRY note found among other
// notes of a synthetic ELF, hvm_start_info and its tables byte for byte, the
// 32-bit entry state, and the refusals.
import Testing
@testable import Loader

/// One ELF note: namesz, descsz, type, the name with its NUL and the
/// descriptor, each padded to 4 bytes.
func elfNote(name: String, type: UInt32, descriptor: [UInt8]) -> [UInt8] {
    let nameBytes = Array(name.utf8) + [0]
    var out = [UInt8](repeating: 0, count: 12)
    put32(&out, 0, UInt32(nameBytes.count))
    put32(&out, 4, UInt32(descriptor.count))
    put32(&out, 8, type)
    out += nameBytes + [UInt8](repeating: 0, count: (4 - nameBytes.count % 4) % 4)
    out += descriptor + [UInt8](repeating: 0, count: (4 - descriptor.count % 4) % 4)
    return out
}

func le(_ value: UInt64, _ width: Int) -> [UInt8] {
    (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

extension ELFBuilder {
    /// The sample program plus a PT_NOTE segment: a GNU build-id note, then
    /// the PVH entry note (8-byte descriptor, as Linux writes it) = `entry`.
    static func pvhSample(entry: [UInt8] = le(0x10_0000, 8), noteType: UInt32 = 18, noteName: String = "Xen") -> ELFBuilder {
        var b = sample()
        let notes = elfNote(name: "GNU", type: 3, descriptor: [1, 2, 3, 4, 5])
            + elfNote(name: noteName, type: noteType, descriptor: entry)
        b.segments.append(Segment(type: 4, flags: 4, physicalAddress: 0, data: notes))
        return b
    }
}

@Suite struct PVHTests {
    let initrd = [UInt8](repeating: 0x5A, count: 0x2_0001)

    func pvhError(_ image: [UInt8]) -> LoaderError? {
        do {
            _ = try PVHLoader.plan(image: image, memoryBytes: 64 * MiB)
            return nil
        } catch {
            return error
        }
    }

    @Test func findsTheEntryNoteAmongOthers() throws {
        let image = ELFBuilder.pvhSample().build()
        let elf = try ELF64Image(parsing: image)
        #expect(try PVHNote.entry(in: elf, image: image) == 0x10_0000)
        // A 4-byte descriptor is read too.
        let short = ELFBuilder.pvhSample(entry: le(0x10_0001, 4)).build()
        #expect(try PVHNote.entry(in: ELF64Image(parsing: short), image: short) == 0x10_0001)
        #expect(ImageLoader.detectMode(image) == .pvh)
        #expect(ImageLoader.detectMode(ELFBuilder.sample().build()) == .elf)
    }

    @Test func otherNotesAreNotTheEntry() throws {
        for builder in [ELFBuilder.pvhSample(noteType: 17), ELFBuilder.pvhSample(noteName: "Xe"),
                        ELFBuilder.pvhSample(noteName: "Linux"), ELFBuilder.sample()] {
            let image = builder.build()
            #expect(try PVHNote.entry(in: ELF64Image(parsing: image), image: image) == nil)
            #expect(pvhError(image) == .pvhNoEntryNote)
        }
        #expect(loadError(ELFBuilder.sample().build(), .pvh) == .pvhNoEntryNote)
    }

    @Test func unusableEntryNotesAreRefused() {
        #expect(pvhError(ELFBuilder.pvhSample(entry: [0, 0]).build())
                == .pvhBadEntryNote(reason: "descriptor of 2 bytes, expected 4 or 8"))
        guard case .pvhBadEntryNote = pvhError(ELFBuilder.pvhSample(entry: le(1 << 32, 8)).build()) else {
            Issue.record("an entry above 4 GiB must be refused")
            return
        }
        // An entry outside the executable segment: the ELF rule applies.
        #expect(pvhError(ELFBuilder.pvhSample(entry: le(0x30_0000, 8)).build()) == .elfEntryNotExecutable(entry: 0x30_0000))
    }

    @Test func startInfoBytes() throws {
        let plan = try PVHLoader.plan(image: ELFBuilder.pvhSample().build(), initrd: initrd, commandLine: "console=ttyS0",
                                      memoryBytes: 64 * MiB, reserved: [0x9_FC00..<0xA_0000], acpiRSDPAddress: 0xF_0000)
        #expect(plan.startInfoAddress == 0x8000)
        let page = try #require(plan.segments.first { $0.guestPhysicalAddress == 0x8000 }).bytes
        #expect(get32(page, 0x00) == 0x336E_C578)  // magic
        #expect(get32(page, 0x04) == 1)            // version
        #expect(get32(page, 0x08) == 0)            // flags
        #expect(get32(page, 0x0C) == 1)            // nr_modules
        #expect(get64(page, 0x10) == 0x8040)       // modlist_paddr
        #expect(get64(page, 0x18) == 0x2_0000)     // cmdline_paddr
        #expect(get64(page, 0x20) == 0xF_0000)     // rsdp_paddr
        #expect(get64(page, 0x28) == 0x8080)       // memmap_paddr
        #expect(get32(page, 0x30) == 4)            // memmap_entries
        #expect(get32(page, 0x34) == 0)            // reserved
        let range = try #require(plan.initrd)
        #expect(range.lowerBound == (64 * MiB - 0x2_0001) & ~0xFFF)
        #expect([get64(page, 0x40), get64(page, 0x48), get64(page, 0x50), get64(page, 0x58)]
                == [range.lowerBound, 0x2_0001, 0, 0])
        let map = (0..<4).map { i in
            [get64(page, 0x80 + i * 24), get64(page, 0x88 + i * 24), get32(page, 0x90 + i * 24), get32(page, 0x94 + i * 24)]
        }
        #expect(map == [[0, 0x9_FC00, 1, 0], [0x9_FC00, 0x6_0400, 2, 0], [0x10_0000, 63 * MiB, 1, 0],
                        [0xC000_0000, 0x4000_0000, 2, 0]])
        let cmdline = try #require(plan.segments.first { $0.guestPhysicalAddress == 0x2_0000 }).bytes
        #expect(cmdline == Array("console=ttyS0".utf8) + [0])
    }

    @Test func withoutAnInitrdThereAreNoModules() throws {
        let plan = try PVHLoader.plan(image: ELFBuilder.pvhSample().build(), memoryBytes: 64 * MiB)
        let page = try #require(plan.segments.first { $0.guestPhysicalAddress == 0x8000 }).bytes
        #expect(get32(page, 0x0C) == 0 && get64(page, 0x10) == 0)
        #expect(plan.initrd == nil)
    }

    @Test func entryStateIs32BitProtectedModeWithoutPaging() throws {
        let plan = try PVHLoader.plan(image: ELFBuilder.pvhSample().build(), memoryBytes: 64 * MiB)
        let boot = plan.bootImage
        #expect(boot.mode == .pvh && boot.applicationProcessorsWaitForSIPI)
        let state = try #require(boot.bootstrapProcessorState)
        #expect(state.rip == 0x10_0000)
        #expect(state.rbx == 0x8000)
        #expect(state.cr0 & ControlBits.cr0PE != 0 && state.cr0 & ControlBits.cr0PG == 0)
        #expect(state.efer == 0 && state.cr4 == 0)
        #expect(state.rflags == 0x2)
        #expect(state.cs.db && !state.cs.l && state.cs.base == 0 && state.cs.limit == 0xFFFF_FFFF)
        #expect([state.ds, state.es, state.ss].allSatisfy { $0.db && $0.limit == 0xFFFF_FFFF && $0.base == 0 })
        let gdt = try #require(plan.segments.first { $0.guestPhysicalAddress == 0x1000 }).bytes
        #expect(decodeDescriptor(get64(gdt, 8), selector: 8) == state.cs)
        // The kernel's PT_LOAD segments are where their p_paddr says.
        #expect(plan.segments.contains { $0.guestPhysicalAddress == 0x10_0000 && $0.bytes == [0x90, 0x90, 0xF4] })
    }

    @Test(.enabled(if: DebianGuest.vmlinux != nil, Comment(rawValue: DebianGuest.missingVmlinux)))
    func readsDebiansVmlinux() throws {
        let image = try #require(DebianGuest.vmlinux)
        let elf = try ELF64Image(parsing: image)
        let entry = try #require(try PVHNote.entry(in: elf, image: image))
        // pvh_start_xen - __START_KERNEL_map: a physical address in the kernel's text, above 16 MiB.
        #expect(entry >= 0x100_0000)
        #expect(ImageLoader.detectMode(image) == .pvh)
        let plan = try PVHLoader.plan(image: image, initrd: [UInt8](repeating: 1, count: 1 << 20),
                                      commandLine: "console=ttyS0", memoryBytes: 512 * MiB)
        #expect(plan.cpuState.rip == UInt64(entry) && plan.cpuState.rbx == plan.startInfoAddress)
        #expect(plan.initrd.map { $0.upperBound <= 512 * MiB && $0.lowerBound >= 0x100_0000 } == true)
    }

    @Test func imageLoaderLoadsPVH() throws {
        let boot = try ImageLoader.load(ELFBuilder.pvhSample().build(), mode: .pvh, memorySize: 64 * MiB, vcpuCount: 1)
        #expect(boot.entry == 0x10_0000 && boot.mode == .pvh)
    }
}
