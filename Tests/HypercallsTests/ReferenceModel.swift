// ReferenceModel.swift — the slow, obviously-right models the tests compare
// against: one Bool per 4 KiB page for the page map, 128-bit arithmetic for
// MAP_GPA_RANGE validation, and a seeded generator so every run is the same.

import SeededRandom
import Hypercalls


/// One flag per 4 KiB page: true = shared.
struct PageModel {
    static let page: UInt64 = 4096
    let size: UInt64
    var shared: [Bool]

    init(size: UInt64, initial: PageAttribute = .private) {
        self.size = size
        shared = Array(repeating: initial == .shared, count: Int(size / Self.page))
    }

    /// `range` must be page-aligned and inside memory.
    mutating func set(_ range: Range<UInt64>, to attribute: PageAttribute) {
        let value = attribute == .shared
        for index in Int(range.lowerBound / Self.page)..<Int(range.upperBound / Self.page) {
            shared[index] = value
        }
    }

    func attribute(at address: UInt64) -> PageAttribute? {
        guard address < size else { return nil }
        return shared[Int(address / Self.page)] ? .shared : .private
    }

    /// Run-length encoding of the pages: the coalesced ranges the map must hold.
    var ranges: [(range: Range<UInt64>, attribute: PageAttribute)] {
        var result: [(range: Range<UInt64>, attribute: PageAttribute)] = []
        var runStart = 0
        for index in 1...shared.count where index == shared.count || shared[index] != shared[runStart] {
            result.append((UInt64(runStart) * Self.page..<UInt64(index) * Self.page,
                           shared[runStart] ? .shared : .private))
            runStart = index
        }
        return result
    }
}

/// Why two range lists differ, or nil when they are equal.
func difference(_ actual: [(range: Range<UInt64>, attribute: PageAttribute)],
                _ expected: [(range: Range<UInt64>, attribute: PageAttribute)]) -> String? {
    if actual.count != expected.count {
        return "\(actual.count) ranges, expected \(expected.count): \(render(actual)) vs \(render(expected))"
    }
    for (a, e) in zip(actual, expected) where a.range != e.range || a.attribute != e.attribute {
        return "range \(render([a])) where \(render([e])) was expected"
    }
    return nil
}

func render(_ ranges: [(range: Range<UInt64>, attribute: PageAttribute)]) -> String {
    let shown = ranges.prefix(8).map {
        "[0x\(String($0.range.lowerBound, radix: 16)), 0x\(String($0.range.upperBound, radix: 16))) \($0.attribute.rawValue)"
    }
    return shown.joined(separator: ", ") + (ranges.count > 8 ? ", …" : "")
}

/// MAP_GPA_RANGE validation written independently of the decoder, with
/// 128-bit arithmetic so that overflow is a comparison, not a trap.
func referenceDecode(a0: UInt64, a1: UInt64, a2: UInt64, limit: UInt64) -> Result<MapGPARangeRequest, MapGPARangeError> {
    if a2 >> 5 != 0 { return .failure(.reservedAttributeBits(a2)) }
    let pageSizes: [UInt64: UInt64] = [0: 4096, 1: 2 * 1024 * 1024, 2: 1024 * 1024 * 1024]
    guard let pageSize = pageSizes[a2 & 0xF] else { return .failure(.badPageSize(a2 & 0xF)) }
    if a1 == 0 { return .failure(.zeroPages) }
    let length = UInt128(a1) * 4096
    if length > UInt128(UInt64.max) { return .failure(.overflow) }
    if a0 % pageSize != 0 { return .failure(.misaligned(start: a0, pageSize: pageSize)) }
    if length % UInt128(pageSize) != 0 {
        return .failure(.misalignedLength(byteLength: UInt64(length), pageSize: pageSize))
    }
    let end = UInt128(a0) + length
    if end > UInt128(UInt64.max) { return .failure(.overflow) }
    if end > UInt128(limit) { return .failure(.outsideMemory(start: a0, end: UInt64(end), limit: limit)) }
    return .success(MapGPARangeRequest(start: a0, pageCount: a1, pageSize: pageSize,
                                       attribute: a2 & 0x10 != 0 ? .private : .shared,
                                       byteLength: UInt64(length)))
}

/// Every invariant of a map as one failure message, or nil.
func invariantProblems(_ map: GPAAttributeMap) -> String? {
    var problems = map.invariantViolations()
    // The public view must say the same as the tree: sorted, contiguous,
    // covering [0, size), coalesced.
    let ranges = map.ranges
    var expectedStart: UInt64 = 0
    for (index, entry) in ranges.enumerated() {
        if entry.range.lowerBound != expectedStart { problems.append("gap or overlap at \(entry.range)") }
        if entry.range.isEmpty { problems.append("empty range \(entry.range)") }
        if index > 0 && ranges[index - 1].attribute == entry.attribute { problems.append("uncoalesced at \(entry.range)") }
        expectedStart = entry.range.upperBound
    }
    if expectedStart != map.size { problems.append("ranges end at \(expectedStart), size is \(map.size)") }
    if ranges.count != map.rangeCount { problems.append("rangeCount \(map.rangeCount) != \(ranges.count) ranges") }
    return problems.isEmpty ? nil : problems.joined(separator: "; ")
}
