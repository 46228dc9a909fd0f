// PCIBusTests.swift — bus 0 as a guest enumerates it: mechanism #1 through
// ports 0xCF8/0xCFC–0xCFF, ECAM, slots, BAR placement, and routing that
// follows what the guest programs, reported to a listener.

import Testing
import PCI

/// A function with a few BARs that records BAR accesses.
final class RecordingFunction: PCIDevice {
    let name: String
    let configSpace: PCIConfigSpace
    var writes: [(bar: Int, offset: UInt64, size: Int, value: UInt64)] = []

    init(name: String = "recording", bars: [(Int, PCIBarDefinition)]) throws {
        self.name = name
        configSpace = PCIConfigSpace(identity: testIdentity)
        for (index, definition) in bars { try configSpace.defineBAR(index, definition) }
    }

    func readBAR(_ index: Int, offset: UInt64, size: Int) -> UInt64 { UInt64(index) << 32 | offset }
    func writeBAR(_ index: Int, offset: UInt64, size: Int, value: UInt64) { writes.append((index, offset, size, value)) }
}

final class RecordingListener: PCIBarListener {
    var changes: [(removed: [PCIBarMapping], added: [PCIBarMapping])] = []
    func barMappingsChanged(removed: [PCIBarMapping], added: [PCIBarMapping]) { changes.append((removed, added)) }
}

let testWindows = PCIWindows(mmio32: 0xC000_0000...0xFEBF_FFFF, mmio64: 0x1_0000_0000...0x1_FFFF_FFFF, io: 0xC000...0xFFFF)

func configAddress(slot: Int, register: Int, bus: Int = 0, function: Int = 0, enable: Bool = true) -> UInt32 {
    (enable ? 0x8000_0000 : 0) | UInt32(bus) << 16 | UInt32(slot) << 11 | UInt32(function) << 8 | UInt32(register & 0xFC)
}

@Suite struct PCIBusTests {
    @Test func hostBridgeAnswersAt00_00_0ThroughPorts() {
        let bus = PCIBus(windows: testWindows)
        bus.writeConfigPort(0xCF8, size: 4, value: configAddress(slot: 0, register: 0))
        #expect(bus.readConfigPort(0xCF8, size: 4) == 0x8000_0000)
        #expect(bus.readConfigPort(0xCFC, size: 4) == 0x0008_1B36)
        #expect(bus.readConfigPort(0xCFE, size: 2) == 0x0008)
        bus.writeConfigPort(0xCF8, size: 4, value: configAddress(slot: 0, register: 8))
        #expect(bus.readConfigPort(0xCFC, size: 4) >> 8 == 0x06_0000)
        #expect(bus.readConfigPort(0xCFF, size: 1) == 0x06) // byte lane 3 = register 0x0B
    }

    @Test func configAddressTakesOnlyDwordWritesAndMasksReservedBits() {
        let bus = PCIBus(windows: testWindows)
        bus.writeConfigPort(0xCF8, size: 4, value: 0xFFFF_FFFF)
        #expect(bus.configAddress == 0x80FF_FFFC)
        bus.writeConfigPort(0xCF8, size: 1, value: 0)
        bus.writeConfigPort(0xCFB, size: 1, value: 0)
        #expect(bus.configAddress == 0x80FF_FFFC)
        #expect(bus.readConfigPort(0xCFA, size: 2) == 0x80FF)
    }

    @Test func disabledAbsentAndOtherBusOrFunctionReadAllOnesAndDropWrites() throws {
        let bus = PCIBus(windows: testWindows)
        let function = try RecordingFunction(bars: [])
        try bus.register(function, slot: 3)
        for address in [configAddress(slot: 3, register: 0x3C, enable: false), configAddress(slot: 4, register: 0x3C),
                        configAddress(slot: 3, register: 0x3C, bus: 1), configAddress(slot: 3, register: 0x3C, function: 1)] {
            bus.writeConfigPort(0xCF8, size: 4, value: address)
            #expect(bus.readConfigPort(0xCFC, size: 4) == 0xFFFF_FFFF)
            #expect(bus.readConfigPort(0xCFD, size: 1) == 0xFF)
            bus.writeConfigPort(0xCFC, size: 1, value: 0x77)
        }
        #expect(function.configSpace.byte(0x3C) == 0)
        bus.writeConfigPort(0xCF8, size: 4, value: configAddress(slot: 3, register: 0x3C))
        bus.writeConfigPort(0xCFC, size: 1, value: 0x77)
        #expect(function.configSpace.byte(0x3C) == 0x77)
    }

