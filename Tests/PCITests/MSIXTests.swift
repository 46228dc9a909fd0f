// MSIXTests.swift — the MSI-X capability: its configuration bytes, the table
// and PBA as the guest reads and writes them, masking and pending delivery.

import Testing
import PCI

final class RecordingDelivery: MSIXDelivery {
    var delivered: [MSIMessage] = []
    var changed: [Int] = []
    func deliver(_ message: MSIMessage) { delivered.append(message) }
    func vectorChanged(_ vector: Int) { changed.append(vector) }
}

@Suite struct MSIXTests {
    func make(vectors: Int = 3) throws -> (PCIConfigSpace, MSIXCapability, RecordingDelivery) {
        let config = PCIConfigSpace(identity: testIdentity)
        try config.defineBAR(1, PCIBarDefinition(kind: .memory32, size: 0x2000))
        let msix = try MSIXCapability(config: config, vectorCount: vectors, tableBAR: 1, tableOffset: 0, pbaBAR: 1, pbaOffset: 0x1000)
        let delivery = RecordingDelivery()
        msix.delivery = delivery
        return (config, msix, delivery)
    }

    func programVector(_ msix: MSIXCapability, _ vector: Int, address: UInt64, data: UInt32) {
        let base = UInt64(vector * 16)
        msix.writeTable(offset: base, size: 4, value: address & 0xFFFF_FFFF)
        msix.writeTable(offset: base + 4, size: 4, value: address >> 32)
        msix.writeTable(offset: base + 8, size: 4, value: UInt64(data))
    }

    func setControl(_ config: PCIConfigSpace, _ msix: MSIXCapability, _ value: UInt16) {
        config.write(offset: msix.capabilityOffset + 2, size: 2, value: UInt32(value))
        msix.configurationWritten()
    }

