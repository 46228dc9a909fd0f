// SplitQueueTests.swift — one split virtqueue: checks when enabled, popping
// chains (direct, indirect, readable-before-writable), every rule a chain can
// break, the used ring, and the interrupt decision with and without EVENT_IDX.

import Testing
import Virtio

@Suite struct SplitQueueTests {
    let memory = InMemoryGuestMemory(size: 0x10_0000)

    @Test func enablingChecksSizeAlignmentRAMAndOverlap() throws {
        let ring = TestRing(memory: memory, size: 8)
        var queue = SplitQueue(maxSize: 8)
        queue.descriptorTable = ring.descriptorTable
        queue.availableRing = ring.availableRing
        queue.usedRing = ring.usedRing
        try queue.validate(memory: memory)
        for size: UInt16 in [0, 3, 16] {
            var bad = queue
            bad.size = size
            #expect(throws: VirtqueueError.invalidSize(size)) { try bad.validate(memory: memory) }
        }
        var bad = queue
        bad.descriptorTable += 8
        #expect(throws: VirtqueueError.misalignedRing("descriptor table", ring.descriptorTable + 8)) { try bad.validate(memory: memory) }
        bad = queue
        bad.usedRing += 2
        #expect(throws: VirtqueueError.self) { try bad.validate(memory: memory) }
        bad = queue
        bad.usedRing = 0x10_0000 - 32
        #expect(throws: VirtqueueError.ringOutsideMemory("used ring", 0x10_0000 - 32, 70)) { try bad.validate(memory: memory) }
        bad = queue
        bad.usedRing = ring.availableRing + 4
        #expect(throws: VirtqueueError.ringsOverlap) { try bad.validate(memory: memory) }
        bad = queue
        bad.usedRing = ring.descriptorTable
        #expect(throws: VirtqueueError.ringsOverlap) { try bad.validate(memory: memory) }
    }

    @Test func popsADirectChainReadableThenWritable() throws {
        let ring = TestRing(memory: memory, size: 8)
        try ring.setDescriptor(3, address: 0x8_0000, length: 16, flags: TestRing.next, next: 5)
        try ring.setDescriptor(5, address: 0x8_1000, length: 32, flags: TestRing.next | TestRing.write, next: 0)
        try ring.setDescriptor(0, address: 0x8_2000, length: 1, flags: TestRing.write)
        try ring.makeAvailable(3)
        var queue = try ring.queue()
        let chain = try #require(try queue.popAvailable(memory: memory))
        #expect(chain.head == 3)
        #expect(chain.readable == [VirtqueueBuffer(address: 0x8_0000, length: 16)])
        #expect(chain.writable == [VirtqueueBuffer(address: 0x8_1000, length: 32), VirtqueueBuffer(address: 0x8_2000, length: 1)])
        #expect(chain.readableLength == 16 && chain.writableLength == 33)
        #expect(try queue.popAvailable(memory: memory) == nil)
        #expect(queue.nextAvailable == 1)
    }

    @Test func peekingLooksAheadWithoutConsuming() throws {
        let ring = TestRing(memory: memory, size: 8)
        try ring.setDescriptor(0, address: 0x8_0000, length: 100, flags: TestRing.write)
        try ring.setDescriptor(1, address: 0x8_1000, length: 200, flags: TestRing.write)
        try ring.makeAvailable(0)
        try ring.makeAvailable(1)
        var queue = try ring.queue(eventIndex: true)
        #expect(try queue.peekAvailable(memory: memory)?.writableLength == 100)
        #expect(try queue.peekAvailable(ahead: 1, memory: memory)?.writableLength == 200)
        #expect(try queue.peekAvailable(ahead: 2, memory: memory) == nil)
        #expect(queue.nextAvailable == 0 && ring.availableEvent == 0 && queue.popsLeftInBatch == 8)
        #expect(try queue.popAvailable(memory: memory)?.writableLength == 100)
        #expect(try queue.peekAvailable(memory: memory)?.head == 1)
        // A jump past the queue size is refused when peeking too.
        try ring.setAvailableIndex(20)
        #expect(throws: VirtqueueError.availableIndexJump(available: 20, next: 1)) { try queue.peekAvailable(memory: memory) }
    }

