// VirtioNetTests.swift — the virtio-net core against an in-memory link:
// configuration and offered features, ARP-sized frames both ways, frames
// across descriptors, mergeable receive buffers, no receive buffers, drops
// (oversized, unfitting, refused), malformed chains, state, MAC parsing.

import Foundation
import PCI
import SeededRandom
import Testing
import Virtio

@Suite struct VirtioNetTests {
    typealias F = VirtioNetDevice.Feature
    let memory = InMemoryGuestMemory(size: 0x80_0000)
    static let mac = MACAddress(bytes: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56])!
    /// An ARP request: broadcast destination, our source, type 0x0806, 28 bytes.
    static let arp: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + mac.bytes + [0x08, 0x06]
        + (0..<28).map { UInt8($0 &* 3 &+ 1) }

    /// Receive ring at 0x1_0000, transmit ring at 0x2_0000 (8 slots each).
    let receiveRing: TestRing
    let transmitRing: TestRing

    init() {
        receiveRing = TestRing(memory: memory, size: 8, base: 0x1_0000)
        transmitRing = TestRing(memory: memory, size: 8, base: 0x2_0000)
    }

    /// Chains `descriptors` (address, length, writable) from slot `first` and
    /// makes the chain available.
    func addChain(_ ring: TestRing, at first: Int, _ descriptors: [(UInt64, UInt32, Bool)]) throws {
        for (offset, (address, length, writable)) in descriptors.enumerated() {
            let last = offset == descriptors.count - 1
            try ring.setDescriptor(first + offset, address: address, length: length,
                                   flags: (last ? 0 : TestRing.next) | (writable ? TestRing.write : 0), next: UInt16(first + offset + 1))
        }
        try ring.makeAvailable(UInt16(first))
    }

    func device(offloads: NetOffloads = [], capacity: Int = 256, features: UInt64 = F.mac | F.status)
        -> (VirtioNetDevice, InMemoryNetBackend) {
        let backend = InMemoryNetBackend(macAddress: Self.mac, offloads: offloads, capacity: capacity)
        let device = VirtioNetDevice(backend: backend, queueSize: 8)
        device.activate(features: features)
        return (device, backend)
    }

    func header(flags: UInt8 = 0, gsoType: UInt8 = 0, numBuffers: UInt16 = 0) -> [UInt8] {
        [flags, gsoType, 0, 0, 0, 0, 0, 0, 0, 0, UInt8(numBuffers & 0xFF), UInt8(numBuffers >> 8)]
    }

    @Test func configurationAndFeaturesFollowTheBackend() {
        let (plain, backend) = device()
        #expect(plain.deviceType.pciDeviceID == 0x1041 && plain.pciClassCode == 0x02_0000)
        #expect(plain.configBytes == Self.mac.bytes + [1, 0, 1, 0])
        #expect(plain.queueMaxSizes == [8, 8])
        let offloadBits = F.checksum | F.guestChecksum | F.hostTSO4 | F.guestTSO4 | F.hostTSO6 | F.guestTSO6
            | F.hostECN | F.guestECN | F.hostUFO | F.guestUFO
        #expect(plain.deviceFeatures == F.mac | F.status | F.mergeableReceiveBuffers)
        #expect(backend.receiveOffloads.isEmpty)

        let (all, _) = device(offloads: .all)
        #expect(all.deviceFeatures & offloadBits == offloadBits)
        let (checksumTSO4, _) = device(offloads: [.checksum, .tso4, .ecn])
        #expect(checksumTSO4.deviceFeatures & offloadBits == F.checksum | F.guestChecksum | F.hostTSO4 | F.guestTSO4 | F.hostECN | F.guestECN)
        // Dependencies: nothing without checksum offload, no ECN without TSO.
        #expect(VirtioNetDevice.offloadFeatures([.tso4, .tso6, .ufo]) == 0)
        #expect(VirtioNetDevice.offloadFeatures([.checksum, .ecn]) == F.checksum | F.guestChecksum)

        // The back end learns what the driver takes on receive, and forgets it at reset.
        let (offloading, link) = device(offloads: .all, features: F.guestChecksum | F.guestTSO6 | F.checksum)
        #expect(link.receiveOffloads == [.checksum, .tso6])
        offloading.reset()
        #expect(link.receiveOffloads.isEmpty && offloading.negotiatedFeatures == 0)
    }

    @Test func transmitsAnARPFrameSplitAcrossDescriptors() throws {
        let (device, backend) = device()
        try memory.write(header(), at: 0x10_0000)
        try memory.write(Self.arp, at: 0x10_0100)
        // Header 5 + 7, frame 20 + 22.
        try addChain(transmitRing, at: 0, [(0x10_0000, 5, false), (0x10_0005, 7, false),
                                           (0x10_0100, 20, false), (0x10_0114, 22, false)])
        var queue = try transmitRing.queue()
        try device.processQueue(1, queue: &queue, memory: memory)
        #expect(backend.sent == [NetFrame(header: [], frame: Self.arp)])
        #expect(transmitRing.usedIndex == 1)
        #expect(try transmitRing.usedElement(0) == (0, 0))
        #expect(device.counters.transmittedFrames == 1 && device.counters.transmittedBytes == 42)
    }

    @Test func transmitPassesTheHeaderToAnOffloadingBackend() throws {
        let (device, backend) = device(offloads: .all, features: F.checksum | F.hostTSO4)
        var written = header(flags: 1, gsoType: 1, numBuffers: 0x0505)
        written[2] = 54
        try memory.write(written + Self.arp, at: 0x10_0000)
        try addChain(transmitRing, at: 0, [(0x10_0000, 54, false)])
        var queue = try transmitRing.queue()
        try device.processQueue(1, queue: &queue, memory: memory)
        var expected = written
        expected[10] = 0
        expected[11] = 0
        #expect(backend.sent == [NetFrame(header: expected, frame: Self.arp)])
    }

    @Test func transmitDropsWhatCannotBeSent() throws {
        let (device, backend) = device()
        try memory.write(header(), at: 0x10_0000)
        // Over 64 KiB of frame: dropped without being read.
        try addChain(transmitRing, at: 0, [(0x10_0000, 12, false), (0x20_0000, UInt32(VirtioNetDevice.maximumFrameBytes + 1), false)])
        // Exactly 64 KiB: sent.
        try addChain(transmitRing, at: 2, [(0x10_0000, 12, false), (0x20_0000, UInt32(VirtioNetDevice.maximumFrameBytes), false)])
        // A header and no frame.
        try addChain(transmitRing, at: 4, [(0x10_0000, 12, false)])
        // A checksum request the back end cannot honour.
        try memory.write(header(flags: 1) + Self.arp, at: 0x30_0000)
        try addChain(transmitRing, at: 5, [(0x30_0000, 54, false)])
        var queue = try transmitRing.queue()
        try device.processQueue(1, queue: &queue, memory: memory)
        #expect(backend.sent.map(\.frame.count) == [VirtioNetDevice.maximumFrameBytes])
        #expect(device.counters.transmitDrops == 3 && device.counters.transmittedFrames == 1)
        #expect(transmitRing.usedIndex == 4)

        // A back end that refuses (a full TAP) counts a drop and the chain is still returned.
        backend.refusesSends = true
        try memory.write(header() + Self.arp, at: 0x30_0000)
        try addChain(transmitRing, at: 0, [(0x30_0000, 54, false)])
        try device.processQueue(1, queue: &queue, memory: memory)
        #expect(device.counters.transmitDrops == 4 && transmitRing.usedIndex == 5)
    }

    @Test func receivesAnARPFrameIntoOneBuffer() throws {
        let (device, backend) = device()
        try memory.write(Array(repeating: 0xEE, count: 1526), at: 0x40_0000)
        try addChain(receiveRing, at: 0, [(0x40_0000, 1526, true)])
        backend.deliver(NetFrame(frame: Self.arp))
        var queue = try receiveRing.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(receiveRing.usedIndex == 1)
        #expect(try receiveRing.usedElement(0) == (0, 54))
        #expect(try memory.read(at: 0x40_0000, count: 54) == header(numBuffers: 1) + Self.arp)
        #expect(try memory.read(at: 0x40_0036, count: 1) == [0xEE])
        #expect(device.counters.receivedFrames == 1 && device.counters.receivedBytes == 42)
        #expect(backend.waitingCount == 0)
    }

    @Test func receiveHeaderComesFromAnOffloadingBackend() throws {
        let (device, backend) = device(offloads: .all, features: F.guestChecksum)
        try addChain(receiveRing, at: 0, [(0x40_0000, 100, true)])
        backend.deliver(NetFrame(header: header(flags: 2), frame: Self.arp))
        var queue = try receiveRing.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(try memory.read(at: 0x40_0000, count: 12) == header(flags: 2, numBuffers: 1))
    }

    @Test func mergeableBuffersCarryAFrameAcrossChains() throws {
        let (device, backend) = device(features: F.mac | F.mergeableReceiveBuffers)
        let frame = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        for slot in 0..<4 {
            try addChain(receiveRing, at: slot, [(0x40_0000 + UInt64(slot) * 0x1000, 1024, true)])
        }
        backend.deliver(NetFrame(frame: frame))
        var queue = try receiveRing.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(receiveRing.usedIndex == 3)
        #expect(try (0..<3).map { try receiveRing.usedElement($0).length } == [1024, 1024, 3012 - 2048])
        let received = try memory.read(at: 0x40_0000, count: 1024) + memory.read(at: 0x40_1000, count: 1024)
            + memory.read(at: 0x40_2000, count: 3012 - 2048)
        #expect(Array(received.prefix(12)) == header(numBuffers: 3))
        #expect(received.dropFirst(12).elementsEqual(frame))

        // Not enough room left (one chain) for the next: it waits, nothing is taken.
        backend.deliver(NetFrame(frame: frame))
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(receiveRing.usedIndex == 3 && device.counters.receivedFrames == 1 && device.counters.receiveDrops == 0)
        for slot in 4..<6 {
            try addChain(receiveRing, at: slot, [(0x40_0000 + UInt64(slot) * 0x1000, 1024, true)])
        }
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(receiveRing.usedIndex == 6 && device.counters.receivedFrames == 2)
    }

    @Test func aFrameSplitAcrossDescriptorsOfOneChain() throws {
        let (device, backend) = device()
        try addChain(receiveRing, at: 0, [(0x40_0000, 12, true), (0x50_0000, 30, true), (0x60_0000, 1000, true)])
        backend.deliver(NetFrame(frame: Self.arp))
        var queue = try receiveRing.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(try receiveRing.usedElement(0).length == 54)
        #expect(try memory.read(at: 0x40_0000, count: 12) == header(numBuffers: 1))
        #expect(try memory.read(at: 0x50_0000, count: 30) + memory.read(at: 0x60_0000, count: 12) == Self.arp)
    }

    @Test func withoutReceiveBuffersFramesWaitInTheBoundedBackend() throws {
        let (device, backend) = device(capacity: 4)
        var queue = try receiveRing.queue()
        for index in 0..<10 { backend.deliver(NetFrame(frame: Self.arp + [UInt8(index)])) }
        try device.processQueue(0, queue: &queue, memory: memory)
        // One frame moved into the device to wait; the oldest were dropped by the full queue.
        #expect(backend.overflowDrops == 6 && backend.waitingCount == 3)
        #expect(receiveRing.usedIndex == 0 && device.counters.receiveDrops == 0)
        for slot in 0..<4 { try addChain(receiveRing, at: slot, [(0x40_0000 + UInt64(slot) * 0x1000, 100, true)]) }
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(receiveRing.usedIndex == 4 && device.counters.receivedFrames == 4)
        let lastBytes = try (0..<4).map { try memory.read(at: 0x40_0000 + UInt64($0) * 0x1000 + 54, count: 1)[0] }
        #expect(lastBytes == [6, 7, 8, 9])
    }

    @Test func aFrameThatFitsNoSingleChainIsDroppedWithoutMergeableBuffers() throws {
        let (device, backend) = device()
        try addChain(receiveRing, at: 0, [(0x40_0000, 60, true)])
        backend.deliver(NetFrame(frame: Array(repeating: 7, count: 100)))
        backend.deliver(NetFrame(frame: Array(repeating: 0xFF, count: VirtioNetDevice.maximumFrameBytes + 1)))
        backend.deliver(NetFrame(frame: Self.arp))
        var queue = try receiveRing.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(device.counters.receiveDrops == 2 && device.counters.receivedFrames == 1)
        #expect(receiveRing.usedIndex == 1)
        #expect(try receiveRing.usedElement(0).length == 54)
    }

    @Test func oneReceivePassHandlesABoundedNumberOfFrames() throws {
        let (device, backend) = device(capacity: 5000)
        for _ in 0..<2000 { backend.deliver(NetFrame(frame: Array(repeating: 1, count: VirtioNetDevice.maximumFrameBytes + 1))) }
        var queue = try receiveRing.queue()
        try device.processQueue(0, queue: &queue, memory: memory)
        #expect(device.counters.receiveDrops == UInt64(VirtioNetDevice.maximumFramesPerPass))
        #expect(backend.waitingCount == 2000 - VirtioNetDevice.maximumFramesPerPass)
    }

    /// Random frames into random receive buffers, mergeable or not: every
    /// frame arrives whole and in order or is counted as dropped.
    @Test(arguments: [false, true])
    func randomFramesArriveWholeOrAreCounted(mergeable: Bool) throws {
        var random = SeededGenerator(seed: mergeable ? 0x4E37 : 0x4E38)
        let (device, backend) = device(features: F.mac | (mergeable ? F.mergeableReceiveBuffers : 0))
        var queue = try receiveRing.queue()
        var sentFrames: [[UInt8]] = [], receivedFrames: [[UInt8]] = []
        var seen: UInt16 = 0, slot = 0
        var buffers: [UInt16: UInt64] = [:]
        var partial: [UInt8] = [], buffersLeft = 0
        for round in 0..<400 {
            let frame = (0..<Int.random(in: 1...4000, using: &random)).map { UInt8(truncatingIfNeeded: round &+ $0) }
            backend.deliver(NetFrame(frame: frame))
            sentFrames.append(frame)
            // Refill: every used buffer was read last round, so any slot not outstanding is free.
            while receiveRing.availableIndex &- queue.nextAvailable < 8 {
                let address = 0x40_0000 + UInt64(slot) * 0x2000
                try receiveRing.setDescriptor(slot, address: address, length: UInt32.random(in: 12...5000, using: &random), flags: TestRing.write)
                buffers[UInt16(slot)] = address
                try receiveRing.makeAvailable(UInt16(slot))
                slot = (slot + 1) % 8
            }
            queue.beginBatch()
            try device.processQueue(0, queue: &queue, memory: memory)
            while seen != receiveRing.usedIndex {
                let used = try receiveRing.usedElement(Int(seen))
                seen &+= 1
                let bytes = try memory.read(at: buffers[UInt16(used.id)] ?? 0, count: Int(used.length))
                if buffersLeft == 0 {
                    buffersLeft = mergeable ? Int(bytes[10]) | Int(bytes[11]) << 8 : 1
                    partial = Array(bytes.dropFirst(12))
                } else {
                    partial += bytes
                }
                buffersLeft -= 1
                if buffersLeft == 0 { receivedFrames.append(partial) }
            }
        }
        // What arrived is what was sent, in order, less the frames counted as dropped.
        #expect(UInt64(receivedFrames.count) == device.counters.receivedFrames)
        var remaining = sentFrames[...]
        let inOrder = receivedFrames.allSatisfy { frame in
            guard let index = remaining.firstIndex(of: frame) else { return false }
            remaining = remaining[(index + 1)...]
            return true
        }
        #expect(inOrder)
        #expect(device.counters.receivedFrames + device.counters.receiveDrops + UInt64(backend.waitingCount) <= 400)
        #expect(device.counters.receivedFrames > 50)
        if mergeable { #expect(device.counters.receiveDrops == 0) } else { #expect(device.counters.receiveDrops > 0) }
    }

    @Test func malformedChainsBreakTheDevice() throws {
        let (device, backend) = device()
        try addChain(transmitRing, at: 0, [(0x10_0000, 11, false)])
        var transmit = try transmitRing.queue()
        #expect(throws: VirtqueueError.self) { try device.processQueue(1, queue: &transmit, memory: memory) }

        backend.deliver(NetFrame(frame: Self.arp))
        try addChain(receiveRing, at: 0, [(0x40_0000, 8, true)])
        var receive = try receiveRing.queue()
        #expect(throws: VirtqueueError.self) { try device.processQueue(0, queue: &receive, memory: memory) }
        let readable = TestRing(memory: memory, size: 8, base: 0x3_0000)
        try addChain(readable, at: 0, [(0x40_0000, 100, false), (0x41_0000, 100, true)])
        var withReadable = try readable.queue()
        #expect(throws: VirtqueueError.self) { try device.processQueue(0, queue: &withReadable, memory: memory) }
        // A descriptor loop is the queue's to catch.
        let looping = TestRing(memory: memory, size: 8, base: 0x5_0000)
        try looping.setDescriptor(0, address: 0x40_0000, length: 100, flags: TestRing.next | TestRing.write, next: 1)
        try looping.setDescriptor(1, address: 0x40_0000, length: 100, flags: TestRing.next | TestRing.write, next: 0)
        try looping.makeAvailable(0)
        var loopQueue = try looping.queue()
        #expect(throws: VirtqueueError.chainTooLong(8)) { try device.processQueue(0, queue: &loopQueue, memory: memory) }
    }

    @Test func stateRoundTripsAndRefusesAnotherMAC() throws {
        let (device, backend) = device(offloads: .all, features: F.mac | F.guestChecksum | VirtioFeature.version1)
        try memory.write(header() + Self.arp, at: 0x10_0000)
        try addChain(transmitRing, at: 0, [(0x10_0000, 54, false)])
        var queue = try transmitRing.queue()
        try device.processQueue(1, queue: &queue, memory: memory)
        let state = device.exportState()

        let (restored, link) = self.device(offloads: .all, features: 0)
        try restored.importState(state)
        #expect(restored.negotiatedFeatures == state.negotiatedFeatures && restored.counters.transmittedFrames == 1)
        #expect(link.receiveOffloads == [.checksum] && backend.receiveOffloads == [.checksum])

        let other = VirtioNetDevice(backend: InMemoryNetBackend(macAddress: MACAddress("52:54:00:00:00:01")!))
        #expect(throws: PCIStateError.self) { try other.importState(state) }
        let (plain, _) = self.device()
        #expect(throws: PCIStateError.self) { try plain.importState(state) } // offloads it does not offer
        #expect(try JSONDecoder().decode(VirtioNetDevice.State.self, from: JSONEncoder().encode(state)) == state)
    }

    @Test func framesBothWaysThroughTheTransport() throws {
        let backend = InMemoryNetBackend(macAddress: Self.mac, offloads: [.checksum])
        let device = VirtioNetDevice(backend: backend, queueSize: 8)
        let transport = try VirtioPCIDevice(device: device, memory: memory)
        let driver = TestDriver(transport: transport)
        #expect(driver.deviceFeatures & (F.checksum | F.guestChecksum | F.mac | F.hostTSO4) == F.checksum | F.guestChecksum | F.mac)
        #expect(driver.negotiate(VirtioFeature.version1 | F.mac | F.guestChecksum | F.mergeableReceiveBuffers))
        driver.setUpQueue(0, receiveRing)
        driver.setUpQueue(1, transmitRing)
        driver.driverOK()
        #expect(backend.receiveOffloads == [.checksum])
        #expect((0..<6).map { UInt8(driver.read(0x2000 + $0, 1)) } == Self.mac.bytes)
        #expect(driver.read(0x2006, 2) == 1)   // link up

        try memory.write(header() + Self.arp, at: 0x10_0000)
        try addChain(transmitRing, at: 0, [(0x10_0000, 54, false)])
        driver.notify(1)
        #expect(backend.sent.map(\.frame) == [Self.arp])

        backend.deliver(NetFrame(header: header(), frame: Self.arp))
        transport.notify(queue: 0)   // the TAP became readable: nothing to receive into yet
        try addChain(receiveRing, at: 0, [(0x40_0000, 1526, true)])
        driver.notify(0)
        #expect(receiveRing.usedIndex == 1 && transport.status & VirtioStatus.deviceNeedsReset == 0)
        #expect(try memory.read(at: 0x40_0000, count: 54) == header(numBuffers: 1) + Self.arp)
    }

    @Test func macAddressesParse() {
        #expect(MACAddress("52:54:00:12:34:56") == Self.mac)
        #expect(MACAddress("52-54-00-12-34-56") == Self.mac)
        #expect(Self.mac.description == "52:54:00:12:34:56")
        for bad in ["52:54:00:12:34", "52:54:00:12:34:56:78", "52:54:00:12:34:5g", "525400123456", "52:54:00:12:34:567", "", "+2:54:00:12:34:56"] {
            #expect(MACAddress(bad) == nil, "\(bad)")
        }
        #expect(MACAddress(bytes: [1, 2, 3]) == nil)
        #expect(MACAddress("01:00:5e:00:00:01")!.isMulticast && !Self.mac.isMulticast)
    }
}
