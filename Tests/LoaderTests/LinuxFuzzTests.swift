// LoaderTests: seeded mutations of bzImages (synthetic, and Debian's real
// one when the test guest is built) and of a PVH ELF must each plan or throw
// a LoaderError — never trap, so never read outside the file — and whatever
// plans must keep its promises (segments in RAM, none overlapping).
import SeededRandom
import Testing
@testable import Loader

@Suite struct LinuxFuzzTests {
    /// Setup-header fields: setup_sects, the header length byte, HdrS,
    /// version, loadflags, initrd_addr_max, kernel_alignment,
    /// relocatable_kernel, xloadflags, cmdline_size, pref_address, init_size.
    static let bzOffsets = [0x1F1, 0x201, 0x202, 0x206, 0x211, 0x22C, 0x230, 0x234, 0x236, 0x238, 0x258, 0x25C, 0x260]
    /// ELF header and program-header fields (as FuzzTests), plus the PT_NOTE's
    /// contents: namesz, descsz, type and descriptor of both notes.
    static let pvhOffsets = [24, 32, 54, 56] + (0..<4).flatMap { i in [0, 8, 24, 32, 40].map { 64 + i * 56 + $0 } }
    static let values: [UInt64] = [0, 1, 3, 0xFF, 0x20C, 0x20B, 0x1000, 0x9_F000, 0x10_0000, 0x100_0000,
                                   0x20_0000, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 32, .max, .max - 0xFFF, 1 << 63]

    @Test func twoThousandBzImageMutationsNeverTrap() {
        let counts = fuzz(BzImageBuilder().build(), offsets: Self.bzOffsets, seed: 0x4C49_4E58)
        #expect(counts.planned > 0 && counts.refused > 0)
    }

    @Test(.enabled(if: DebianGuest.bzImage != nil, Comment(rawValue: DebianGuest.missingBzImage)))
    func twoThousandMutationsOfDebiansBzImageNeverTrap() throws {
        // The setup code and header (where every read happens) and 64 KiB of
        // the kernel: copying the whole image 2,000 times would only be slow.
        let image = try #require(DebianGuest.bzImage)
        let header = try BzImage(parsing: image)
        let counts = fuzz(Array(image.prefix(header.kernelOffset + 0x1_0000)), offsets: Self.bzOffsets, seed: 0xDEB1A4)
        #expect(counts.planned > 0 && counts.refused > 0)
    }

    @Test func twoThousandPVHMutationsNeverTrap() {
        let valid = ELFBuilder.pvhSample().build()
        var rng = SeededGenerator(state: 0x50_5648)
        var planned = 0, refused = 0
        for _ in 0..<2_000 {
            var image = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                mutate(&image, offsets: Self.pvhOffsets + Array(valid.count - 48..<valid.count), using: &rng)
            }
            do {
                let plan = try PVHLoader.plan(image: image, initrd: [1, 2, 3], commandLine: "x", memoryBytes: 64 * MiB)
                planned += 1
                expectSound(plan.segments, map: plan.memoryMap)
            } catch {
                refused += 1
                #expect(!error.description.isEmpty)
            }
        }
        #expect(planned > 0 && refused > 0)
    }

    @Test(.enabled(if: DebianGuest.vmlinux != nil, Comment(rawValue: DebianGuest.missingVmlinux)))
    func twoThousandMutationsOfDebiansVmlinuxHeadersNeverTrap() throws {
        // Edited in place and restored (no copy of the whole kernel per round):
        // the ELF header, the program headers and the PT_NOTE segments.
        var image = try #require(DebianGuest.vmlinux)
        let elf = try ELF64Image(parsing: image)
        let notes = elf.programHeaders.filter { $0.type == PVHConstants.programTypeNote }
        let headerEnd = Int(elf.programHeaderOffset) + Int(elf.programHeaderCount) * Int(elf.programHeaderEntrySize)
        let targets = Array(0..<headerEnd) + notes.flatMap { Int($0.offset)..<Int($0.offset + $0.fileSize) }
        var rng = SeededGenerator(state: 0x766D_6C78)
        var found = 0, refused = 0
        for _ in 0..<2_000 {
            var saved: [(Int, UInt8)] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = targets.randomElement(using: &rng) ?? 0
                saved.append((at, image[at]))
                image[at] = Bool.random(using: &rng) ? UInt8.random(in: 0...255, using: &rng)
                    : image[at] ^ 1 << UInt8.random(in: 0..<8, using: &rng)
            }
            do {
                let mutated = try ELF64Image(parsing: image)
                if try PVHNote.entry(in: mutated, image: image) != nil { found += 1 }
            } catch {
                refused += 1
            }
            for (at, byte) in saved.reversed() { image[at] = byte }
        }
        #expect(found > 0 && refused > 0)
    }

    private func fuzz(_ valid: [UInt8], offsets: [Int], seed: UInt64) -> (planned: Int, refused: Int) {
        var rng = SeededGenerator(state: seed)
        var planned = 0, refused = 0
        for round in 0..<2_000 {
            var image = valid
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                mutate(&image, offsets: offsets, using: &rng)
            }
            do {
                let plan = try LinuxLoader.plan(image: image, initrd: round % 2 == 0 ? [7, 7, 7] : nil,
                                                commandLine: "console=ttyS0", memoryBytes: 64 * MiB)
                planned += 1
                expectSound(plan.segments, map: plan.memoryMap)
                #expect(plan.entry == plan.loadAddress + 0x200)
            } catch {
                refused += 1
                #expect(!error.description.isEmpty && !error.description.contains("\n"))
            }
        }
        return (planned, refused)
    }

    private func expectSound(_ segments: [MemorySegment], map: E820Map) {
        let sorted = segments.sorted { $0.guestPhysicalAddress < $1.guestPhysicalAddress }
        #expect(zip(sorted, sorted.dropFirst()).allSatisfy { $0.endAddress <= $1.guestPhysicalAddress })
        #expect(segments.allSatisfy { map.isRAM($0.guestPhysicalAddress, $0.endAddress) })
    }

    private func mutate(_ image: inout [UInt8], offsets: [Int], using rng: inout SeededGenerator) {
        guard !image.isEmpty else { return }
        switch Int.random(in: 0..<5, using: &rng) {
        case 0:  // flip one bit in the first 4 KiB (header, setup, ELF tables)
            let i = Int.random(in: 0..<min(image.count, 4096), using: &rng)
            image[i] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
        case 1:  // a random byte into a field
            let at = offsets.randomElement(using: &rng) ?? 0
            if at < image.count { image[at] = UInt8.random(in: 0...255, using: &rng) }
        case 2:  // a boundary value into a field, as wide as fits
            let at = offsets.randomElement(using: &rng) ?? 0
            let value = Self.values.randomElement(using: &rng) ?? 0
            for i in 0..<8 where at + i < image.count { image[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        case 3:  // truncate
            image.removeLast(Int.random(in: 0...image.count, using: &rng))
        default:  // a random 16-bit value into a field
            let at = offsets.randomElement(using: &rng) ?? 0
            if at + 2 <= image.count { put16(&image, at, UInt16.random(in: 0...0xFFFF, using: &rng)) }
        }
    }
}
