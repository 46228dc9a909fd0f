// VirtioPCIDeviceTests.swift — the virtio-pci modern transport as Linux's
// virtio_pci_modern driver uses it: capabilities, every common
// configuration register, feature negotiation, the status machine and
// reset, notifications, interrupts (MSI-X and INTx with ISR read-to-clear),
// a malformed chain breaking the device, the PCI_CFG window, and state.

import Testing
import PCI
import Virtio

final class RecordingPin: PCIInterruptPin {
    var level = false
    var changes = 0
    func setLevel(_ high: Bool) { level = high; changes += 1 }
}

final class RecordingMSI: MSIXDelivery {
    var delivered: [MSIMessage] = []
    func deliver(_ message: MSIMessage) { delivered.append(message) }
}

/// Offsets in the common configuration structure.
enum Common {
    static let deviceFeatureSelect = 0x00, deviceFeature = 0x04, driverFeatureSelect = 0x08, driverFeature = 0x0C
    static let msixConfig = 0x10, numQueues = 0x12, status = 0x14, generation = 0x15, queueSelect = 0x16
    static let queueSize = 0x18, queueVector = 0x1A, queueEnable = 0x1C, queueNotifyOff = 0x1E
    static let queueDesc = 0x20, queueDriver = 0x28, queueDevice = 0x30
}

/// The driver's side of the transport, through BAR 0.
struct TestDriver {
    let transport: VirtioPCIDevice

    func read(_ offset: Int, _ size: Int) -> UInt64 { transport.readBAR(0, offset: UInt64(offset), size: size) }
    func write(_ offset: Int, _ size: Int, _ value: UInt64) { transport.writeBAR(0, offset: UInt64(offset), size: size, value: value) }

    var deviceFeatures: UInt64 {
        write(Common.deviceFeatureSelect, 4, 0)
        let low = read(Common.deviceFeature, 4)
        write(Common.deviceFeatureSelect, 4, 1)
        return low | read(Common.deviceFeature, 4) << 32
    }

    /// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK; whether the device kept it.
    func negotiate(_ features: UInt64) -> Bool {
        write(Common.status, 1, 1)
        write(Common.status, 1, 3)
        write(Common.driverFeatureSelect, 4, 0)
        write(Common.driverFeature, 4, features & 0xFFFF_FFFF)
        write(Common.driverFeatureSelect, 4, 1)
        write(Common.driverFeature, 4, features >> 32)
        write(Common.status, 1, 0xB)
        return read(Common.status, 1) & 8 != 0
    }

    func setUpQueue(_ index: Int, _ ring: TestRing, vector: UInt16 = 0xFFFF) {
        write(Common.queueSelect, 2, UInt64(index))
        write(Common.queueSize, 2, UInt64(ring.size))
        write(Common.queueVector, 2, UInt64(vector))
        write(Common.queueDesc, 4, ring.descriptorTable & 0xFFFF_FFFF)
        write(Common.queueDesc + 4, 4, ring.descriptorTable >> 32)
        write(Common.queueDriver, 8, ring.availableRing)
        write(Common.queueDevice, 4, ring.usedRing)
        write(Common.queueDevice + 4, 4, 0)
        write(Common.queueEnable, 2, 1)
    }

    func driverOK() { write(Common.status, 1, 0xF) }

    /// The whole start-up with the standard features and queue 0 on `ring`;
    /// whether FEATURES_OK held.
    func start(_ ring: TestRing, vector: UInt16 = 0xFFFF) -> Bool {
        let accepted = negotiate(standardFeatures)
        setUpQueue(0, ring, vector: vector)
        driverOK()
        return accepted
    }
    func notify(_ queue: Int) { write(0x3000 + 4 * queue, 2, UInt64(queue)) }
    var status: UInt8 { UInt8(read(Common.status, 1)) }
}

let standardFeatures = VirtioFeature.version1 | VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors | 1

@Suite struct VirtioPCIDeviceTests {
    let memory = InMemoryGuestMemory(size: 0x10_0000)

