// LoaderTests: random mutations of valid multiboot kernels (address-field
// and ELF32 images) must each load or throw a LoaderError — never trap —
// and whatever loads must keep the layout's promises. Seeded: reproducible.
import SeededRandom
import Testing
@testable import Loader

@Suite struct MultibootFuzzTests {
    /// Multiboot header fields of the flat image (header at 0x40).
    static let aoutOffsets: [Int] = (0..<8).map { 0x40 + 4 * $0 }
    /// ELF32 header fields (e_entry, e_phoff, e_phentsize/e_phnum) and each
    /// program header's offset/vaddr/paddr/filesz/memsz/flags, plus the multiboot flags.
    static let elfOffsets: [Int] = [24, 28, 42, 44] + (0..<3).flatMap { i in
        [4, 8, 12, 16, 20, 24].map { 52 + i * 32 + $0 }
    } + [148 + 4]
    static let values: [UInt32] = [0, 1, 3, 0x1_0000, 0x1_0003, 0x8000, 0x9000, 0x9510, 0x9_FC00, 0xF_FFFF,
                                   0x10_0000, 0x10_0040, 0x10_0200, 0x40_0000, 0xFFFF_FFFF, 0xFFFF_F000,
                                   0x7FFF_FFFF, 0x8000_0000, 0xE4524FFE]

    @Test func twoThousandMutationsNeverTrap() {
        let seeds = [AOutKernelBuilder().build(), ELF32Builder.sample().build()]
        let modules = [MultibootModule(size: 3, commandLine: "m0"), MultibootModule(size: 0x1234, commandLine: "m1")]
        let memory = 4 * MiB
        var rng = SeededGenerator(state: 0x4D42_0001)
        var loaded = 0, rejected = 0
        for round in 0..<2_000 {
            let kind = round % 2
            var image = seeds[kind]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                mutate(&image, offsets: kind == 0 ? Self.aoutOffsets : Self.elfOffsets, using: &rng)
            }
            do {
                let boot = try MultibootLoader.load(image, kernelPath: "fuzz", append: "a b", modules: modules,
                                                    memorySize: memory, vcpuCount: 2)
                loaded += 1
                // Wherever the kernel landed (0x9000 included), the area and modules keep clear of it.
                expectSoundLayout(boot, memory: memory, commandLine: "fuzz a b", modules: modules)
                let ranges = boot.segments.map { ($0.guestPhysicalAddress, $0.endAddress) }
                #expect(boot.segments.allSatisfy { $0.endAddress <= memory })
                #expect(throws: Never.self) { try MultibootLoader.checkDisjoint(ranges) }
                #expect(!boot.segments.contains {
                    $0.guestPhysicalAddress < BootLayout.multibootReservedEnd
                        && BootLayout.multibootReservedStart < $0.endAddress
                })
                let state = boot.cpuState(vcpu: 1, of: 2)
                #expect(state.rax == MultibootConstants.bootloaderMagic)
                #expect(boot.segments.contains { $0.guestPhysicalAddress <= state.rip && state.rip < $0.endAddress })
            } catch {
                rejected += 1
                #expect(!error.description.isEmpty && !error.description.contains("\n"))
            }
        }
        #expect(loaded + rejected == 2_000)
        #expect(loaded > 0 && rejected > 0)
    }

    private func mutate(_ image: inout [UInt8], offsets: [Int], using rng: inout SeededGenerator) {
        switch Int.random(in: 0..<5, using: &rng) {
        case 0:  // flip one bit anywhere
            guard !image.isEmpty else { return }
            let i = Int.random(in: 0..<image.count, using: &rng)
            image[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
        case 1:  // random byte anywhere
            guard !image.isEmpty else { return }
            image[Int.random(in: 0..<image.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        case 2:  // boundary value into a header field
            let offset = offsets.randomElement(using: &rng) ?? 0
            guard offset + 4 <= image.count else { return }
            put32(&image, offset, Self.values.randomElement(using: &rng) ?? 0)
        case 3:  // truncate
            image.removeLast(Int.random(in: 0...image.count, using: &rng))
        default:  // random value into a header field, then repair the multiboot checksum half the time
            let offset = offsets.randomElement(using: &rng) ?? 0
            guard offset + 4 <= image.count else { return }
            put32(&image, offset, UInt32.random(in: 0...UInt32.max, using: &rng))
            if Bool.random(using: &rng) { repairChecksum(&image) }
        }
    }

    /// Recomputes the checksum of the first multiboot magic so mutated flags get past it.
    private func repairChecksum(_ image: inout [UInt8]) {
        for offset in stride(from: 0, to: image.count - 11, by: 4) {
            let magic = (0..<4).reduce(UInt32(0)) { $0 | UInt32(image[offset + $1]) << (8 * UInt32($1)) }
            guard magic == MultibootConstants.headerMagic else { continue }
            let flags = (0..<4).reduce(UInt32(0)) { $0 | UInt32(image[offset + 4 + $1]) << (8 * UInt32($1)) }
            put32(&image, offset + 8, 0 &- magic &- flags)
            return
        }
    }
}
