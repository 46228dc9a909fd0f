// LoaderTests: guests with RAM above 3 GiB — the rest of RAM continues at
// 4 GiB — as each boot protocol tells the kernel: the bzImage zero page's
// e820 table, PVH's hvm_memmap_table, the multiboot memory map and
// mem_upper (RAM from 1 MiB to the hole only, as QEMU), every entry exact
// for 4 GiB and 6 GiB; and the RAM ranges a machine maps.
import Testing
@testable import Loader

@Suite struct HighMemoryMapTests {
    let GiB: UInt64 = 1 << 30
    let fourGiB: UInt64 = 1 << 32

    /// The e820 entries as [address, size, type], as the zero page and hvm_start_info hold them.
    func zeroPageE820(memory: UInt64) throws -> [[UInt64]] {
        let plan = try LinuxLoader.plan(image: BzImageBuilder().build(), initrd: [UInt8](repeating: 1, count: 0x2000),
                                        commandLine: "console=ttyS0", memoryBytes: memory,
                                        reserved: [0x9_FC00..<0xA_0000], acpiRSDPAddress: 0xF_0000)
        let page = try #require(plan.segments.first { $0.guestPhysicalAddress == plan.zeroPageAddress }).bytes
        let count = Int(page[0x1E8])
        // The initrd stays below initrd_addr_max and in RAM below the hole.
        let initrd = try #require(plan.initrd)
        #expect(initrd.upperBound <= 0x8000_0000)
        return (0..<count).map { i in
            [get64(page, 0x2D0 + i * 20), get64(page, 0x2D0 + i * 20 + 8), get32(page, 0x2D0 + i * 20 + 16)]
        }
    }

    func pvhMemoryMap(memory: UInt64) throws -> [[UInt64]] {
        let plan = try PVHLoader.plan(image: ELFBuilder.pvhSample().build(), initrd: nil, commandLine: "",
                                      memoryBytes: memory, reserved: [0x9_FC00..<0xA_0000], acpiRSDPAddress: 0xF_0000)
        let page = try #require(plan.segments.first { $0.guestPhysicalAddress == plan.startInfoAddress }).bytes
        let address = Int(get64(page, 0x28) - plan.startInfoAddress), count = Int(get32(page, 0x30))
        return (0..<count).map { i in
            [get64(page, address + i * 24), get64(page, address + i * 24 + 8), get32(page, address + i * 24 + 16)]
        }
    }

    func expectedMap(highRAM: UInt64) -> [[UInt64]] {
        [
            [0, 0x9_FC00, 1],
            [0x9_FC00, 0x6_0400, 2],
            [0x10_0000, 0xC000_0000 - 0x10_0000, 1],
            [0xC000_0000, 0x4000_0000, 2],
            [fourGiB, highRAM, 1],
        ]
    }

    @Test func zeroPageE820WithFourAndSixGiB() throws {
        #expect(try zeroPageE820(memory: 4 * GiB) == expectedMap(highRAM: 1 * GiB))
        #expect(try zeroPageE820(memory: 6 * GiB) == expectedMap(highRAM: 3 * GiB))
        // Up to 3 GiB nothing is above 4 GiB.
        #expect(try zeroPageE820(memory: 3 * GiB) == Array(expectedMap(highRAM: 0).prefix(4)))
    }

    @Test func pvhMemoryMapWithFourAndSixGiB() throws {
        #expect(try pvhMemoryMap(memory: 4 * GiB) == expectedMap(highRAM: 1 * GiB))
        #expect(try pvhMemoryMap(memory: 6 * GiB) == expectedMap(highRAM: 3 * GiB))
    }

    @Test func multibootMemoryMapAndMemUpperWithFourAndSixGiB() throws {
        for (memory, high) in [(4 * GiB, 1 * GiB), (6 * GiB, 3 * GiB)] {
            let boot = try MultibootLoader.load(AOutKernelBuilder().build(), kernelPath: "k", append: "", modules: [],
                                                memorySize: memory, vcpuCount: 1)
            let info = try #require(DecodedInfo(boot.segments, at: boot.cpuState(vcpu: 0, of: 1).rbx))
            #expect(info.memoryMapEntrySizes == [20, 20, 20, 20, 20])
            #expect(info.memoryMap == [
                MultibootMemoryRegion(base: 0, length: 0x9_FC00, type: 1),
                MultibootMemoryRegion(base: 0x9_FC00, length: 0x400, type: 2),
                MultibootMemoryRegion(base: 0xF_0000, length: 0x1_0000, type: 2),
                MultibootMemoryRegion(base: 0x10_0000, length: 0xC000_0000 - 0x10_0000, type: 1),
                MultibootMemoryRegion(base: fourGiB, length: high, type: 1),
            ])
            // QEMU: below_4g_mem_size / 1024 - 1024, whatever lies above 4 GiB.
            #expect(info.memUpper == 3 * 1024 * 1024 - 1024)
            #expect(info.bootLoaderName == "Deflect")
            // The area stays in RAM below the hole.
            #expect(boot.segments.allSatisfy { $0.endAddress <= 0xC000_0000 })
        }
    }

    @Test func ramRangesAndTheMemoryFileEnd() {
        let layout = PlatformMemoryLayout.pc
        #expect(layout.ramRanges(memoryBytes: 64 * MiB) == [0..<64 * MiB])
        #expect(layout.ramRanges(memoryBytes: 3 * GiB) == [0..<3 * GiB])
        #expect(layout.ramRanges(memoryBytes: 4608 * MiB) == [0..<3 * GiB, fourGiB..<fourGiB + 1536 * MiB])
        #expect(layout.ramEnd(memoryBytes: 3 * GiB) == 3 * GiB)
        #expect(layout.ramEnd(memoryBytes: 6 * GiB) == fourGiB + 3 * GiB)
    }

    @Test func theAddressWidthLimitsRAM() {
        let layout = PlatformMemoryLayout.pc
        // 36 bits: 64 GiB of addresses, the 1 GiB hole is not RAM.
        #expect(layout.maximumMemoryMiB(physicalAddressBits: 36) == 63 * 1024)
        #expect(layout.maximumMemoryMiB(physicalAddressBits: 48) == (1 << 28) - 1024)
        #expect(layout.maximumMemoryMiB(physicalAddressBits: 32) == 3 * 1024)
        #expect(layout.maximumMemoryMiB(physicalAddressBits: 31) == 2 * 1024)
        // The largest allowed size ends exactly at the limit.
        let most = UInt64(layout.maximumMemoryMiB(physicalAddressBits: 36)) << 20
        #expect(layout.ramEnd(memoryBytes: most) == 1 << 36)
    }

    @Test func flatImagesStayBelowTheHole() throws {
        // A long-mode image and its boot structures in a 4 GiB guest: all below 3 GiB.
        let boot = try ImageLoader.load([0x90, 0xF4], mode: .long, memorySize: 4 * GiB, vcpuCount: 1)
        #expect(boot.segments.allSatisfy { $0.endAddress <= 0xC000_0000 })
    }
}