    func make(queues: [UInt16] = [8, 8]) throws -> (VirtioPCIDevice, EchoDevice, TestDriver) {
        let device = EchoDevice(queueMaxSizes: queues)
        let transport = try VirtioPCIDevice(device: device, memory: memory)
        return (transport, device, TestDriver(transport: transport))
    }

    /// A request on queue 0: "abc" readable, 8 bytes writable.
    func postRequest(_ ring: TestRing) throws {
        try memory.write(Array("abc".utf8), at: 0x8_0000)
        try ring.setDescriptor(0, address: 0x8_0000, length: 3, flags: TestRing.next, next: 1)
        try ring.setDescriptor(1, address: 0x8_1000, length: 8, flags: TestRing.write)
        try ring.makeAvailable(0)
    }

    @Test func functionIdentityAndCapabilities() throws {
        let (transport, _, _) = try make()
        let config = transport.configSpace
        #expect(config.read(offset: 0, size: 4) == 0x1043_1AF4)
        #expect(config.read(offset: 8, size: 1) == 1)
        #expect(config.read(offset: 9, size: 4) & 0xFF_FFFF == 0x07_8000)
        #expect(config.read(offset: 0x2C, size: 4) == 0x1100_1AF4)
        #expect(config.read(offset: 0x3D, size: 1) == 1)
        let capabilities = config.capabilities
        #expect(capabilities.map(\.id) == [0x11, 0x09, 0x09, 0x09, 0x09, 0x09])
        let virtio = capabilities.filter { $0.id == 0x09 }.map { cap in
            (type: config.byte(cap.offset + 3), bar: config.byte(cap.offset + 4),
             offset: config.dword(cap.offset + 8), length: config.dword(cap.offset + 12), capLength: config.byte(cap.offset + 2))
        }
        #expect(virtio.map(\.type) == [1, 2, 3, 4, 5])
        #expect(virtio.map(\.offset) == [0, 0x3000, 0x1000, 0x2000, 0])
        #expect(virtio.map(\.capLength) == [16, 20, 16, 16, 20])
        #expect(virtio.allSatisfy { $0.bar == 0 })
        let notify = capabilities[2].offset
        #expect(config.dword(notify + 16) == 4) // notify_off_multiplier
        // BAR 0: 64-bit, 32 KiB.
        config.write(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
        config.write(offset: 0x14, size: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x10, size: 4) == 0xFFFF_8004 && config.read(offset: 0x14, size: 4) == 0xFFFF_FFFF)
        #expect(transport.msix.vectorCount == 3)
    }

    @Test func reachableThroughTheBusAtTheBARItWasGiven() throws {
        let (transport, _, _) = try make()
        let bus = PCIBus(windows: PCIWindows(mmio32: 0xC000_0000...0xFEBF_FFFF))
        let slot = try bus.register(transport)
        let base = try #require(transport.configSpace.barAddress(0))
        #expect(base == 0xC000_0000)
        #expect(bus.readMemory(address: base + 0x12, size: 2) == 2) // num_queues
        #expect(bus.readECAM(offset: UInt64(slot) << 15, size: 4) == 0x1043_1AF4)
    }

    @Test func featureRegistersSelectHalves() throws {
        let (_, _, driver) = try make()
        #expect(driver.deviceFeatures == standardFeatures)
        driver.write(Common.deviceFeatureSelect, 4, 2)
        #expect(driver.read(Common.deviceFeature, 4) == 0)
        #expect(driver.read(Common.deviceFeatureSelect, 4) == 2)
        driver.write(Common.driverFeatureSelect, 4, 1)
        driver.write(Common.driverFeature, 4, 1)
        #expect(driver.read(Common.driverFeature, 4) == 1)
        driver.write(Common.driverFeatureSelect, 4, 0)
        #expect(driver.read(Common.driverFeature, 4) == 0)
        driver.write(Common.deviceFeature, 4, 0) // read-only
        driver.write(Common.deviceFeatureSelect, 4, 0)
        #expect(driver.read(Common.deviceFeature, 4) == standardFeatures & 0xFFFF_FFFF)
    }

