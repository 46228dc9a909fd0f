// VirtioOverPCIBusTests.swift — the pieces together as a guest driver meets
// them: enumerate bus 0 through ports 0xCF8/0xCFC, size and read BAR 0,
// follow the capability list to the virtio structures, bring a virtio-blk
// device up through MMIO on the bus, write and read a sector, take the
// MSI-X interrupt; then move the BAR and keep going at the new address.

import Testing
import PCI
import Virtio

/// A guest's PCI view: configuration through the ports, MMIO through the bus.
struct GuestPCI {
    let bus: PCIBus

    func config(_ slot: Int, _ register: Int, _ size: Int = 4) -> UInt32 {
        bus.writeConfigPort(0xCF8, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(register & 0xFC))
        return bus.readConfigPort(0xCFC + UInt16(register & 3), size: size)
    }

    func setConfig(_ slot: Int, _ register: Int, _ value: UInt32, _ size: Int = 4) {
        bus.writeConfigPort(0xCF8, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(register & 0xFC))
        bus.writeConfigPort(0xCFC + UInt16(register & 3), size: size, value: value)
    }

    /// The virtio capabilities: cfg_type → BAR offset.
    func virtioStructures(_ slot: Int) -> [UInt8: UInt32] {
        var result: [UInt8: UInt32] = [:]
        var pointer = Int(config(slot, 0x34, 1))
        var steps = 0
        while pointer != 0, steps < 48 {
            if config(slot, pointer, 1) == 0x09 { result[UInt8(config(slot, pointer + 3, 1))] = config(slot, pointer + 8) }
            pointer = Int(config(slot, pointer + 1, 1))
            steps += 1
        }
        return result
    }
}

