// PortBusTests.swift — registration rules (overlap, empty, wrap-around),
// dispatch with device-relative offsets, and lookup checked against a
// brute-force reference over the whole 64Ki port space.

import Testing
import Devices

/// Records every access it receives; reads return a per-device tag so tests
/// can tell which device answered.
final class ProbeDevice: PortDevice {
    let name: String
    let tag: UInt32
    private(set) var reads: [(offset: UInt16, size: Int)] = []
    private(set) var writes: [(offset: UInt16, size: Int, value: UInt32)] = []

    init(_ name: String, tag: UInt32 = 0) {
        self.name = name
        self.tag = tag
    }

    func read(offset: UInt16, size: Int) -> UInt32 {
        reads.append((offset, size))
        return tag << 16 | UInt32(offset)
    }

    func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        writes.append((offset, size, value))
        return .none
    }
}

@Suite struct PortBusTests {
    @Test func unownedPortsReturnNil() throws {
        var bus = PortBus()
        #expect(bus.read(port: 0x3F8, size: 1) == nil)
        #expect(bus.write(port: 0x3F8, size: 1, value: 0) == nil)
        #expect(bus.owner(of: 0x3F8) == nil)

        try bus.register(ProbeDevice("a"), base: 0x100, count: 4)
        #expect(bus.read(port: 0x0FF, size: 1) == nil)
        #expect(bus.read(port: 0x104, size: 1) == nil)
        #expect(bus.write(port: 0x104, size: 1, value: 0) == nil)
        #expect(bus.read(port: 0x0000, size: 1) == nil)
        #expect(bus.read(port: 0xFFFF, size: 1) == nil)
    }

    @Test func dispatchPassesOffsetSizeAndValue() throws {
        var bus = PortBus()
        let device = ProbeDevice("uart", tag: 7)
        try bus.register(device, base: 0x3F8, count: 8)

        #expect(bus.read(port: 0x3F8, size: 1) == UInt32(0x7_0000))
        #expect(bus.read(port: 0x3FD, size: 2) == UInt32(0x7_0005))
        #expect(bus.write(port: 0x3FF, size: 4, value: 0xDEAD_BEEF) == DeviceEffect.none)
        #expect(device.reads.map(\.offset) == [0, 5])
        #expect(device.reads.map(\.size) == [1, 2])
        #expect(device.writes.count == 1)
        #expect(device.writes.first?.offset == 7)
        #expect(device.writes.first?.size == 4)
        #expect(device.writes.first?.value == 0xDEAD_BEEF)
        #expect(bus.owner(of: 0x3FC) === device)
    }

    @Test func effectsPassThrough() throws {
        var bus = PortBus()
        try bus.register(DebugExitPort(), base: 0x501, count: 2)
        try bus.register(I8042Controller(), base: 0x60, count: 5)
        #expect(bus.write(port: 0x501, size: 2, value: 3) == .exitGuest(status: 7))
        #expect(bus.write(port: 0x502, size: 1, value: 0) == .exitGuest(status: 1))
        #expect(bus.write(port: 0x64, size: 1, value: 0xFE) == .resetRequested)
    }

