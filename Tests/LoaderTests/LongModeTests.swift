// LoaderTests: long-mode boots — control registers, segments, the GDT bytes
// and a real page-table walk over the produced page tables.
import KVMABI
import Testing
@testable import Loader

@Suite struct LongModeTests {
    let image: [UInt8] = [0xF4]  // hlt

    func boot(vcpus: Int = 1) throws -> BootImage {
        try ImageLoader.load(image, mode: .long, memorySize: 16 * MiB, vcpuCount: vcpus)
    }

    @Test func controlRegistersEnablePagedLongMode() throws {
        let s = try boot().cpuState(vcpu: 0, of: 1)
        #expect(s.cr0 == 0x8005_0033)
        let required = ControlBits.cr0PE | ControlBits.cr0PG | ControlBits.cr0WP | ControlBits.cr0NE | ControlBits.cr0ET
        #expect(s.cr0 & required == required)
        #expect(s.cr4 & ControlBits.cr4PAE != 0)
        #expect(s.efer & (ControlBits.eferLME | ControlBits.eferLMA) == 0x500)
        #expect(s.cr3 == 0x2000)
        #expect(s.cr4 == 0x620)
        #expect(s.efer == 0x500)
        #expect(s.rflags == 0x2)
        #expect(s.rip == 0x10_0000)
    }

    @Test func segmentRegistersAreFlat64Bit() throws {
        let s = try boot().cpuState(vcpu: 0, of: 1)
        #expect(s.cs == Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 0xB,
                                        present: true, dpl: 0, db: false, s: true, l: true, g: true))
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 0x3,
                                   present: true, dpl: 0, db: true, s: true, l: false, g: true)
        for segment in [s.ds, s.es, s.fs, s.gs, s.ss] { #expect(segment == data) }
        #expect(s.tr.type == 0xB && s.tr.present && !s.tr.s && !s.tr.unusable && s.tr.selector == 0)
        #expect(s.ldt.unusable && !s.ldt.present && s.ldt.type == 2)
        #expect(s.gdt == DescriptorTableRegister(base: 0x1000, limit: 23))
        #expect(s.idt == DescriptorTableRegister(base: 0, limit: 0))
    }

    @Test func stacksAreDistinctAndInsideTheStackRegion() throws {
        let n = BootLayout.maxVCPUs
        let b = try boot(vcpus: n)
        for i in 0..<n {
            let s = b.cpuState(vcpu: i, of: n)
            #expect(s.rsp == 0x8_0000 - UInt64(i) * 0x1000)
            #expect(s.rdi == UInt64(i) && s.rsi == UInt64(n))
            #expect(s.rsp - 0x1000 >= BootLayout.longModeStacksStart)
        }
    }

    @Test func segmentsAreBootStructuresThenImage() throws {
        let segments = try boot().segments
        #expect(segments.map(\.guestPhysicalAddress) == [0x1000, 0x2000, 0x10_0000])
        #expect(segments[0].endAddress == 0x2000)
        #expect(segments[1].endAddress == 0x8000)
        #expect(segments[2].bytes == image)
        #expect(segments == LongModeBootStructures.segments() + [MemorySegment(guestPhysicalAddress: 0x10_0000, bytes: image)])
    }

    @Test(arguments: [
        UInt64(0), 0x7C00, 0xFFF, 0x1000, 0x10_0000, 0x1F_FFFF, 0x20_0000, 0x12_3456, 0x3FFF_FFFF,
        0x4000_0000, 0x7FFF_FFF8, 0x8000_1234, 0xBFFF_FFFF, 0xC000_0000, 0xFEE0_0000, 0xFFFF_FFFF,
    ])
    func pageTablesIdentityMapTheFirst4GiB(address: UInt64) throws {
        let b = try boot()
        let cr3 = b.cpuState(vcpu: 0, of: 1).cr3
        #expect(translate(address, cr3: cr3, memory: b.segments) == address)
    }

    @Test func nothingAbove4GiBIsMapped() throws {
        let b = try boot()
        for address: UInt64 in [1 << 32, (1 << 32) + 0x1000, 1 << 39, 0x7FFF_FFFF_F000] {
            #expect(translate(address, cr3: BootLayout.pml4Address, memory: b.segments) == nil)
        }
    }

    @Test func everyLargePageIsIdentityMapped() throws {
        let segments = LongModeBootStructures.segments()
        var page: UInt64 = 0
        while page < BootLayout.identityMapLimit {
            guard translate(page + 0x1234, cr3: BootLayout.pml4Address, memory: segments) == page + 0x1234 else {
                Issue.record("page \(page) is not identity-mapped")
                return
            }
            page += 2 * MiB
        }
    }

    @Test func gdtBytesDecodeToTheLoadedSegments() throws {
        let b = try boot()
        let s = b.cpuState(vcpu: 0, of: 1)
        #expect(read64(b.segments, s.gdt.base) == 0)  // null descriptor
        let code = try #require(read64(b.segments, s.gdt.base + UInt64(s.cs.selector)))
        let data = try #require(read64(b.segments, s.gdt.base + UInt64(s.ds.selector)))
        #expect(decodeDescriptor(code, selector: s.cs.selector) == s.cs)
        #expect(decodeDescriptor(data, selector: s.ds.selector) == s.ds)
        // The GDT limit covers exactly the three descriptors.
        #expect(Int(s.gdt.limit) + 1 == 3 * 8)
    }

    @Test func twoMiBIsEnoughForASmallImage() throws {
        let b = try ImageLoader.load(image, mode: .long, memorySize: 2 * MiB, vcpuCount: 1)
        #expect(b.entry == 0x10_0000)
    }

    @Test func imageFillingMemoryExactlyIsAccepted() throws {
        let b = try ImageLoader.load([UInt8](repeating: 0, count: Int(1 * MiB)), mode: .long,
                                     memorySize: 2 * MiB, vcpuCount: 1)
        #expect(b.segments.last?.endAddress == 2 * MiB)
    }
}