    @Test func popsAnIndirectTable() throws {
        let ring = TestRing(memory: memory, size: 4)
        let table: UInt64 = 0x9_0000
        try ring.setDescriptor(0, address: 0x8_0000, length: 8, flags: TestRing.next, next: 2, table: table)
        try ring.setDescriptor(2, address: 0x8_0100, length: 8, flags: TestRing.next, next: 1, table: table)
        try ring.setDescriptor(1, address: 0x8_0200, length: 64, flags: TestRing.write, table: table)
        try ring.setDescriptor(2, address: table, length: 48, flags: TestRing.indirect | TestRing.write)
        try ring.makeAvailable(2)
        var queue = try ring.queue()
        let chain = try #require(try queue.popAvailable(memory: memory))
        #expect(chain.head == 2)
        #expect(chain.readable.map(\.address) == [0x8_0000, 0x8_0100] && chain.writable.map(\.address) == [0x8_0200])
    }

    /// Each broken rule, alone, on an otherwise valid queue.
    @Test(arguments: [
        "loop", "next past table", "head past table", "zero length", "outside RAM", "wraps", "readable after writable",
        "indirect not negotiated", "indirect with next", "nested indirect", "indirect length", "indirect outside RAM",
        "indirect loop", "avail jump",
    ])
    func malformedChainsAreErrors(_ rule: String) throws {
        let ring = TestRing(memory: memory, size: 4)
        let table: UInt64 = 0x9_0000
        var negotiated = true
        let expected: VirtqueueError
        switch rule {
        case "loop":
            try ring.setDescriptor(0, address: 0x8_0000, length: 4, flags: TestRing.next, next: 1)
            try ring.setDescriptor(1, address: 0x8_0000, length: 4, flags: TestRing.next, next: 0)
            expected = .chainTooLong(4)
        case "next past table":
            try ring.setDescriptor(0, address: 0x8_0000, length: 4, flags: TestRing.next, next: 4)
            expected = .nextOutOfRange(4, limit: 4)
        case "head past table":
            try ring.memory.writeUInt16(7, at: ring.availableRing + 4)
            try ring.setAvailableIndex(1)
            expected = .headOutOfRange(7)
        case "zero length":
            try ring.setDescriptor(0, address: 0x8_0000, length: 0)
            expected = .zeroLengthBuffer(0x8_0000)
        case "outside RAM":
            try ring.setDescriptor(0, address: 0x10_0000 - 8, length: 16)
            expected = .bufferOutsideMemory(0x10_0000 - 8, 16)
        case "wraps":
            try ring.setDescriptor(0, address: UInt64.max - 3, length: 16)
            expected = .bufferOutsideMemory(UInt64.max - 3, 16)
        case "readable after writable":
            try ring.setDescriptor(0, address: 0x8_0000, length: 4, flags: TestRing.next | TestRing.write, next: 1)
            try ring.setDescriptor(1, address: 0x8_0000, length: 4)
            expected = .readableAfterWritable
        case "indirect not negotiated":
            negotiated = false
            try ring.setDescriptor(0, address: table, length: 16, flags: TestRing.indirect)
            expected = .indirectNotNegotiated
        case "indirect with next":
            try ring.setDescriptor(0, address: table, length: 16, flags: TestRing.indirect | TestRing.next, next: 1)
            expected = .indirectWithNext
        case "nested indirect":
            try ring.setDescriptor(0, address: table + 0x100, length: 16, flags: TestRing.indirect, table: table)
            try ring.setDescriptor(0, address: table, length: 16, flags: TestRing.indirect)
            expected = .nestedIndirect
        case "indirect length":
            try ring.setDescriptor(0, address: table, length: 24, flags: TestRing.indirect)
            expected = .indirectTableLength(24)
        case "indirect outside RAM":
            try ring.setDescriptor(0, address: 0x10_0000 - 16, length: 32, flags: TestRing.indirect)
            expected = .bufferOutsideMemory(0x10_0000 - 16, 32)
        case "indirect loop":
            try ring.setDescriptor(0, address: 0x8_0000, length: 4, flags: TestRing.next, next: 1, table: table)
            try ring.setDescriptor(1, address: 0x8_0000, length: 4, flags: TestRing.next, next: 0, table: table)
            try ring.setDescriptor(0, address: table, length: 32, flags: TestRing.indirect)
            expected = .chainTooLong(2)
        default:
            try ring.setDescriptor(0, address: 0x8_0000, length: 4)
            try ring.setAvailableIndex(5)
            expected = .availableIndexJump(available: 5, next: 0)
        }
        if ring.availableIndex == 0 { try ring.makeAvailable(0) }
        var queue = try ring.queue(indirect: negotiated)
        #expect(throws: expected) { try queue.popAvailable(memory: memory) }
        #expect(queue.nextAvailable == 0)
    }