    @Test func overlapIsRefusedWithBothNamesAndFirstPort() throws {
        var bus = PortBus()
        try bus.register(ProbeDevice("middle"), base: 0x100, count: 0x10) // 0x100..<0x110

        // Starts inside an existing range.
        #expect(throws: PortBusError.overlap("tail", "middle", 0x10F)) {
            try bus.register(ProbeDevice("tail"), base: 0x10F, count: 4)
        }
        // Ends inside an existing range.
        #expect(throws: PortBusError.overlap("head", "middle", 0x100)) {
            try bus.register(ProbeDevice("head"), base: 0xF8, count: 9)
        }
        // Covers an existing range entirely.
        #expect(throws: PortBusError.overlap("cover", "middle", 0x100)) {
            try bus.register(ProbeDevice("cover"), base: 0x00, count: 0x200)
        }
        // Identical range.
        #expect(throws: PortBusError.overlap("twin", "middle", 0x100)) {
            try bus.register(ProbeDevice("twin"), base: 0x100, count: 0x10)
        }
        // Adjacent ranges on both sides are fine.
        try bus.register(ProbeDevice("before"), base: 0xF0, count: 0x10)
        try bus.register(ProbeDevice("after"), base: 0x110, count: 1)
        #expect(bus.registrations.map(\.name) == ["before", "middle", "after"])
    }

    @Test func invalidRangesAreRefused() throws {
        var bus = PortBus()
        #expect(throws: PortBusError.emptyRange("empty", 0x80)) {
            try bus.register(ProbeDevice("empty"), base: 0x80, count: 0)
        }
        #expect(throws: PortBusError.wrapsAround("wrap", 0xFFF0, 0x11)) {
            try bus.register(ProbeDevice("wrap"), base: 0xFFF0, count: 0x11)
        }
        // The very last ports are usable.
        try bus.register(ProbeDevice("top"), base: 0xFFF0, count: 0x10)
        #expect(bus.read(port: 0xFFFF, size: 1) == 0xF)
        #expect(bus.registrations.count == 1)
    }

    @Test func refusedRegistrationLeavesBusUnchanged() throws {
        var bus = PortBus()
        try bus.register(ProbeDevice("a"), base: 0x10, count: 4)
        #expect(throws: PortBusError.self) {
            try bus.register(ProbeDevice("b"), base: 0x12, count: 4)
        }
        #expect(bus.registrations.count == 1)
        #expect(bus.owner(of: 0x15) == nil)
    }

    @Test func errorDescriptionsNameDevicesAndPorts() {
        #expect(PortBusError.overlap("new", "old", 0x3F8).description
            == "port device 'new' overlaps 'old' at port 0x3f8")
        #expect(PortBusError.emptyRange("x", 0x80).description.contains("'x'"))
        #expect(PortBusError.wrapsAround("y", 0xFFFF, 2).description.contains("0xffff"))
    }

    @Test func registrationsAreSortedByBase() throws {
        var bus = PortBus()
        try bus.register(ProbeDevice("c"), base: 0x3F8, count: 8)
        try bus.register(ProbeDevice("a"), base: 0x60, count: 5)
        try bus.register(ProbeDevice("b"), base: 0x80, count: 1)
        let regs = bus.registrations
        #expect(regs.map(\.base) == [0x60, 0x80, 0x3F8])
        #expect(regs.map(\.count) == [5, 1, 8])
        #expect(regs.map(\.name) == ["a", "b", "c"])
    }

    @Test func lookupMatchesReferenceOverWholePortSpace() throws {
        // 100 devices of 1–9 ports at pseudo-random gaps, registered in a
        // scrambled order so that insertion lands everywhere in the list.
        var ranges: [(base: Int, count: Int)] = []
        var seed: UInt32 = 0x1234_5678
        func nextRandom() -> Int {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            return Int(seed >> 16)
        }
        var port = 0
        for _ in 0..<100 {
            port += nextRandom() % 600 // gap, possibly zero: adjacent ranges
            let count = 1 + nextRandom() % 9
            ranges.append((port, count))
            port += count
        }
        // Make the top of the port space owned, to probe the 0xFFFF edge.
        ranges.append((0x10000 - 3, 3))
        #expect(port < 0x10000 - 3)

        var reference = [Int](repeating: -1, count: 0x10000)
        for (index, range) in ranges.enumerated() {
            for p in range.base..<(range.base + range.count) { reference[p] = index }
        }

        var order = Array(ranges.indices)
        for i in order.indices.reversed() {
            order.swapAt(i, nextRandom() % (i + 1))
        }
        var bus = PortBus()
        var devices: [Int: ProbeDevice] = [:]
        for index in order {
            let device = ProbeDevice("dev\(index)", tag: UInt32(index))
            devices[index] = device
            try bus.register(device, base: UInt16(ranges[index].base), count: UInt16(ranges[index].count))
        }
        #expect(bus.registrations.count == ranges.count)

        var mismatches = 0
        for p in 0...0xFFFF {
            let expected = reference[p]
            let value = bus.read(port: UInt16(p), size: 1)
            if expected < 0 {
                if value != nil || bus.owner(of: UInt16(p)) != nil { mismatches += 1 }
            } else {
                let offset = UInt32(p - ranges[expected].base)
                if value != UInt32(expected) << 16 | offset { mismatches += 1 }
                if bus.owner(of: UInt16(p)) !== devices[expected] { mismatches += 1 }
            }
        }
        #expect(mismatches == 0)
    }
}
