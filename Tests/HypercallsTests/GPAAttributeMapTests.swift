// GPAAttributeMapTests.swift — the page map: the conversion stages of the
// kernel selftest private_mem_conversions_test.c, splitting and coalescing
// at every kind of boundary, queries, equality, and the shared-regions
// report (table and JSON).

import Testing
import Hypercalls

@Suite struct GPAAttributeMapTests {
    static let page: UInt64 = 4096
    static let twoMeg: UInt64 = 2 << 20

    /// The stages of guest_test_conversions() in private_mem_conversions_test.c,
    /// as (offset, size) from the test's base GPA.
    static let selftestStages: [(offset: UInt64, size: UInt64)] = [
        (0, page), (0, twoMeg), (page, page), (page, twoMeg), (twoMeg, page),
    ]

    /// Private → shared → odd pages back to private → all private, as the
    /// selftest's guest does, checking the whole map (against the per-page
    /// model) and the neighbours of the range after every step.
    @Test(arguments: 0..<5)
    func selftestConversionStage(stage: Int) {
        let (offset, size) = Self.selftestStages[stage]
        let memory: UInt64 = 16 << 20
        let base: UInt64 = 4 << 20   // leaves private neighbours on both sides
        let gpa = base + offset
        let handler = HypercallHandler(memorySize: memory)
        var model = PageModel(size: memory)

        func convert(_ start: UInt64, _ length: UInt64, _ attribute: PageAttribute) {
            let outcome = handler.handle(number: HypercallNumber.mapGPARange,
                                         arguments: [start, length / Self.page, MapGPARangeAttributes.word(attribute), 0, 0, 0],
                                         longMode: true)
            #expect(outcome.returnValue == 0, "converting \(start) +\(length): \(String(describing: outcome.error))")
            model.set(start..<start + length, to: attribute)
            let map = handler.snapshot()
            #expect(difference(map.ranges, model.ranges) == nil, "\(difference(map.ranges, model.ranges) ?? "")")
            #expect(invariantProblems(map) == nil, "\(invariantProblems(map) ?? "")")
            // Neighbours are untouched: still private.
            #expect(map.attribute(at: gpa - 1) == .private)
            #expect(map.attribute(at: gpa + size) == .private)
        }

        convert(gpa, size, .shared)
        var map = handler.snapshot()
        #expect(map.rangeCount == 3)
        #expect(map.sharedRanges == [gpa..<gpa + size])
        #expect(map.attribute(at: gpa) == .shared)
        #expect(map.attribute(at: gpa + size - 1) == .shared)

        // Holes: odd-numbered pages back to private.
        var index: UInt64 = 1
        while index * Self.page < size {
            convert(gpa + index * Self.page, Self.page, .private)
            index += 2
        }
        map = handler.snapshot()
        let pages = size / Self.page
        #expect(map.sharedRanges.count == Int((pages + 1) / 2))

        convert(gpa, size, .private)
        map = handler.snapshot()
        #expect(map.rangeCount == 1)
        #expect(map.ranges.first?.range == 0..<memory)
        #expect(map.sharedRanges.isEmpty)
    }

    @Test func initialState() {
        let map = GPAAttributeMap(size: 1 << 30)
        #expect(map.size == 1 << 30)
        #expect(map.rangeCount == 1)
        #expect(map.attribute(at: 0) == .private)
        #expect(map.attribute(at: (1 << 30) - 1) == .private)
        #expect(map.attribute(at: 1 << 30) == nil)
        #expect(map.attribute(at: .max) == nil)
        let shared = GPAAttributeMap(size: 8192, initial: .shared)
        #expect(shared.sharedRanges == [0..<8192])

        let empty = GPAAttributeMap(size: 0)
        #expect(empty.rangeCount == 0)
        #expect(empty.ranges.isEmpty)
        #expect(empty.attribute(at: 0) == nil)
        #expect(invariantProblems(empty) == nil)
    }

    @Test func splitInTheMiddleThenCoalesceBack() {
        var map = GPAAttributeMap(size: 0x10000)
        map.set(0x4000..<0x8000, to: .shared)
        #expect(difference(map.ranges, [(0..<0x4000, .private), (0x4000..<0x8000, .shared), (0x8000..<0x10000, .private)]) == nil)
        map.set(0x5000..<0x6000, to: .private)
        #expect(map.rangeCount == 5)
        map.set(0x5000..<0x6000, to: .shared)
        #expect(map.rangeCount == 3)
        map.set(0x4000..<0x8000, to: .private)
        #expect(map.rangeCount == 1)
        #expect(invariantProblems(map) == nil)
    }