    @Test func aQueueMarkedReadyWithoutCheckingCannotTrapTheDevice() throws {
        var queue = SplitQueue(maxSize: 4)
        queue.size = 0
        queue.availableRing = UInt64.max - 1
        queue.ready = true
        #expect(try queue.popAvailable(memory: memory) == nil)
        #expect(throws: VirtqueueError.invalidSize(0)) { try queue.pushUsed(head: 0, length: 0, memory: memory) }
        queue.size = 4
        queue.usedRing = UInt64.max - 8
        #expect(try queue.popAvailable(memory: memory) == nil) // the index wrapped to 0 and reads 0: nothing new
        queue.availableRing = 0x10_0000 - 2
        #expect(throws: VirtqueueError.self) { try queue.popAvailable(memory: memory) }
        #expect(throws: VirtqueueError.self) { try queue.pushUsed(head: 0, length: 0, memory: memory) }
    }

    @Test func usedRingAndIndicesWrapAround() throws {
        let ring = TestRing(memory: memory, size: 2)
        try ring.setDescriptor(0, address: 0x8_0000, length: 4, flags: TestRing.write)
        var queue = try ring.queue()
        for round in 0..<5 {
            queue.beginBatch()
            try ring.makeAvailable(0)
            let chain = try #require(try queue.popAvailable(memory: memory))
            try queue.pushUsed(head: chain.head, length: UInt32(round), memory: memory)
            #expect(ring.usedIndex == UInt16(round + 1))
            #expect(try ring.usedElement(round) == (id: 0, length: UInt32(round)))
        }
    }

    @Test func batchesStopAtTheQueueSize() throws {
        let ring = TestRing(memory: memory, size: 2)
        try ring.setDescriptor(0, address: 0x8_0000, length: 4)
        try ring.setDescriptor(1, address: 0x8_0000, length: 4)
        var queue = try ring.queue()
        try ring.makeAvailable(0)
        try ring.makeAvailable(1)
        _ = try queue.popAvailable(memory: memory)
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        try ring.makeAvailable(0) // refilled while we serve
        _ = try queue.popAvailable(memory: memory)
        #expect(try queue.popAvailable(memory: memory) == nil)
        #expect(try queue.hasMoreAvailable(memory: memory))
        queue.beginBatch()
        #expect(try queue.popAvailable(memory: memory) != nil)
    }

