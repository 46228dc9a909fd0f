// PCIConfigSpaceTests.swift — the configuration space as a guest and Linux's
// PCI core see it: identity, command/status masks, BAR sizing, capabilities,
// access widths, state checks.

import Testing
import PCI

let testIdentity = PCIIdentity(vendorID: 0x1AF4, deviceID: 0x1042, revision: 1, classCode: 0x01_8000,
                               subsystemVendorID: 0x1AF4, subsystemID: 0x1100, interruptPin: 1)

@Suite struct PCIConfigSpaceTests {
    @Test func identityReadsAndCannotBeWritten() {
        let config = PCIConfigSpace(identity: testIdentity)
        #expect(config.read(offset: 0, size: 4) == 0x1042_1AF4)
        #expect(config.read(offset: 8, size: 4) == 0x0180_0001)
        #expect(config.read(offset: 0x2C, size: 4) == 0x1100_1AF4)
        #expect(config.read(offset: 0x3D, size: 1) == 1)
        #expect(config.read(offset: 0x0E, size: 1) == 0) // type 0, single function
        config.write(offset: 0, size: 4, value: 0xFFFF_FFFF)
        config.write(offset: 8, size: 4, value: 0)
        config.write(offset: 0x3D, size: 1, value: 4)
        #expect(config.read(offset: 0, size: 4) == 0x1042_1AF4)
        #expect(config.read(offset: 8, size: 4) == 0x0180_0001)
        #expect(config.read(offset: 0x3D, size: 1) == 1)
    }

    @Test func commandKeepsOnlyWritableBits() {
        let config = PCIConfigSpace(identity: testIdentity)
        config.write(offset: PCIConfigRegister.command, size: 2, value: 0xFFFF)
        #expect(config.command == PCICommand.writable)
        #expect(config.memoryDecodeEnabled && config.ioDecodeEnabled && config.busMasterEnabled && config.interruptDisabled)
        config.write(offset: PCIConfigRegister.command, size: 2, value: 0)
        #expect(config.command == 0)
    }