    @Test func capabilityBytesDescribeTableAndPBA() throws {
        let (config, msix, _) = try make(vectors: 3)
        let offset = msix.capabilityOffset
        #expect(config.capabilities.map(\.id) == [0x11])
        #expect(config.read(offset: offset, size: 4) == 0x0002_0011)       // table size − 1 = 2
        #expect(config.read(offset: offset + 4, size: 4) == 0x0000_0001)   // table at BAR 1 + 0
        #expect(config.read(offset: offset + 8, size: 4) == 0x0000_1001)   // PBA at BAR 1 + 0x1000
        config.write(offset: offset, size: 4, value: 0xFFFF_FFFF)
        config.write(offset: offset + 4, size: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: offset, size: 4) == 0xC002_0011)       // only enable and function mask change
        #expect(config.read(offset: offset + 4, size: 4) == 1)
        #expect(msix.isEnabled && msix.isFunctionMasked)
    }

    @Test func tableEntriesReadBackWithReservedBitsZero() throws {
        let (_, msix, delivery) = try make()
        #expect(msix.readTable(offset: 12, size: 4) == 1) // masked at reset
        programVector(msix, 1, address: 0x1_FEE0_1003, data: 0x4041)
        #expect(msix.readTable(offset: 16, size: 8) == 0x1_FEE0_1000)
        #expect(msix.readTable(offset: 24, size: 4) == 0x4041)
        msix.writeTable(offset: 28, size: 4, value: 0xFFFF_FFFE)
        #expect(msix.readTable(offset: 28, size: 4) == 0)
        msix.writeTable(offset: 28, size: 4, value: 1)
        #expect(msix.readTable(offset: 28, size: 2) == 1)
        #expect(msix.readTable(offset: 48, size: 4) == 0) // past the table
        #expect(Set(delivery.changed) == [1])
    }

    @Test func unmaskedVectorIsDeliveredAtOnce() throws {
        let (config, msix, delivery) = try make()
        #expect(!msix.signal(0)) // MSI-X disabled: the caller uses INTx
        programVector(msix, 0, address: 0xFEE0_0000, data: 0x31)
        msix.writeTable(offset: 12, size: 4, value: 0)
        setControl(config, msix, MSIXCapability.enableBit)
        #expect(msix.signal(0))
        #expect(delivery.delivered == [MSIMessage(address: 0xFEE0_0000, data: 0x31)])
        #expect(!msix.signal(3))
    }

    @Test func maskedVectorBecomesPendingAndIsDeliveredOnUnmask() throws {
        let (config, msix, delivery) = try make()
        programVector(msix, 2, address: 0xFEE0_0000, data: 0x52)
        setControl(config, msix, MSIXCapability.enableBit)
        #expect(msix.signal(2))
        #expect(delivery.delivered.isEmpty && msix.isPending(2))
        #expect(msix.readPBA(offset: 0, size: 8) == 0b100)
        #expect(msix.readPBA(offset: 8, size: 8) == 0 && msix.readPBA(offset: UInt64.max, size: 8) == 0)
        msix.writeTable(offset: 2 * 16 + 12, size: 4, value: 0)
        #expect(delivery.delivered == [MSIMessage(address: 0xFEE0_0000, data: 0x52)])
        #expect(!msix.isPending(2) && msix.readPBA(offset: 0, size: 8) == 0)
    }

    @Test func functionMaskHoldsEveryVectorUntilCleared() throws {
        let (config, msix, delivery) = try make()
        programVector(msix, 0, address: 0xFEE0_0000, data: 1)
        programVector(msix, 1, address: 0xFEE0_0000, data: 2)
        msix.writeTable(offset: 12, size: 4, value: 0)
        msix.writeTable(offset: 28, size: 4, value: 0)
        setControl(config, msix, MSIXCapability.enableBit | MSIXCapability.functionMaskBit)
        msix.signal(1)
        msix.signal(0)
        #expect(delivery.delivered.isEmpty && msix.readPBA(offset: 0, size: 1) == 0b11)
        delivery.changed.removeAll()
        setControl(config, msix, MSIXCapability.enableBit)
        #expect(delivery.delivered.map(\.data) == [1, 2])
        #expect(delivery.changed == [0, 1, 2])
    }

    @Test func invalidLayoutsAreRefused() {
        let config = PCIConfigSpace(identity: testIdentity)
        #expect(throws: PCIError.self) { try MSIXCapability(config: config, vectorCount: 0, tableBAR: 0, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x800) }
        #expect(throws: PCIError.self) { try MSIXCapability(config: config, vectorCount: 4, tableBAR: 0, tableOffset: 4, pbaBAR: 0, pbaOffset: 0x800) }
        #expect(throws: PCIError.self) { try MSIXCapability(config: config, vectorCount: 4, tableBAR: 6, tableOffset: 0, pbaBAR: 0, pbaOffset: 0x800) }
    }

    @Test func stateRoundTripsAndRefusesBadEntries() throws {
        let (config, msix, _) = try make()
        programVector(msix, 1, address: 0xFEE0_0000, data: 7)
        setControl(config, msix, MSIXCapability.enableBit)
        msix.signal(1)
        let state = msix.exportState()
        #expect(state.pending == [1])

        let (otherConfig, other, delivery) = try make()
        try otherConfig.importState(config.exportState(), device: "t")
        try other.importState(state, device: "t")
        #expect(other.exportState() == state && delivery.delivered.isEmpty)
        other.writeTable(offset: 28, size: 4, value: 0)
        #expect(delivery.delivered.map(\.data) == [7])

        var bad = state
        bad.entries[0].vectorControl = 2
        #expect(throws: PCIStateError.self) { try other.importState(bad, device: "t") }
        bad = state
        bad.pending = [3]
        #expect(throws: PCIStateError.self) { try other.importState(bad, device: "t") }
        bad = state
        bad.entries.removeLast()
        #expect(throws: PCIStateError.self) { try other.importState(bad, device: "t") }
    }
}
