// LoaderTests: real-mode flat binaries — placement at 0x7C00, the reset-like
// segment state, and the per-vCPU stacks and RDI/RSI convention.
import KVMABI
import Testing
@testable import Loader

@Suite struct RealModeTests {
    let image: [UInt8] = [0xFA, 0xF4, 0xEB, 0xFD]  // cli; hlt; jmp $-1

    @Test func imageIsPlacedAt7C00AndEnteredThere() throws {
        let boot = try ImageLoader.load(image, mode: .real, memorySize: 1 * MiB, vcpuCount: 1)
        #expect(boot.mode == .real)
        #expect(boot.entry == 0x7C00)
        #expect(boot.segments == [MemorySegment(guestPhysicalAddress: 0x7C00, bytes: image)])
    }

    @Test func cpuStateFollowsTheFlatBootConvention() throws {
        let boot = try ImageLoader.load(image, mode: .real, memorySize: 1 * MiB, vcpuCount: 4)
        for i in 0..<4 {
            let s = boot.cpuState(vcpu: i, of: 4)
            #expect(s.rip == 0x7C00)
            #expect(s.rsp == 0x7000 - UInt64(i) * 0x100)
            #expect(s.rdi == UInt64(i))
            #expect(s.rsi == 4)
            #expect(s.rflags == 0x2)
        }
    }

    @Test func segmentsAndControlRegistersAreRealMode() throws {
        let s = try ImageLoader.load(image, mode: .real, memorySize: 1 * MiB, vcpuCount: 1).cpuState(vcpu: 0, of: 1)
        #expect(s.cr0 == 0x10)
        #expect(s.cr0 & 1 == 0)            // PE clear
        #expect(s.cr0 & (1 << 31) == 0)    // PG clear
        #expect(s.cr3 == 0 && s.cr4 == 0 && s.efer == 0)
        let code = Segment(base: 0, limit: 0xFFFF, selector: 0, type: 0xB, present: true, s: true)
        let data = Segment(base: 0, limit: 0xFFFF, selector: 0, type: 0x3, present: true, s: true)
        #expect(s.cs == code)
        for segment in [s.ds, s.es, s.fs, s.gs, s.ss] { #expect(segment == data) }
        #expect(!s.cs.db && !s.cs.l && !s.cs.g)
        #expect(s.tr.present && !s.tr.unusable)
        #expect(s.ldt.present && !s.ldt.unusable && s.ldt.type == 2)
    }

    @Test func lastVCPUStackStaysBelowTheImage() throws {
        let boot = try ImageLoader.load(image, mode: .real, memorySize: 1 * MiB, vcpuCount: BootLayout.maxVCPUs)
        let stacks = (0..<BootLayout.maxVCPUs).map { boot.cpuState(vcpu: $0, of: BootLayout.maxVCPUs).rsp }
        #expect(Set(stacks).count == BootLayout.maxVCPUs)
        #expect(stacks.last == 0x3100)
        #expect(stacks.allSatisfy { $0 <= BootLayout.realModeLoadAddress })
    }

    @Test func imageEndingExactlyAt640KiBIsAccepted() throws {
        let size = Int(BootLayout.conventionalMemoryEnd - BootLayout.realModeLoadAddress)
        let boot = try ImageLoader.load([UInt8](repeating: 0x90, count: size), mode: .real,
                                        memorySize: 1 * MiB, vcpuCount: 1)
        #expect(boot.segments.first?.endAddress == 0xA_0000)
    }
}
