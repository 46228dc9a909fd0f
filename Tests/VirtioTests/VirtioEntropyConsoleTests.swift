// VirtioEntropyConsoleTests.swift — the virtio-rng core (buffers filled from
// the source, bounded per request, a failing source answered with nothing)
// and the single-port virtio-console core (transmit to the output, input
// kept bounded until receive buffers come, the emergency write).

import Testing
import Virtio

@Suite struct VirtioEntropyConsoleTests {
    let memory = InMemoryGuestMemory(size: 0x40_0000)

    @Test func entropyFillsEachWritableBufferUpToTheBound() throws {
        var asked: [Int] = []
        let device = VirtioEntropyDevice { count in asked.append(count); return (0..<count).map { UInt8(truncatingIfNeeded: $0 &+ 7) } }
        let ring = TestRing(memory: memory, size: 4)
        try ring.setDescriptor(0, address: 0x10_0000, length: 16, flags: TestRing.next | TestRing.write, next: 1)
        try ring.setDescriptor(1, address: 0x11_0000, length: 48, flags: TestRing.write)
        try ring.setDescriptor(2, address: 0x20_0000, length: 0x10_0000, flags: TestRing.write)
        try ring.makeAvailable(0)
        try ring.makeAvailable(2)
        var queue = try ring.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(ring.usedIndex == 2)
        #expect(try ring.usedElement(0).length == 64)
        #expect(try ring.usedElement(1).length == UInt32(VirtioEntropyDevice.maximumBytesPerRequest))
        #expect(asked == [64, VirtioEntropyDevice.maximumBytesPerRequest])
        #expect(try memory.read(at: 0x11_0000, count: 2) == [23, 24])   // bytes 16 and 17 of the stream
        #expect(device.bytesGiven == 64 + UInt64(VirtioEntropyDevice.maximumBytesPerRequest))
    }

    @Test func aFailingSourceAnswersNothing() throws {
        let device = VirtioEntropyDevice { _ in nil }
        let ring = TestRing(memory: memory, size: 4)
        try ring.setDescriptor(0, address: 0x10_0000, length: 32, flags: TestRing.write)
        try ring.makeAvailable(0)
        var queue = try ring.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(try ring.usedIndex == 1 && ring.usedElement(0).length == 0)
    }

    @Test func consoleTransmitsToTheOutputAndReceivesWhenBuffersCome() throws {
        var out: [UInt8] = []
        let device = VirtioConsoleDevice { out += $0 }
        #expect(device.configBytes.count == 12)
        // Transmit: a line across two descriptors.
        let tx = TestRing(memory: memory, size: 4, base: 0x1_0000)
        try memory.write(Array("hel".utf8), at: 0x10_0000)
        try memory.write(Array("lo\n".utf8), at: 0x10_1000)
        try tx.setDescriptor(0, address: 0x10_0000, length: 3, flags: TestRing.next, next: 1)
        try tx.setDescriptor(1, address: 0x10_1000, length: 3)
        try tx.makeAvailable(0)
        var txQueue = try tx.queue()
        try device.processQueue(VirtioConsoleDevice.transmitQueue, queue: &txQueue, memory: memory)
        #expect(out == Array("hello\n".utf8))
        // Receive: input before any buffer waits; two small buffers take it in order.
        device.receive(Array("abcde".utf8))
        let rx = TestRing(memory: memory, size: 4, base: 0x3_0000)
        var rxQueue = try rx.queue()
        try device.processQueue(VirtioConsoleDevice.receiveQueue, queue: &rxQueue, memory: memory)
        #expect(rx.usedIndex == 0 && device.pendingInputBytes == 5)
        try rx.setDescriptor(0, address: 0x20_0000, length: 3, flags: TestRing.write)
        try rx.setDescriptor(1, address: 0x20_1000, length: 8, flags: TestRing.write)
        try rx.makeAvailable(0)
        try rx.makeAvailable(1)
        try device.processQueue(VirtioConsoleDevice.receiveQueue, queue: &rxQueue, memory: memory)
        #expect(rx.usedIndex == 2 && device.pendingInputBytes == 0)
        #expect(try memory.read(at: 0x20_0000, count: 3) == Array("abc".utf8))
        #expect(try memory.read(at: 0x20_1000, count: 2) == Array("de".utf8))
        #expect(try rx.usedElement(1).length == 2)
        // The emergency write.
        device.writeConfig(offset: 8, bytes: [0x21])
        #expect(out.last == 0x21)
    }

    @Test func consoleInputIsBounded() {
        let device = VirtioConsoleDevice { _ in }
        for _ in 0..<5 { device.receive([UInt8](repeating: 0x41, count: VirtioConsoleDevice.inputLimit / 2)) }
        #expect(device.pendingInputBytes == VirtioConsoleDevice.inputLimit)
        #expect(device.droppedInputBytes == UInt64(VirtioConsoleDevice.inputLimit / 2 * 3))
        device.reset()
        #expect(device.pendingInputBytes == 0)
    }
}