    @Test func boundariesAtBothEnds() {
        var map = GPAAttributeMap(size: 0x10000)
        map.set(0..<0x1000, to: .shared)
        map.set(0xF000..<0x10000, to: .shared)
        #expect(map.sharedRanges == [0..<0x1000, 0xF000..<0x10000])
        #expect(map.rangeCount == 3)
        map.set(0..<0x10000, to: .shared)
        #expect(map.rangeCount == 1)
        #expect(map.sharedRanges == [0..<0x10000])
        map.set(0..<0x10000, to: .private)
        #expect(map.sharedRanges.isEmpty)
        #expect(invariantProblems(map) == nil)
    }

    @Test func adjacentRangesCoalesce() {
        var map = GPAAttributeMap(size: 0x10000)
        map.set(0x2000..<0x3000, to: .shared)
        map.set(0x3000..<0x4000, to: .shared)   // right after
        map.set(0x1000..<0x2000, to: .shared)   // right before
        #expect(map.sharedRanges == [0x1000..<0x4000])
        #expect(map.rangeCount == 3)
        // Filling the gap between two shared ranges leaves one.
        map.set(0x6000..<0x7000, to: .shared)
        map.set(0x4000..<0x6000, to: .shared)
        #expect(map.sharedRanges == [0x1000..<0x7000])
        #expect(invariantProblems(map) == nil)
    }

    @Test func overlappingUpdateSwallowsManyRanges() {
        var map = GPAAttributeMap(size: 0x100000)
        for index in stride(from: UInt64(1), to: 200, by: 2) {
            map.set(index * 0x1000..<(index + 1) * 0x1000, to: .shared)
        }
        #expect(map.rangeCount == 201)
        // Partial overlap of the first and last shared ranges on both sides.
        map.set(0x1800..<0xC7800, to: .private)
        #expect(map.sharedRanges == [0x1000..<0x1800, 0xC7800..<0xC8000])
        #expect(map.rangeCount == 5)
        map.set(0..<0x100000, to: .shared)
        #expect(map.rangeCount == 1)
        #expect(invariantProblems(map) == nil)
    }

    @Test func settingTheSameAttributeIsANoOp() {
        var map = GPAAttributeMap(size: 0x10000)
        map.set(0x2000..<0x4000, to: .shared)
        let before = map
        map.set(0x2000..<0x3000, to: .shared)
        map.set(0x8000..<0x9000, to: .private)
        #expect(map == before)
        #expect(map.rangeCount == 3)
    }

    @Test func outOfBoundsAndEmptyUpdatesAreClampedOrIgnored() {
        var map = GPAAttributeMap(size: 0x10000)
        map.set(0x5000..<0x5000, to: .shared)
        map.set(0x10000..<0x20000, to: .shared)
        #expect(map.rangeCount == 1)
        map.set(0xF000..<UInt64.max, to: .shared)
        #expect(map.sharedRanges == [0xF000..<0x10000])
        #expect(invariantProblems(map) == nil)
    }

    @Test func valueSemanticsAndEquality() {
        var a = GPAAttributeMap(size: 0x10000)
        let copy = a
        a.set(0..<0x1000, to: .shared)
        #expect(copy.sharedRanges.isEmpty)
        #expect(a != copy)
        var b = GPAAttributeMap(size: 0x10000)
        // Same final content reached another way: equal, whatever the tree shape.
        b.set(0..<0x3000, to: .shared)
        b.set(0x1000..<0x3000, to: .private)
        #expect(a == b)
        #expect(GPAAttributeMap(size: 0x1000) != GPAAttributeMap(size: 0x2000))
    }

    @Test func reportTableAndJSON() {
        var map = GPAAttributeMap(size: 64 << 20)
        map.set(0x1000..<0x3000, to: .shared)
        map.set(0x20_0000..<0x40_0000, to: .shared)
        let table = SharedRegionsReport.table(map)
        #expect(table == """
            Shared regions: 2 range(s), 2056 KiB of 64 MiB guest memory (5 range(s) in the map)
            start               end (exclusive)     size
            0x0000000000001000  0x0000000000003000  8 KiB
            0x0000000000200000  0x0000000000400000  2 MiB

            """)
        let json = SharedRegionsReport.json(map)
        #expect(json == #"{"memorySize":"0x4000000","rangeCount":5,"sharedBytes":"0x202000","shared":[{"start":"0x1000","end":"0x3000","size":"0x2000"},{"start":"0x200000","end":"0x400000","size":"0x200000"}]}"#)

        let none = GPAAttributeMap(size: 1 << 30)
        #expect(SharedRegionsReport.table(none).hasPrefix("Shared regions: none"))
        #expect(SharedRegionsReport.json(none).hasSuffix(#""shared":[]}"#))
    }
}