    @Test func featuresOKIsRefusedForUnofferedFeaturesOrWithoutVersion1() throws {
        let (transport, _, driver) = try make()
        #expect(!driver.negotiate(VirtioFeature.version1 | 1 << 40))
        #expect(transport.negotiatedFeatures == 0)
        driver.write(Common.status, 1, 0)
        #expect(!driver.negotiate(1))
        driver.write(Common.status, 1, 0)
        #expect(driver.negotiate(standardFeatures))
        #expect(transport.negotiatedFeatures == standardFeatures)
        // Once FEATURES_OK is in, the driver's features are fixed.
        driver.write(Common.driverFeatureSelect, 4, 0)
        driver.write(Common.driverFeature, 4, 0)
        #expect(transport.negotiatedFeatures == standardFeatures)
    }

    @Test func queueRegistersFollowQueueSelect() throws {
        let (_, _, driver) = try make(queues: [8, 4])
        #expect(driver.read(Common.numQueues, 2) == 2)
        driver.write(Common.queueSelect, 2, 1)
        #expect(driver.read(Common.queueSize, 2) == 4)
        #expect(driver.read(Common.queueNotifyOff, 2) == 1)
        #expect(driver.read(Common.queueVector, 2) == 0xFFFF)
        driver.write(Common.queueVector, 2, 2)
        #expect(driver.read(Common.queueVector, 2) == 2)
        driver.write(Common.queueVector, 2, 3) // past the 3-entry table
        #expect(driver.read(Common.queueVector, 2) == 0xFFFF)
        driver.write(Common.msixConfig, 2, 0)
        #expect(driver.read(Common.msixConfig, 2) == 0)
        driver.write(Common.queueDesc, 8, 0x1234_5678_9ABC_DEF0)
        #expect(driver.read(Common.queueDesc, 8) == 0x1234_5678_9ABC_DEF0)
        driver.write(Common.queueDesc + 4, 4, 0x1)
        #expect(driver.read(Common.queueDesc, 4) == 0x9ABC_DEF0 && driver.read(Common.queueDesc + 4, 4) == 1)
        driver.write(Common.queueDesc, 2, 0) // wrong width: ignored
        #expect(driver.read(Common.queueDesc, 4) == 0x9ABC_DEF0)
        driver.write(Common.queueSelect, 2, 2) // no such queue: zeros, writes ignored
        #expect(driver.read(Common.queueSize, 2) == 0 && driver.read(Common.queueNotifyOff, 2) == 0)
        driver.write(Common.queueSize, 2, 2)
        #expect(driver.read(Common.queueSize, 2) == 0)
        #expect(driver.read(0x40, 4) == 0) // past the structure
    }

    @Test func enabledQueueIsCheckedAndThenFrozen() throws {
        let (transport, _, driver) = try make()
        let ring = TestRing(memory: memory, size: 8)
        driver.setUpQueue(0, ring)
        #expect(driver.read(Common.queueEnable, 2) == 1)
        driver.write(Common.queueSize, 2, 4)
        driver.write(Common.queueDesc, 8, 0)
        #expect(driver.read(Common.queueSize, 2) == 8 && driver.read(Common.queueDesc, 8) == ring.descriptorTable)
        driver.write(Common.queueEnable, 2, 0) // no effect: reset is how a queue stops
        #expect(transport.queues[0].ready)
        #expect(driver.status & VirtioStatus.deviceNeedsReset == 0)

        driver.write(Common.queueSelect, 2, 1)
        driver.write(Common.queueSize, 2, 3)
        driver.write(Common.queueEnable, 2, 1)
        #expect(!transport.queues[1].ready)
        #expect(driver.status & VirtioStatus.deviceNeedsReset != 0)
        #expect(transport.brokenReason == .invalidSize(3))
    }