    @Test func ecamReachesTheSameRegisters() throws {
        let bus = PCIBus(windows: testWindows, ecamBuses: 0...1)
        #expect(bus.ecamSize == 2 << 20)
        let function = try RecordingFunction(bars: [])
        try bus.register(function, slot: 5)
        let base = UInt64(5) << 15
        #expect(bus.readECAM(offset: base, size: 4) == 0x1042_1AF4)
        #expect(bus.readECAM(offset: base + 2, size: 2) == 0x1042)
        bus.writeECAM(offset: base + 0x3C, size: 1, value: 0x0B)
        #expect(function.configSpace.byte(0x3C) == 0x0B)
        #expect(bus.readECAM(offset: base | 1 << 12, size: 4) == 0xFFFF_FFFF)      // function 1
        #expect(bus.readECAM(offset: 1 << 20 | base, size: 4) == 0xFFFF_FFFF)      // bus 1
        #expect(bus.readECAM(offset: 2 << 20, size: 4) == 0xFFFF_FFFF)             // past the window
        #expect(bus.readECAM(offset: UInt64(6) << 15, size: 2) == 0xFFFF)          // empty slot
        // Extended space is there (zero) for a present function.
        #expect(bus.readECAM(offset: base + 0x100, size: 4) == 0)
    }

    @Test func ecamWindowStartsAtTheFirstBusOfItsRange() throws {
        let bus = PCIBus(windows: testWindows, ecamBuses: 1...2)
        try bus.register(RecordingFunction(bars: []), slot: 5)
        #expect(bus.readECAM(offset: UInt64(5) << 15, size: 4) == 0xFFFF_FFFF)     // bus 1: nothing
    }

    @Test func slotsAreGivenOutAndRefusedWhenTakenOrFull() throws {
        let bus = PCIBus(windows: testWindows)
        #expect(try bus.register(RecordingFunction(bars: [])) == 1)
        #expect(try bus.register(RecordingFunction(bars: [])) == 2)
        #expect(throws: PCIError.slotOccupied(0, "pci-host-bridge")) { try bus.register(RecordingFunction(bars: []), slot: 0) }
        #expect(throws: PCIError.slotInvalid(32)) { try bus.register(RecordingFunction(bars: []), slot: 32) }
        for _ in 3..<32 { try bus.register(RecordingFunction(bars: [])) }
        #expect(throws: PCIError.busFull("last")) { try bus.register(RecordingFunction(name: "last", bars: [])) }
    }

