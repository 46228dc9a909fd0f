// LoaderTests: the platform memory map for small, large and above-4-GiB
// guests, and reserved ranges carved out of RAM.
import Testing
@testable import Loader

@Suite struct E820MapTests {
    let GiB: UInt64 = 1 << 30

    func triples(_ map: E820Map) -> [[UInt64]] {
        map.entries.map { [$0.address, $0.end, UInt64($0.type.rawValue)] }
    }

    @Test func sixtyFourMiB() {
        let map = E820Map(memoryBytes: 64 * MiB)
        #expect(triples(map) == [
            [0, 0xA_0000, 1],
            [0xA_0000, 0x10_0000, 2],
            [0x10_0000, 64 * MiB, 1],
            [0xC000_0000, 1 << 32, 2],
        ])
    }

    @Test func threeGiBEndsAtThePCIHole() {
        let map = E820Map(memoryBytes: 3 * GiB)
        #expect(triples(map) == [
            [0, 0xA_0000, 1],
            [0xA_0000, 0x10_0000, 2],
            [0x10_0000, 0xC000_0000, 1],
            [0xC000_0000, 1 << 32, 2],
        ])
    }

    @Test func fiveGiBRelocatesTheRestAbove4GiB() {
        let map = E820Map(memoryBytes: 5 * GiB)
        #expect(triples(map) == [
            [0, 0xA_0000, 1],
            [0xA_0000, 0x10_0000, 2],
            [0x10_0000, 0xC000_0000, 1],
            [0xC000_0000, 1 << 32, 2],
            [1 << 32, (1 << 32) + 2 * GiB, 1],
        ])
        let ram = map.entries.filter { $0.type == .ram }.reduce(0) { $0 + $1.size }
        #expect(ram == 5 * GiB - 0x6_0000)  // all but the legacy hole
    }

    @Test func reservedRangesAreCarvedOut() {
        // The EBDA (FACS) joins the legacy hole; a table page in the middle of RAM splits it.
        let map = E820Map(memoryBytes: 64 * MiB, reserved: [0x9_FC00..<0xA_0000, 0x3F0_0000..<0x3F0_1000])
        #expect(triples(map) == [
            [0, 0x9_FC00, 1],
            [0x9_FC00, 0x10_0000, 2],
            [0x10_0000, 0x3F0_0000, 1],
            [0x3F0_0000, 0x3F0_1000, 2],
            [0x3F0_1000, 64 * MiB, 1],
            [0xC000_0000, 1 << 32, 2],
        ])
        #expect(map.isRAM(0x10_0000, 0x3F0_0000))
        #expect(!map.isRAM(0x10_0000, 0x3F0_0001))
        #expect(map.ram(below: 32 * MiB) == [0..<0x9_FC00, 0x10_0000..<32 * MiB])
    }

    @Test func anotherLayoutMovesTheHole() {
        let layout = PlatformMemoryLayout(legacyHoleStart: 0xA_0000, legacyHoleEnd: 0x10_0000,
                                          pciHoleStart: 0xE000_0000, pciHoleEnd: 1 << 32)
        let map = E820Map(memoryBytes: 4 * GiB, layout: layout)
        let fourGiB: UInt64 = 1 << 32
        let expected: [[UInt64]] = [
            [0x10_0000, 0xE000_0000, 1],
            [0xE000_0000, fourGiB, 2],
            [fourGiB, fourGiB + 512 * MiB, 1],
        ]
        #expect(Array(triples(map).suffix(3)) == expected)
    }
}