    @Test func requestIsServedAndSignalledThroughMSIX() throws {
        let (transport, device, driver) = try make()
        let msi = RecordingMSI()
        transport.msix.delivery = msi
        let ring = TestRing(memory: memory, size: 8)
        #expect(driver.start(ring, vector: 1))
        #expect(device.activations == [standardFeatures])
        // Enable MSI-X and program vector 1.
        transport.writeConfig(offset: transport.msix.capabilityOffset + 2, size: 2, value: UInt32(MSIXCapability.enableBit))
        driver.write(0x4000 + 16, 4, 0xFEE0_0000)
        driver.write(0x4000 + 24, 4, 0x45)
        driver.write(0x4000 + 28, 4, 0)

        try postRequest(ring)
        driver.notify(0)
        #expect(ring.usedIndex == 1)
        #expect(try ring.usedElement(0) == (id: 0, length: 3))
        #expect(try memory.read(at: 0x8_1000, count: 3) == Array("cba".utf8))
        #expect(msi.delivered == [MSIMessage(address: 0xFEE0_0000, data: 0x45)])
        #expect(transport.isr == 0)
        // Another notify with nothing new: no work, no interrupt.
        driver.notify(0)
        #expect(device.served == 1 && msi.delivered.count == 1)
        // Notifications for queues that do not exist or are not ready are ignored.
        driver.notify(1)
        driver.notify(7)
        driver.write(0x3002, 2, 0)
        #expect(driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func intxRaisesWithTheISRAndReadingClearsIt() throws {
        let (transport, _, driver) = try make()
        let pin = RecordingPin()
        transport.interruptPin = pin
        let ring = TestRing(memory: memory, size: 8)
        #expect(driver.start(ring))
        try postRequest(ring)
        driver.notify(0)
        #expect(pin.level && transport.isr == 1)
        #expect(transport.configSpace.word(6) & PCIStatus.interruptStatus != 0)
        #expect(driver.read(0x1000, 1) == 1)
        #expect(!pin.level && driver.read(0x1000, 1) == 0)
        #expect(transport.configSpace.word(6) & PCIStatus.interruptStatus == 0)
        // The command register's interrupt-disable bit holds the line low.
        transport.deviceConfigurationChanged()
        #expect(pin.level && transport.isr == 2)
        transport.writeConfig(offset: 4, size: 2, value: UInt32(PCICommand.memorySpace | PCICommand.interruptDisable))
        #expect(!pin.level)
        transport.writeConfig(offset: 4, size: 2, value: UInt32(PCICommand.memorySpace))
        #expect(pin.level)
    }

    @Test func statusOnlyGainsBitsAndZeroResetsEverything() throws {
        let (transport, device, driver) = try make()
        #expect(driver.negotiate(standardFeatures))
        driver.write(Common.status, 1, 1) // clearing DRIVER and FEATURES_OK is not possible
        #expect(driver.status == 0xB)
        driver.write(Common.status, 1, 0x4B) // nor setting NEEDS_RESET
        #expect(driver.status == 0xB)
        let ring = TestRing(memory: memory, size: 8)
        driver.setUpQueue(0, ring, vector: 0)
        driver.write(Common.msixConfig, 2, 1)
        driver.driverOK()
        driver.write(Common.status, 1, 0)
        #expect(driver.status == 0 && device.resets == 1)
        #expect(transport.negotiatedFeatures == 0 && driver.read(Common.driverFeature, 4) == 0)
        #expect(driver.read(Common.msixConfig, 2) == 0xFFFF)
        driver.write(Common.queueSelect, 2, 0)
        #expect(driver.read(Common.queueEnable, 2) == 0 && driver.read(Common.queueVector, 2) == 0xFFFF)
        #expect(driver.read(Common.queueDesc, 8) == 0 && driver.read(Common.queueSize, 2) == 8)
    }

    @Test func driverOKWithoutFeaturesOKBreaksTheDevice() throws {
        let (transport, device, driver) = try make()
        driver.write(Common.status, 1, 3)
        driver.write(Common.status, 1, 7)
        #expect(driver.status & VirtioStatus.deviceNeedsReset != 0)
        #expect(device.activations.isEmpty)
        #expect(transport.brokenReason != nil)
    }

