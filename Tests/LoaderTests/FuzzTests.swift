// LoaderTests: random mutations of a valid ELF image must each load or throw
// a LoaderError — never trap. Seeded, so any failure is reproducible.
import SeededRandom
import Testing
@testable import Loader

@Suite struct FuzzTests {
    /// Fields worth hitting with boundary values: e_phoff, e_phentsize,
    /// e_phnum, e_entry, and each program header's offset/paddr/filesz/memsz.
    static let interestingOffsets: [Int] = [24, 32, 54, 56] + (0..<3).flatMap { i in
        [0, 4, 8, 24, 32, 40].map { 64 + i * 56 + $0 }
    }
    static let interestingValues: [UInt64] = [0, 1, 55, 56, 0x7FFF, 0x8000, 0x4_0000, 0x10_0000,
                                              .max, .max - 10, 1 << 63, 1 << 32, 0xFFFF]

    @Test func twoThousandMutationsNeverTrap() {
        let valid = ELFBuilder.sample().build()
        var rng = SeededGenerator(state: 0xDEF1EC7)
        var loaded = 0, rejected = 0
        for _ in 0..<2_000 {
            var image = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                mutate(&image, using: &rng)
            }
            do {
                let boot = try ImageLoader.load(image, mode: .elf, memorySize: 4 * MiB, vcpuCount: 2)
                loaded += 1
                // Whatever loads must respect the layout's promises.
                #expect(boot.segments.allSatisfy { $0.endAddress <= 4 * MiB })
                _ = boot.cpuState(vcpu: 1, of: 2)
            } catch {
                rejected += 1
                #expect(!error.description.isEmpty)
            }
        }
        #expect(loaded + rejected == 2_000)
        #expect(loaded > 0 && rejected > 0)
    }

    private func mutate(_ image: inout [UInt8], using rng: inout SeededGenerator) {
        switch Int.random(in: 0..<5, using: &rng) {
        case 0:  // flip one bit anywhere
            guard !image.isEmpty else { return }
            let i = Int.random(in: 0..<image.count, using: &rng)
            image[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
        case 1:  // random byte anywhere
            guard !image.isEmpty else { return }
            image[Int.random(in: 0..<image.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        case 2:  // boundary value into a header field
            let offset = Self.interestingOffsets.randomElement(using: &rng) ?? 0
            guard offset + 8 <= image.count else { return }
            let value = Self.interestingValues.randomElement(using: &rng) ?? 0
            put64(&image, offset, value)
        case 3:  // truncate
            image.removeLast(Int.random(in: 0...image.count, using: &rng))
        default:  // random 16-bit value into a header field
            let offset = Self.interestingOffsets.randomElement(using: &rng) ?? 0
            guard offset + 2 <= image.count else { return }
            put16(&image, offset, UInt16.random(in: 0...0xFFFF, using: &rng))
        }
    }
}