    @Test func statusErrorBitsAreWriteOneToClearAndOthersReadOnly() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        try config.addCapability(id: 0x09, body: [0, 0])
        config.setWord(PCIConfigRegister.status, 0xF900 | PCIStatus.capabilityList | PCIStatus.interruptStatus)
        // Writing zero changes nothing; ones clear only the error bits written.
        config.write(offset: PCIConfigRegister.status, size: 2, value: 0)
        #expect(config.word(PCIConfigRegister.status) == 0xF918)
        config.write(offset: PCIConfigRegister.status, size: 2, value: 0x8118)
        #expect(config.word(PCIConfigRegister.status) == 0x7818)
        // A dword write to command also reaches status: command bits set, status bits cleared.
        config.write(offset: PCIConfigRegister.command, size: 4, value: 0xFFFF_0006)
        #expect(config.read(offset: 4, size: 4) == 0x0018_0006)
    }

    @Test func memory32BarSizingAnswersAsHardware() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        try config.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 0x4000))
        config.write(offset: 0x10, size: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x10, size: 4) == 0xFFFF_C000)
        config.write(offset: 0x10, size: 4, value: 0xC000_1234)
        #expect(config.read(offset: 0x10, size: 4) == 0xC000_0000)
        #expect(config.barAddress(0) == 0xC000_0000)
    }

    @Test func prefetchable64BarSizingSpansTwoRegisters() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        try config.defineBAR(2, PCIBarDefinition(kind: .memory64, size: 0x2_0000_0000, prefetchable: true))
        #expect(config.read(offset: 0x18, size: 4) == 0xC)
        config.write(offset: 0x18, size: 4, value: 0xFFFF_FFFF)
        config.write(offset: 0x1C, size: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x18, size: 4) == 0x0000_000C)
        #expect(config.read(offset: 0x1C, size: 4) == 0xFFFF_FFFE)
        config.write(offset: 0x18, size: 4, value: 0)
        config.write(offset: 0x1C, size: 4, value: 0x4)
        #expect(config.barAddress(2) == 0x4_0000_0000)
        #expect(config.isUpperHalfOf64BitBAR(3))
        #expect(throws: PCIError.barOccupied(3)) { try config.defineBAR(3, PCIBarDefinition(kind: .memory32, size: 16)) }
    }

    @Test func ioBarSizingKeepsSixteenBitPorts() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        try config.defineBAR(1, PCIBarDefinition(kind: .io, size: 0x20))
        config.write(offset: 0x14, size: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x14, size: 4) == 0x0000_FFE1)
        config.write(offset: 0x14, size: 4, value: 0xC040)
        #expect(config.barAddress(1) == 0xC040)
    }

    @Test func undefinedBarsAndROMReadZeroAndIgnoreWrites() {
        let config = PCIConfigSpace(identity: testIdentity)
        for offset in stride(from: 0x10, through: 0x30, by: 4) where offset < 0x28 || offset == 0x30 {
            config.write(offset: offset, size: 4, value: 0xFFFF_FFFF)
            #expect(config.read(offset: offset, size: 4) == 0)
        }
    }

    @Test func badBarDefinitionsAreRefused() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        #expect(throws: PCIError.barIndexOutOfRange(5)) { try config.defineBAR(5, PCIBarDefinition(kind: .memory64, size: 0x1000)) }
        #expect(throws: PCIError.barIndexOutOfRange(6)) { try config.defineBAR(6, PCIBarDefinition(kind: .memory32, size: 0x1000)) }
        #expect(throws: PCIError.barSizeInvalid(0, 0x1800)) { try config.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 0x1800)) }
        #expect(throws: PCIError.barSizeInvalid(0, 8)) { try config.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 8)) }
        #expect(throws: PCIError.barSizeInvalid(0, 512)) { try config.defineBAR(0, PCIBarDefinition(kind: .io, size: 512)) }
        try config.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 0x1000))
        #expect(throws: PCIError.barOccupied(0)) { try config.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 0x1000)) }
    }

    @Test func capabilityListIsLinkedFromThe0x34Pointer() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        #expect(config.word(PCIConfigRegister.status) & PCIStatus.capabilityList == 0)
        let first = try config.addCapability(id: 0x09, body: [14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
        let second = try config.addCapability(id: 0x11, body: [0, 0, 1, 0, 0, 0, 2, 0, 0, 0], writableBody: [0, 0xC0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(first == 0x40 && second == 0x50)
        #expect(config.read(offset: 0x34, size: 1) == 0x40)
        #expect(config.read(offset: 0x40, size: 2) == 0x5009)
        #expect(config.read(offset: 0x50, size: 2) == 0x0011)
        #expect(config.word(PCIConfigRegister.status) & PCIStatus.capabilityList != 0)
        #expect(config.capabilities.map(\.id) == [0x09, 0x11])
        // Only the declared bits of a capability are writable.
        config.write(offset: 0x50, size: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x50, size: 4) == 0xC000_0011)
        #expect(throws: PCIError.self) { try config.addCapability(id: 0x09, body: Array(repeating: 0, count: 200)) }
    }

    @Test func unalignedAndWideAccessesAreBytewiseAndClippedAtTheEnd() {
        let config = PCIConfigSpace(identity: testIdentity)
        #expect(config.read(offset: 1, size: 2) == 0x421A)
        #expect(config.read(offset: 3, size: 4) == 0x0000_0010)
        #expect(config.read(offset: 0xFFE, size: 4) == 0)
        config.setWord(0xFFE, 0xABCD)
        #expect(config.read(offset: 0xFFE, size: 4) == 0xABCD)
        #expect(config.read(offset: 0x3C, size: 3) == config.read(offset: 0x3C, size: 4)) // odd sizes count as 4
        config.write(offset: 0x3B, size: 2, value: 0x5A00) // the byte at 0x3C is the writable interrupt line
        #expect(config.read(offset: 0x3C, size: 1) == 0x5A)
    }

    @Test func stateRoundTripsAndForeignStatesAreRefused() throws {
        let config = PCIConfigSpace(identity: testIdentity)
        try config.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 0x1000))
        config.write(offset: 0x10, size: 4, value: 0xD000_0000)
        config.write(offset: 4, size: 2, value: 6)
        config.setInterruptStatus(true)
        let state = config.exportState()

        let restored = PCIConfigSpace(identity: testIdentity)
        try restored.defineBAR(0, PCIBarDefinition(kind: .memory32, size: 0x1000))
        try restored.importState(state, device: "test")
        #expect(restored.exportState() == state)
        #expect(restored.barAddress(0) == 0xD000_0000 && restored.command == 6)

        var foreign = state
        foreign.bytes[2] = 0x41 // another device ID
        #expect(throws: PCIStateError.self) { try restored.importState(foreign, device: "test") }
        var misaligned = state
        misaligned.bytes[0x11] = 0x08 // below the BAR's size
        #expect(throws: PCIStateError.self) { try restored.importState(misaligned, device: "test") }
        #expect(throws: PCIStateError.self) { try restored.importState(.init(bytes: [1, 2]), device: "test") }
        #expect(restored.exportState() == state)
    }
}