@Suite struct VirtioOverPCIBusTests {
    @Test func aGuestEnumeratesBringsUpAndUsesAVirtioBlockDevice() throws {
        let memory = InMemoryGuestMemory(size: 0x10_0000)
        let disk = InMemoryBlockBackend(sectors: 16)
        let transport = try VirtioPCIDevice(device: VirtioBlockDevice(backend: disk, serial: "d0"), memory: memory)
        let msi = RecordingMSI()
        transport.msix.delivery = msi
        let bus = PCIBus(windows: PCIWindows(mmio32: 0xC000_0000...0xFEBF_FFFF), ecamBuses: 0...0)
        try bus.register(transport, slot: 3)
        let guest = GuestPCI(bus: bus)

        // Enumerate: the host bridge, then our device; empty slots read all ones.
        let found = (0..<32).map { guest.config($0, 0) }
        #expect(found[0] == 0x0008_1B36 && found[3] == 0x1042_1AF4)
        #expect(found.filter { $0 != 0xFFFF_FFFF }.count == 2)

        // Size BAR 0 as Linux does (decode off, all ones, read, restore).
        let low = guest.config(3, 0x10), high = guest.config(3, 0x14)
        #expect(low & 0x6 == 0x4) // 64-bit memory
        guest.setConfig(3, 0x04, 0, 2)
        guest.setConfig(3, 0x10, 0xFFFF_FFFF)
        guest.setConfig(3, 0x14, 0xFFFF_FFFF)
        let size = ~(UInt64(guest.config(3, 0x14)) << 32 | UInt64(guest.config(3, 0x10) & ~0xF)) &+ 1
        #expect(size == 0x8000)
        guest.setConfig(3, 0x10, low)
        guest.setConfig(3, 0x14, high)
        guest.setConfig(3, 0x04, UInt32(PCICommand.memorySpace | PCICommand.busMaster), 2)
        let bar = UInt64(high) << 32 | UInt64(low & ~0xF)

        let structures = guest.virtioStructures(3)
        let common = bar + UInt64(try #require(structures[1]))
        let notify = bar + UInt64(try #require(structures[2]))
        let deviceConfig = bar + UInt64(try #require(structures[4]))
        #expect(bus.readMemory(address: deviceConfig, size: 8) == 16) // capacity

        // MSI-X: enable, program vector 1 for the queue.
        let msixCap = transport.msix.capabilityOffset
        guest.setConfig(3, msixCap + 2, UInt32(MSIXCapability.enableBit), 2)
        _ = bus.writeMemory(address: bar + 0x4000 + 16, size: 4, value: 0xFEE0_0000)
        _ = bus.writeMemory(address: bar + 0x4000 + 24, size: 4, value: 0x61)
        _ = bus.writeMemory(address: bar + 0x4000 + 28, size: 4, value: 0)

        // Bring the device up through MMIO.
        func w(_ offset: Int, _ size: Int, _ value: UInt64) { _ = bus.writeMemory(address: common + UInt64(offset), size: size, value: value) }
        func r(_ offset: Int, _ size: Int) -> UInt64 { bus.readMemory(address: common + UInt64(offset), size: size) ?? 0xDEAD }
        w(Common.status, 1, 1); w(Common.status, 1, 3)
        w(Common.driverFeatureSelect, 4, 1); w(Common.driverFeature, 4, 1)
        w(Common.driverFeatureSelect, 4, 0); w(Common.driverFeature, 4, 0)
        w(Common.status, 1, 0xB)
        #expect(r(Common.status, 1) == 0xB)
        let ring = TestRing(memory: memory, size: 8, base: 0x1000)
        w(Common.queueSelect, 2, 0)
        w(Common.queueSize, 2, 8)
        w(Common.queueVector, 2, 1)
        #expect(r(Common.queueVector, 2) == 1)
        w(Common.queueDesc, 8, ring.descriptorTable); w(Common.queueDriver, 8, ring.availableRing); w(Common.queueDevice, 8, ring.usedRing)
        w(Common.queueEnable, 2, 1)
        w(Common.status, 1, 0xF)
        let notifyAddress = notify + UInt64(r(Common.queueNotifyOff, 2)) * 4

        // Write sector 3, then read it back.
        let payload = (0..<512).map { UInt8(truncatingIfNeeded: $0 ^ 0x5A) }
        func submit(type: UInt32, dataWritable: Bool) throws {
            try memory.writeUInt32(type, at: 0x8_0000)
            try memory.writeUInt64(3, at: 0x8_0008)
            try ring.setDescriptor(0, address: 0x8_0000, length: 16, flags: TestRing.next, next: 1)
            try ring.setDescriptor(1, address: 0x9_0000, length: 512, flags: TestRing.next | (dataWritable ? TestRing.write : 0), next: 2)
            try ring.setDescriptor(2, address: 0x8_0100, length: 1, flags: TestRing.write)
            try ring.makeAvailable(0)
            _ = bus.writeMemory(address: notifyAddress, size: 2, value: 0)
        }
        try memory.write(payload, at: 0x9_0000)
        try submit(type: 1, dataWritable: false)
        #expect(Array(disk.bytes[1536..<2048]) == payload)
        try memory.write(Array(repeating: 0, count: 512), at: 0x9_0000)
        try submit(type: 0, dataWritable: true)
        #expect(try memory.read(at: 0x9_0000, count: 512) == payload)
        #expect(try memory.read(at: 0x8_0100, count: 1) == [0])
        #expect(ring.usedIndex == 2)
        #expect(msi.delivered == Array(repeating: MSIMessage(address: 0xFEE0_0000, data: 0x61), count: 2))

        // The guest moves the BAR: the device answers at the new address only.
        let moved: UInt64 = 0xD000_0000
        guest.setConfig(3, 0x04, 0, 2)
        guest.setConfig(3, 0x10, UInt32(moved))
        guest.setConfig(3, 0x14, 0)
        guest.setConfig(3, 0x04, UInt32(PCICommand.memorySpace | PCICommand.busMaster), 2)
        #expect(bus.readMemory(address: common + UInt64(Common.numQueues), size: 2) == nil)
        #expect(bus.readMemory(address: moved + UInt64(Common.numQueues), size: 2) == 1)
    }
}
