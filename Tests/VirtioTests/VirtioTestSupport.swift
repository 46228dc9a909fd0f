// VirtioTestSupport.swift — a driver's side of a split queue in test memory
// (descriptor table, available and used rings at fixed addresses) and a
// small device that echoes each chain's readable bytes back reversed.

import Virtio

/// The driver's view of one queue: writes descriptors and the available
/// ring, reads the used ring.
final class TestRing {
    let memory: InMemoryGuestMemory
    let size: UInt16
    let descriptorTable: UInt64
    let availableRing: UInt64
    let usedRing: UInt64
    private(set) var availableIndex: UInt16 = 0

    init(memory: InMemoryGuestMemory, size: UInt16, base: UInt64 = 0x1_0000) {
        self.memory = memory
        self.size = size
        descriptorTable = base
        availableRing = base + 16 * UInt64(size)
        usedRing = (availableRing + 6 + 2 * UInt64(size) + 0xFFF) & ~0xFFF
    }

    static let next: UInt16 = 1, write: UInt16 = 2, indirect: UInt16 = 4

    func setDescriptor(_ index: Int, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0, table: UInt64? = nil) throws {
        let at = (table ?? descriptorTable) + UInt64(index) * 16
        try memory.writeUInt64(address, at: at)
        try memory.writeUInt32(length, at: at + 8)
        try memory.writeUInt16(flags, at: at + 12)
        try memory.writeUInt16(next, at: at + 14)
    }

    func makeAvailable(_ head: UInt16) throws {
        try memory.writeUInt16(head, at: availableRing + 4 + 2 * UInt64(availableIndex % size))
        availableIndex &+= 1
        try memory.writeUInt16(availableIndex, at: availableRing + 2)
    }

    func setAvailableIndex(_ index: UInt16) throws {
        availableIndex = index
        try memory.writeUInt16(index, at: availableRing + 2)
    }

    func setAvailableFlags(_ flags: UInt16) throws { try memory.writeUInt16(flags, at: availableRing) }
    func setUsedEvent(_ index: UInt16) throws { try memory.writeUInt16(index, at: availableRing + 4 + 2 * UInt64(size)) }

    var usedIndex: UInt16 { (try? memory.readUInt16(at: usedRing + 2)) ?? 0xDEAD }
    var availableEvent: UInt16 { (try? memory.readUInt16(at: usedRing + 4 + 8 * UInt64(size))) ?? 0xDEAD }

    func usedElement(_ slot: Int) throws -> (id: UInt32, length: UInt32) {
        let at = usedRing + 4 + 8 * UInt64(slot % Int(size))
        return (try memory.readUInt32(at: at), try memory.readUInt32(at: at + 4))
    }

    /// A device-side queue programmed with this ring and made ready.
    func queue(eventIndex: Bool = false, indirect: Bool = true) throws -> SplitQueue {
        var queue = SplitQueue(maxSize: size)
        queue.descriptorTable = descriptorTable
        queue.availableRing = availableRing
        queue.usedRing = usedRing
        queue.eventIndex = eventIndex
        queue.indirectDescriptors = indirect
        try queue.validate(memory: memory)
        queue.ready = true
        queue.beginBatch()
        return queue
    }
}

/// A device type for transport tests: reverses each chain's readable bytes
/// into its writable buffers.
final class EchoDevice: VirtioDevice {
    let deviceType = VirtioDeviceType.console
    let pciClassCode: UInt32 = 0x07_8000
    let deviceFeatures: UInt64 = 1 << 0
    let queueMaxSizes: [UInt16]
    var configBytes: [UInt8] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66]
    var activations: [UInt64] = []
    var resets = 0
    var served = 0
    var configWrites: [(Int, [UInt8])] = []

    init(queueMaxSizes: [UInt16] = [8, 8]) { self.queueMaxSizes = queueMaxSizes }

    func writeConfig(offset: Int, bytes: [UInt8]) { configWrites.append((offset, bytes)) }
    func activate(features: UInt64) { activations.append(features) }
    func reset() { resets += 1 }

    func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        while let chain = try queue.popAvailable(memory: memory) {
            let input = try chain.readBytes(count: Int(chain.readableLength), memory: memory)
            let written = try chain.writeBytes(input.reversed(), memory: memory)
            try queue.pushUsed(head: chain.head, length: UInt32(written), memory: memory)
            served += 1
        }
    }
}