    @Test func interruptUnlessNoInterruptFlag() throws {
        let ring = TestRing(memory: memory, size: 4)
        var queue = try ring.queue()
        #expect(try !queue.needsInterrupt(memory: memory)) // nothing pushed
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        #expect(try queue.needsInterrupt(memory: memory))
        #expect(try !queue.needsInterrupt(memory: memory)) // nothing new since
        try ring.setAvailableFlags(1)
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        #expect(try !queue.needsInterrupt(memory: memory))
    }

    @Test func eventIndexInterruptsWhenUsedEventIsPassed() throws {
        let ring = TestRing(memory: memory, size: 8)
        try ring.setDescriptor(0, address: 0x8_0000, length: 4)
        var queue = try ring.queue(eventIndex: true)
        try ring.setAvailableFlags(1) // ignored with EVENT_IDX
        try ring.setUsedEvent(2)      // interrupt when used idx passes 2, i.e. reaches 3
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        #expect(try queue.needsInterrupt(memory: memory)) // the first decision always interrupts
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        #expect(try !queue.needsInterrupt(memory: memory)) // used idx 2
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        #expect(try queue.needsInterrupt(memory: memory)) // 2 → 4 passes 3
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        #expect(try !queue.needsInterrupt(memory: memory)) // 5, event still 2
        // avail_event follows what we consumed.
        try ring.makeAvailable(0)
        try ring.makeAvailable(0)
        _ = try queue.popAvailable(memory: memory)
        _ = try queue.popAvailable(memory: memory)
        #expect(ring.availableEvent == 2)
    }

    @Test func chainsReadAndWriteAcrossBuffers() throws {
        let ring = TestRing(memory: memory, size: 4)
        try memory.write([1, 2, 3], at: 0x8_0000)
        try memory.write([4, 5], at: 0x8_0100)
        try ring.setDescriptor(0, address: 0x8_0000, length: 3, flags: TestRing.next, next: 1)
        try ring.setDescriptor(1, address: 0x8_0100, length: 2, flags: TestRing.next, next: 2)
        try ring.setDescriptor(2, address: 0x8_0200, length: 2, flags: TestRing.write | TestRing.next, next: 3)
        try ring.setDescriptor(3, address: 0x8_0300, length: 2, flags: TestRing.write)
        try ring.makeAvailable(0)
        var queue = try ring.queue()
        let chain = try #require(try queue.popAvailable(memory: memory))
        #expect(try chain.readBytes(count: 10, memory: memory) == [1, 2, 3, 4, 5])
        #expect(try chain.readBytes(from: 2, count: 2, memory: memory) == [3, 4])
        #expect(try chain.writeBytes([9, 8, 7, 6, 5], memory: memory) == 4)
        #expect(try memory.read(at: 0x8_0200, count: 2) == [9, 8] && memory.read(at: 0x8_0300, count: 2) == [7, 6])
        #expect(try chain.writeBytes([1], at: 3, memory: memory) == 1)
        #expect(try memory.read(at: 0x8_0301, count: 1) == [1])
    }

    @Test func stateRestoresIndicesAndRefusesRingsOutsideRAM() throws {
        let ring = TestRing(memory: memory, size: 4)
        try ring.setDescriptor(0, address: 0x8_0000, length: 4)
        var queue = try ring.queue()
        try ring.makeAvailable(0)
        _ = try queue.popAvailable(memory: memory)
        try queue.pushUsed(head: 0, length: 0, memory: memory)
        let state = queue.state
        let restored = try SplitQueue(maxSize: 4).restored(state, memory: memory)
        #expect(restored.state == state)
        var bad = state
        bad.usedRing = 0x20_0000
        #expect(throws: VirtqueueError.self) { try SplitQueue(maxSize: 4).restored(bad, memory: memory) }
        bad = state
        bad.size = 8
        #expect(throws: VirtqueueError.invalidSize(8)) { try SplitQueue(maxSize: 4).restored(bad, memory: memory) }
        bad.ready = false // a register value the driver has not enabled yet
        #expect(try SplitQueue(maxSize: 4).restored(bad, memory: memory).size == 8)
    }
}