    @Test func malformedChainMarksTheDeviceBrokenUntilReset() throws {
        let (transport, device, driver) = try make()
        let pin = RecordingPin()
        transport.interruptPin = pin
        let ring = TestRing(memory: memory, size: 8)
        #expect(driver.start(ring))
        try ring.setDescriptor(0, address: 0x8_0000, length: 4, flags: TestRing.next, next: 0) // a loop
        try ring.makeAvailable(0)
        driver.notify(0)
        #expect(driver.status & VirtioStatus.deviceNeedsReset != 0)
        #expect(transport.brokenReason == .chainTooLong(8))
        #expect(driver.read(0x1000, 1) == 2) // a configuration-change interrupt
        #expect(ring.usedIndex == 0)
        // Broken: no more processing.
        try postRequest(ring)
        driver.notify(0)
        #expect(device.served == 0)
        // The driver resets and starts over; the device works again.
        driver.write(Common.status, 1, 0)
        #expect(driver.status == 0 && transport.brokenReason == nil)
        let fresh = TestRing(memory: memory, size: 8, base: 0x4_0000)
        #expect(driver.start(fresh))
        try postRequest(fresh)
        driver.notify(0)
        #expect(fresh.usedIndex == 1 && device.served == 1)
    }

    @Test func deviceConfigurationReadsWritesAndGeneration() throws {
        let (transport, device, driver) = try make()
        #expect(driver.read(0x2000, 4) == 0x4433_2211)
        #expect(driver.read(0x2004, 4) == 0x6655)
        #expect(driver.read(0x2002, 1) == 0x33)
        driver.write(0x2001, 2, 0xBEEF)
        #expect(device.configWrites.count == 1 && device.configWrites[0].0 == 1 && device.configWrites[0].1 == [0xEF, 0xBE])
        let generation = driver.read(Common.generation, 1)
        transport.deviceConfigurationChanged()
        #expect(driver.read(Common.generation, 1) == (generation + 1) & 0xFF)
    }

    @Test func pciConfigCapabilityIsAWindowIntoTheBAR() throws {
        let (transport, _, _) = try make()
        let cap = try #require(transport.configSpace.capabilities.last).offset
        #expect(transport.configSpace.byte(cap + 3) == 5)
        transport.writeConfig(offset: cap + 4, size: 1, value: 0)
        transport.writeConfig(offset: cap + 8, size: 4, value: 0x12)   // num_queues
        transport.writeConfig(offset: cap + 12, size: 4, value: 2)
        #expect(transport.readConfig(offset: cap + 16, size: 4) == 2)
        transport.writeConfig(offset: cap + 8, size: 4, value: 0x16)   // queue_select
        transport.writeConfig(offset: cap + 16, size: 4, value: 1)
        #expect(transport.readBAR(0, offset: 0x16, size: 2) == 1)
        // An unaligned window does nothing.
        transport.writeConfig(offset: cap + 8, size: 4, value: 0x17)
        transport.writeConfig(offset: cap + 16, size: 4, value: 0)
        #expect(transport.readBAR(0, offset: 0x16, size: 2) == 1)
    }

    @Test func stateCarriesARunningQueueAcrossToANewTransport() throws {
        let (transport, _, driver) = try make()
        let ring = TestRing(memory: memory, size: 8)
        #expect(driver.start(ring))
        try postRequest(ring)
        driver.notify(0)
        let state = transport.exportState()
        #expect(state.queues[0].nextUsed == 1)

        let (restored, device, restoredDriver) = try make()
        try restored.configSpace.importState(transport.configSpace.exportState(), device: "t")
        try restored.importState(state)
        #expect(restored.exportState() == state)
        #expect(device.activations == [standardFeatures])
        try ring.makeAvailable(0)
        restoredDriver.notify(0)
        #expect(ring.usedIndex == 2 && device.served == 1)

        var bad = state
        bad.driverFeatures |= 1 << 50
        #expect(throws: PCIStateError.self) { try restored.importState(bad) }
        bad = state
        bad.driverFeatures = 1
        #expect(throws: PCIStateError.self) { try restored.importState(bad) }
        bad = state
        bad.queues.removeLast()
        #expect(throws: PCIStateError.self) { try restored.importState(bad) }
        bad = state
        bad.queues[0].usedRing = 0x20_0000
        #expect(throws: PCIStateError.self) { try restored.importState(bad) }
        bad = state
        bad.msixConfigVector = 9
        #expect(throws: PCIStateError.self) { try restored.importState(bad) }
        bad = state
        bad.status |= 0x10
        #expect(throws: PCIStateError.self) { try restored.importState(bad) }
        #expect(restored.exportState().queues[0].nextUsed == 2)
    }
}