    @Test func barsArePlacedNaturallyAlignedInTheirWindows() throws {
        let bus = PCIBus(windows: testWindows)
        let a = try RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x1000)), (1, .init(kind: .memory32, size: 0x10_0000)),
                                             (2, .init(kind: .memory64, size: 0x4000)), (4, .init(kind: .io, size: 0x40))])
        let b = try RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x2000))])
        try bus.register(a)
        try bus.register(b)
        #expect(a.configSpace.barAddress(1) == 0xC000_0000)
        #expect(a.configSpace.barAddress(0) == 0xC010_0000)
        #expect(a.configSpace.barAddress(2) == 0x1_0000_0000)
        #expect(a.configSpace.barAddress(4) == 0xC000)
        #expect(b.configSpace.barAddress(0) == 0xC010_2000)
        #expect(a.configSpace.memoryDecodeEnabled && a.configSpace.ioDecodeEnabled)
        #expect(b.configSpace.memoryDecodeEnabled && !b.configSpace.ioDecodeEnabled)
        for mapping in bus.mappings { #expect(mapping.base % mapping.size == 0) }
    }

    @Test func windowExhaustionIsAnErrorAndLeavesTheBusAsItWas() throws {
        let small = PCIWindows(mmio32: 0xC000_0000...0xC000_3FFF)
        let bus = PCIBus(windows: small)
        try bus.register(RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x2000))]))
        #expect(throws: PCIError.windowExhausted(device: "big", bar: 0, size: 0x4000)) {
            try bus.register(RecordingFunction(name: "big", bars: [(0, .init(kind: .memory32, size: 0x4000))]))
        }
        #expect(bus.device(atSlot: 2) == nil)
        // With no 64-bit window a 64-bit BAR goes to the 32-bit hole; no I/O window, no I/O BAR.
        let function = try RecordingFunction(bars: [(0, .init(kind: .memory64, size: 0x2000))])
        try bus.register(function)
        #expect(function.configSpace.barAddress(0) == 0xC000_2000)
        #expect(throws: PCIError.self) { try bus.register(RecordingFunction(bars: [(0, .init(kind: .io, size: 4))])) }
    }

    @Test func accessesRouteToTheBarAndFollowTheGuest() throws {
        let bus = PCIBus(windows: testWindows)
        let listener = RecordingListener()
        bus.listener = listener
        let function = try RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x1000)), (4, .init(kind: .io, size: 0x20))])
        let slot = try bus.register(function)
        #expect(listener.changes.count == 1 && listener.changes[0].added.count == 2)
        #expect(bus.readMemory(address: 0xC000_0010, size: 4) == 0x10)
        #expect(bus.readIO(port: 0xC004, size: 2) == 0x4)
        #expect(bus.writeMemory(address: 0xC000_0FF8, size: 8, value: 42))
        #expect(function.writes.last?.offset == 0xFF8 && function.writes.last?.value == 42)
        #expect(bus.readMemory(address: 0xC000_1000, size: 4) == nil)

        // The guest moves BAR 0: the old address is no longer routed, the new one is.
        bus.writeConfigPort(0xCF8, size: 4, value: configAddress(slot: slot, register: 0x10))
        bus.writeConfigPort(0xCFC, size: 4, value: 0xD000_0000)
        #expect(bus.readMemory(address: 0xC000_0010, size: 4) == nil)
        #expect(bus.readMemory(address: 0xD000_0010, size: 4) == 0x10)
        #expect(listener.changes.count == 2)
        #expect(listener.changes[1].removed.map(\.base) == [0xC000_0000] && listener.changes[1].added.map(\.base) == [0xD000_0000])

        // Memory decode off: nothing routed; I/O still is.
        bus.writeECAM(offset: UInt64(slot) << 15 | 4, size: 2, value: UInt32(PCICommand.ioSpace))
        #expect(bus.readMemory(address: 0xD000_0010, size: 4) == nil)
        #expect(bus.readIO(port: 0xC004, size: 1) != nil)
        #expect(listener.changes.count == 3 && listener.changes[2].added.isEmpty)
        // Sizing with decode off does not route anything; a write that changes nothing tells no one.
        bus.writeECAM(offset: UInt64(slot) << 15 | 0x10, size: 4, value: 0xFFFF_FFFF)
        #expect(bus.mappings.allSatisfy { $0.space == .io })
        bus.writeECAM(offset: UInt64(slot) << 15 | 0x3C, size: 1, value: 5)
        #expect(listener.changes.count == 3)
    }

    @Test func barsPastTheirSpaceOrAtZeroAreNotRouted() throws {
        let bus = PCIBus(windows: testWindows)
        let function = try RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x1000))])
        let slot = try bus.register(function)
        bus.writeECAM(offset: UInt64(slot) << 15 | 0x10, size: 4, value: 0)
        #expect(bus.mappings.isEmpty)
    }

    @Test func stateRestoresConfigurationAndRouting() throws {
        let bus = PCIBus(windows: testWindows)
        let function = try RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x1000))])
        let slot = try bus.register(function, slot: 2)
        bus.writeECAM(offset: UInt64(slot) << 15 | 0x10, size: 4, value: 0xE000_0000)
        bus.writeConfigPort(0xCF8, size: 4, value: configAddress(slot: 2, register: 0x3C))
        let state = bus.exportState()

        let other = PCIBus(windows: testWindows)
        let listener = RecordingListener()
        other.listener = listener
        let twin = try RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x1000))])
        try other.register(twin, slot: 2)
        try other.importState(state)
        #expect(other.exportState() == state)
        #expect(other.readMemory(address: 0xE000_0004, size: 4) == 4)
        #expect(other.readConfigPort(0xCFC, size: 1) == 0)
        #expect(listener.changes.last?.added.map(\.base) == [0xE000_0000])

        let elsewhere = PCIBus(windows: testWindows)
        try elsewhere.register(RecordingFunction(bars: [(0, .init(kind: .memory32, size: 0x1000))]), slot: 3)
        #expect(throws: PCIStateError.self) { try elsewhere.importState(state) }
        var bad = state
        bad.configAddress = 0x0100_0000
        #expect(throws: PCIStateError.self) { try other.importState(bad) }
        let different = PCIBus(windows: testWindows)
        // The same identity with a 64-bit BAR 0: its type bits differ from the saved ones.
        try different.register(RecordingFunction(bars: [(0, .init(kind: .memory64, size: 0x1000))]), slot: 2)
        let before = different.exportState()
        #expect(throws: PCIStateError.self) { try different.importState(state) }
        #expect(different.exportState() == before)
    }
}
