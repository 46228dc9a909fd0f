// VirtioVsockTests.swift — the virtio-vsock core against in-memory host
// streams, driven as a guest driver would: connections both ways (REQUEST /
// RESPONSE, `CONNECT P\n` / `OK P\n`), data both ways under credit limits,
// shutdown and reset, RSTs for what has no connection, and a hostile guest
// (spoofed CIDs, bogus operations, bad lengths, floods) that cannot grow the
// device's memory; TRANSPORT_RESET and state.

import Foundation
import PCI
import SeededRandom
import Testing
import Virtio

/// A guest's side of the three queues, with buffers from a bump allocator.
final class VsockGuest {
    static let cid: UInt64 = 3
    let memory = InMemoryGuestMemory(size: 0x100_0000)
    let device: VirtioVsockDevice
    let backend: InMemoryVsockBackend
    let receiveRing, transmitRing, eventRing: TestRing
    var receiveQueue, transmitQueue, eventQueue: SplitQueue
    private var receiveSlot = 0, transmitSlot = 0, receiveSeen: UInt16 = 0, receivePosted: UInt16 = 0
    private var receiveBuffers: [UInt16: UInt64] = [:]
    private var cursor: UInt64 = 0x10_0000

    init(limits: VirtioVsockDevice.Limits = VirtioVsockDevice.Limits(), listening: Set<UInt32> = [], streamCapacity: Int = 1 << 20) throws {
        backend = InMemoryVsockBackend(listeningPorts: listening, streamCapacity: streamCapacity)
        device = VirtioVsockDevice(guestCID: Self.cid, backend: backend, limits: limits, queueSize: 64)
        receiveRing = TestRing(memory: memory, size: 64, base: 0x1_0000)
        transmitRing = TestRing(memory: memory, size: 64, base: 0x2_0000)
        eventRing = TestRing(memory: memory, size: 64, base: 0x3_0000)
        receiveQueue = try receiveRing.queue()
        transmitQueue = try transmitRing.queue()
        eventQueue = try eventRing.queue()
        device.activate(features: VirtioFeature.version1)
    }

    private func allocate(_ length: UInt32) -> UInt64 {
        if cursor + UInt64(length) > 0xF0_0000 { cursor = 0x10_0000 }
        defer { cursor += (UInt64(length) + 0xF) & ~0xF }
        return cursor
    }

    /// A packet from the guest (src CID 3 unless given), its payload in a
    /// second descriptor.
    func header(_ operation: VsockHeader.Operation, from guestPort: UInt32, to hostPort: UInt32, length: UInt32 = 0, flags: UInt32 = 0,
                bufferAllocation: UInt32 = 65536, forwardCount: UInt32 = 0) -> VsockHeader {
        VsockHeader(sourceCID: Self.cid, destinationCID: VirtioVsockDevice.hostCID, sourcePort: guestPort, destinationPort: hostPort,
                    length: length, operation: operation, flags: flags, bufferAllocation: bufferAllocation, forwardCount: forwardCount)
    }

    func send(_ header: VsockHeader, payload: [UInt8] = []) throws {
        let headerAddress = allocate(44)
        try memory.write(header.bytes, at: headerAddress)
        var descriptors: [(UInt64, UInt32)] = [(headerAddress, 44)]
        if !payload.isEmpty {
            let payloadAddress = allocate(UInt32(payload.count))
            try memory.write(payload, at: payloadAddress)
            descriptors.append((payloadAddress, UInt32(payload.count)))
        }
        let first = transmitSlot
        for (offset, (address, length)) in descriptors.enumerated() {
            let last = offset == descriptors.count - 1
            try transmitRing.setDescriptor((first + offset) % 64, address: address, length: length, flags: last ? 0 : TestRing.next,
                                           next: UInt16((first + offset + 1) % 64))
        }
        transmitSlot = (first + descriptors.count) % 64
        try transmitRing.makeAvailable(UInt16(first))
        transmitQueue.beginBatch()
        try device.processQueue(1, queue: &transmitQueue, memory: memory)
    }

    /// Posts `count` receive buffers of `size` bytes.
    func postReceiveBuffers(_ count: Int, size: UInt32 = 4096) throws {
        for _ in 0..<count {
            let address = allocate(size)
            try receiveRing.setDescriptor(receiveSlot, address: address, length: size, flags: TestRing.write)
            receiveBuffers[UInt16(receiveSlot)] = address
            try receiveRing.makeAvailable(UInt16(receiveSlot))
            receiveSlot = (receiveSlot + 1) % 64
            receivePosted &+= 1
        }
    }

    /// Receive buffers posted and not yet used.
    var outstandingReceiveBuffers: Int { Int(receivePosted &- receiveRing.usedIndex) }

    /// Serves the receive queue and returns the packets it delivered.
    func receive() throws -> [(header: VsockHeader, payload: [UInt8])] {
        receiveQueue.beginBatch()
        try device.processQueue(0, queue: &receiveQueue, memory: memory)
        var packets: [(header: VsockHeader, payload: [UInt8])] = []
        while receiveSeen != receiveRing.usedIndex {
            let used = try receiveRing.usedElement(Int(receiveSeen))
            receiveSeen &+= 1
            let address = receiveBuffers[UInt16(used.id)] ?? 0
            let bytes = try memory.read(at: address, count: Int(used.length))
            guard let header = VsockHeader(bytes: bytes) else { continue }
            packets.append((header, Array(bytes.dropFirst(44))))
        }
        return packets
    }

    func operations(_ packets: [(header: VsockHeader, payload: [UInt8])]) -> [UInt16] { packets.map(\.header.operation) }
}

extension VsockHeader.Operation {
    var code: UInt16 { rawValue }
}

@Suite struct VirtioVsockTests {
    typealias Op = VsockHeader.Operation

    @Test func configurationAndIdentity() throws {
        let guest = try VsockGuest()
        #expect(guest.device.configBytes == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(guest.device.deviceType.pciDeviceID == 0x1053 && guest.device.pciClassCode == 0x07_8000)
        #expect(guest.device.queueMaxSizes == [64, 64, 64] && guest.device.deviceFeatures == 0)
        let big = VirtioVsockDevice(guestCID: 0x1_0000_0042, backend: InMemoryVsockBackend())
        #expect(big.configBytes == [0x42, 0, 0, 0, 1, 0, 0, 0])
    }

    @Test func guestConnectsToAHostListener() throws {
        let guest = try VsockGuest(listening: [52])
        try guest.postReceiveBuffers(8)
        try guest.send(guest.header(.request, from: 1000, to: 52))
        let response = try guest.receive()
        #expect(guest.operations(response) == [Op.response.code])
        let header = try #require(response.first?.header)
        #expect(header.sourceCID == 2 && header.destinationCID == 3 && header.sourcePort == 52 && header.destinationPort == 1000)
        #expect(header.bufferAllocation == guest.device.limits.bufferSize && header.forwardCount == 0)
        let stream = try #require(guest.backend.streams(toPort: 52).first)

        try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: 5), payload: Array("hello".utf8))
        #expect(guest.backend.hostRead(stream) == Array("hello".utf8))
        guest.backend.hostWrite(stream, Array("world".utf8))
        let data = try guest.receive()
        #expect(guest.operations(data) == [Op.readWrite.code])
        #expect(data.first?.header.length == 5 && data.first?.payload == Array("world".utf8))
        #expect(guest.device.counters.bytesToHost == 5 && guest.device.counters.bytesToGuest == 5)

        // The guest shuts its sending side: the host stream's write side follows.
        try guest.send(guest.header(.shutdown, from: 1000, to: 52, flags: VsockHeader.shutdownSend))
        #expect(guest.backend.isWriteShutByDevice(stream) && !guest.backend.isClosedByDevice(stream))
        // Both ways: the device closes the stream and answers RST.
        try guest.send(guest.header(.shutdown, from: 1000, to: 52, flags: VsockHeader.shutdownReceive))
        #expect(guest.backend.isClosedByDevice(stream) && guest.device.connectionCount == 0)
        let reset = try guest.receive()
        #expect(guest.operations(reset) == [Op.reset.code] && reset.first?.header.destinationPort == 1000)
    }

    @Test func aGuestRequestNobodyListensForIsReset() throws {
        let guest = try VsockGuest(listening: [52])
        try guest.postReceiveBuffers(2)
        try guest.send(guest.header(.request, from: 1000, to: 53))
        let packets = try guest.receive()
        #expect(guest.operations(packets) == [Op.reset.code])
        #expect(packets.first?.header.sourcePort == 53 && packets.first?.header.destinationPort == 1000)
        #expect(guest.device.connectionCount == 0)
    }

    @Test func hostProgramConnectsToAGuestPort() throws {
        let guest = try VsockGuest()
        try guest.postReceiveBuffers(8)
        let program = guest.backend.hostConnect()
        guest.backend.hostWrite(program, Array("CONNECT 1234\nearly".utf8))
        let request = try guest.receive()
        #expect(guest.operations(request) == [Op.request.code])
        let header = try #require(request.first?.header)
        #expect(header.sourcePort == VirtioVsockDevice.firstHostPort && header.destinationPort == 1234 && header.destinationCID == 3)
        #expect(guest.backend.hostRead(program).isEmpty)   // no OK before the guest answers

        try guest.send(guest.header(.response, from: 1234, to: header.sourcePort))
        #expect(guest.backend.hostRead(program) == Array("OK \(VirtioVsockDevice.firstHostPort)\n".utf8))
        // What the program wrote after its CONNECT line reaches the guest.
        let early = try guest.receive()
        #expect(guest.operations(early) == [Op.readWrite.code] && early.first?.payload == Array("early".utf8))
        try guest.send(guest.header(.readWrite, from: 1234, to: header.sourcePort, length: 3), payload: [1, 2, 3])
        #expect(guest.backend.hostRead(program) == [1, 2, 3])

        // The program hangs up: SHUTDOWN(SEND); the guest's RST ends the connection.
        guest.backend.hostClose(program)
        let shutdown = try guest.receive()
        #expect(guest.operations(shutdown) == [Op.shutdown.code] && shutdown.first?.header.flags == VsockHeader.shutdownSend)
        #expect(guest.device.connectionCount == 1)
        try guest.send(guest.header(.reset, from: 1234, to: header.sourcePort))
        #expect(guest.device.connectionCount == 0 && guest.backend.isClosedByDevice(program))
        #expect(try guest.receive().isEmpty)   // no answer to an RST

        // A second program gets the next host port.
        let second = guest.backend.hostConnect()
        guest.backend.hostWrite(second, Array("CONNECT 1234\n".utf8))
        #expect(try guest.receive().first?.header.sourcePort == VirtioVsockDevice.firstHostPort + 1)
    }

    @Test func aHostHalfCloseStillCarriesTheGuestsReply() throws {
        let guest = try VsockGuest(listening: [52])
        try guest.postReceiveBuffers(8)
        try guest.send(guest.header(.request, from: 1000, to: 52))
        _ = try guest.receive()
        let stream = try #require(guest.backend.streams(toPort: 52).first)
        guest.backend.hostWrite(stream, Array("ask".utf8))
        guest.backend.hostShutdownWrite(stream)
        let packets = try guest.receive()
        #expect(guest.operations(packets) == [Op.readWrite.code, Op.shutdown.code])
        #expect(packets.first?.payload == Array("ask".utf8) && packets.last?.header.flags == VsockHeader.shutdownSend)
        try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: 6), payload: Array("answer".utf8))
        #expect(guest.backend.hostRead(stream) == Array("answer".utf8))
        try guest.send(guest.header(.shutdown, from: 1000, to: 52, flags: VsockHeader.shutdownBoth))
        #expect(guest.operations(try guest.receive()) == [Op.reset.code])
        #expect(guest.backend.isClosedByDevice(stream) && guest.device.connectionCount == 0)
    }

    @Test func aGuestCloseWaitsUntilItsDataIsWritten() throws {
        let guest = try VsockGuest(listening: [52], streamCapacity: 4)
        try guest.postReceiveBuffers(8)
        try guest.send(guest.header(.request, from: 1000, to: 52))
        _ = try guest.receive()
        let stream = try #require(guest.backend.streams(toPort: 52).first)
        try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: 10), payload: Array(0..<10))
        try guest.send(guest.header(.shutdown, from: 1000, to: 52, flags: VsockHeader.shutdownBoth))
        // Six bytes still held: no RST, the stream stays open.
        #expect(guest.device.connectionCount == 1 && !guest.backend.isClosedByDevice(stream))
        #expect(try guest.receive().isEmpty)
        var written = guest.backend.hostRead(stream)
        _ = try guest.receive()
        written += guest.backend.hostRead(stream)
        let last = try guest.receive()
        written += guest.backend.hostRead(stream)
        #expect(written == Array(0..<10))
        #expect(guest.operations(last) == [Op.reset.code] && guest.backend.isClosedByDevice(stream))
    }

    @Test func badConnectLinesAndRefusedRequestsCloseTheProgram() throws {
        let guest = try VsockGuest()
        try guest.postReceiveBuffers(8)
        let lines = ["HELLO 5\n", "CONNECT 99999999999\n", "CONNECT \n", "CONNECT -1\n", "connect 5\n", String(repeating: "C", count: 40)]
        let programs = lines.map { line in
            let program = guest.backend.hostConnect()
            guest.backend.hostWrite(program, Array(line.utf8))
            return program
        }
        let partial = guest.backend.hostConnect()
        guest.backend.hostWrite(partial, Array("CONNECT 7".utf8))
        #expect(try guest.receive().isEmpty)
        #expect(programs.allSatisfy { guest.backend.isClosedByDevice($0) })
        #expect(!guest.backend.isClosedByDevice(partial))   // still waiting for its newline
        guest.backend.hostWrite(partial, Array("\n".utf8))
        let request = try #require(try guest.receive().first?.header)
        #expect(request.destinationPort == 7)
        // The guest refuses: the program is closed.
        try guest.send(guest.header(.reset, from: 7, to: request.sourcePort))
        #expect(guest.backend.isClosedByDevice(partial) && guest.device.connectionCount == 0)
    }

    @Test func hostToGuestDataNeverExceedsTheGuestsCredit() throws {
        let guest = try VsockGuest(listening: [52])
        try guest.postReceiveBuffers(16)
        try guest.send(guest.header(.request, from: 1000, to: 52, bufferAllocation: 10))
        _ = try guest.receive()
        let stream = try #require(guest.backend.streams(toPort: 52).first)
        guest.backend.hostWrite(stream, Array(0..<25))
        let first = try guest.receive()
        // Ten bytes, then one CREDIT_REQUEST (not one per pass).
        #expect(guest.operations(first) == [Op.readWrite.code, Op.creditRequest.code])
        #expect(first.first?.payload == Array(0..<10))
        #expect(try guest.receive().isEmpty)
        try guest.send(guest.header(.creditUpdate, from: 1000, to: 52, bufferAllocation: 10, forwardCount: 10))
        let second = try guest.receive()
        #expect(second.first?.payload == Array(10..<20))
        try guest.send(guest.header(.creditUpdate, from: 1000, to: 52, bufferAllocation: 10, forwardCount: 20))
        #expect(try guest.receive().first?.payload == Array(20..<25))
    }

    @Test func guestToHostDataIsHeldWithinTheCreditGiven() throws {
        var limits = VirtioVsockDevice.Limits()
        limits.bufferSize = 1024
        let guest = try VsockGuest(limits: limits, listening: [52], streamCapacity: 100)
        try guest.postReceiveBuffers(16)
        try guest.send(guest.header(.request, from: 1000, to: 52))
        _ = try guest.receive()
        let stream = try #require(guest.backend.streams(toPort: 52).first)
        // The host reads slowly: 100 bytes go, 924 are held.
        try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: 1024), payload: Array(repeating: 7, count: 1024))
        #expect(guest.backend.hostRead(stream).count == 100 && guest.device.bufferedBytes == 924)
        // As the host drains it, the rest follows, with a CREDIT_UPDATE once half is forwarded.
        #expect(try guest.receive().isEmpty)   // 200 forwarded
        var update: [(header: VsockHeader, payload: [UInt8])] = []
        for _ in 0..<3 {
            _ = guest.backend.hostRead(stream)
            update += try guest.receive()
        }
        #expect(update.isEmpty)   // 500 forwarded: not half yet
        _ = guest.backend.hostRead(stream)
        update = try guest.receive()
        #expect(guest.operations(update) == [Op.creditUpdate.code] && update.first?.header.forwardCount == 600)
        // A guest asking gets an update at once.
        try guest.send(guest.header(.creditRequest, from: 1000, to: 52))
        #expect(guest.operations(try guest.receive()) == [Op.creditUpdate.code])

        // Past the credit: reset, and nothing is kept.
        guest.backend.streamCapacity = 0
        _ = guest.backend.hostRead(stream)
        for _ in 0..<12 {
            try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: 100), payload: Array(repeating: 1, count: 100))
        }
        #expect(guest.device.connectionCount == 0 && guest.device.bufferedBytes == 0 && guest.backend.isClosedByDevice(stream))
        #expect(guest.operations(try guest.receive()).contains(Op.reset.code))
    }

    @Test func aHostileGuestIsAnsweredWithResetsAndCannotGrowMemory() throws {
        var limits = VirtioVsockDevice.Limits()
        limits.connections = 4
        limits.pendingResets = 16
        let guest = try VsockGuest(limits: limits, listening: [52])
        // Spoofed source CID: dropped without an answer.
        var spoofed = guest.header(.request, from: 1000, to: 52)
        spoofed.sourceCID = 9
        try guest.send(spoofed)
        #expect(guest.device.counters.dropped == 1 && guest.device.connectionCount == 0)
        // Another destination CID, another socket type, an unknown operation,
        // data for no connection: RST each; an RST for no connection: nothing.
        var otherCID = guest.header(.request, from: 1000, to: 52)
        otherCID.destinationCID = 7
        var seqpacket = guest.header(.request, from: 1000, to: 52)
        seqpacket.type = 2
        var bogus = guest.header(.request, from: 1000, to: 52)
        bogus.operation = 99
        for header in [otherCID, seqpacket, bogus, guest.header(.readWrite, from: 1, to: 2, length: 1), guest.header(.reset, from: 1, to: 2)] {
            try guest.send(header, payload: header.length > 0 ? [0] : [])
        }
        try guest.postReceiveBuffers(8)
        #expect(guest.operations(try guest.receive()) == Array(repeating: Op.reset.code, count: 4))
        #expect(guest.device.connectionCount == 0)

        // A length the chain does not hold resets the connection.
        try guest.send(guest.header(.request, from: 1000, to: 52))
        #expect(guest.operations(try guest.receive()) == [Op.response.code])
        try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: 5000), payload: [1, 2, 3])
        try guest.send(guest.header(.readWrite, from: 1000, to: 52, length: UInt32.max), payload: [1])
        #expect(guest.device.connectionCount == 0)
        #expect(guest.operations(try guest.receive()) == [Op.reset.code, Op.reset.code])

        // A flood of requests with no receive buffers: at most 4 connections,
        // at most 16 RSTs waiting, the rest counted.
        let droppedBefore = guest.device.counters.dropped
        for port in 0..<2000 { try guest.send(guest.header(.request, from: UInt32(2000 + port), to: 52)) }
        #expect(guest.device.connectionCount == 4 && guest.backend.openStreamCount == 4)
        #expect(guest.device.counters.dropped - droppedBefore == 2000 - 4 - 16)
        try guest.postReceiveBuffers(40)
        let answers = try guest.receive()
        #expect(answers.filter { $0.header.operation == Op.reset.code }.count == 16)
        #expect(answers.filter { $0.header.operation == Op.response.code }.count == 4)

        // A transmit chain too short for a header cannot be answered: the device breaks.
        try guest.transmitRing.setDescriptor(0, address: 0x10_0000, length: 20)
        try guest.transmitRing.makeAvailable(0)
        #expect(throws: VirtqueueError.self) { try guest.device.processQueue(1, queue: &guest.transmitQueue, memory: guest.memory) }
    }

    /// Random packets (operations, ports, CIDs, lengths, credit values),
    /// random host programs and host data, random receive buffers: nothing
    /// throws, every packet delivered is well formed and fits its buffer, and
    /// the device's memory stays within its limits.
    @Test(arguments: [UInt64(1), 2, 3])
    func randomTrafficStaysWithinTheLimits(seed: UInt64) throws {
        var random = SeededGenerator(seed: 0x500C_0000 + seed)
        var limits = VirtioVsockDevice.Limits()
        limits.connections = 8
        limits.pendingResets = 32
        limits.bufferSize = 4096
        let guest = try VsockGuest(limits: limits, listening: [52, 53], streamCapacity: 512)
        var programs: [VsockStream] = []
        func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &random)] }
        for _ in 0..<3000 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                let payload = (0..<pick([0, 1, 100, 2000])).map { _ in UInt8.random(in: 0...255, using: &random) }
                var header = guest.header(pick([.request, .readWrite, .readWrite, .readWrite, .creditUpdate, .creditRequest, .response]),
                                          from: pick([1000, 1001, 1002, 1003]),
                                          to: pick([52, 53, 54, VirtioVsockDevice.firstHostPort, VirtioVsockDevice.firstHostPort + 1]),
                                          length: UInt32(payload.count), bufferAllocation: pick([10, 4096, 262_144]),
                                          forwardCount: 0)
                if Int.random(in: 0..<3, using: &random) == 0 {
                    // Hostile: any operation, CID, type, flags, length or credit.
                    header.operation = UInt16.random(in: 0...9, using: &random)
                    header.sourceCID = pick([3, 3, 9])
                    header.destinationCID = pick([2, 2, 7])
                    header.type = pick([1, 1, 2])
                    header.flags = UInt32.random(in: 0...4, using: &random)
                    header.bufferAllocation = pick([0, UInt32.max])
                    header.forwardCount = UInt32.random(in: 0...UInt32.max, using: &random)
                    header.length = pick([header.length, 5000, 70000, UInt32.max])
                }
                try guest.send(header, payload: payload)
            case 6:
                let program = guest.backend.hostConnect()
                guest.backend.hostWrite(program, Array(pick(["CONNECT 1000\n", "CONNECT 1001\nhi", "OK\n", "CONNECT 7"]).utf8))
                programs.append(program)
            case 7:
                let streams = programs + guest.backend.streams(toPort: 52) + guest.backend.streams(toPort: 53)
                if !streams.isEmpty {
                    let stream = pick(streams)
                    guest.backend.hostWrite(stream, Array(repeating: 0x41, count: pick([1, 300, 5000])))
                    if Bool.random(using: &random) { _ = guest.backend.hostRead(stream) }
                    if Int.random(in: 0..<8, using: &random) == 0 { guest.backend.hostClose(stream) }
                }
            default:
                if guest.outstandingReceiveBuffers < 32 { try guest.postReceiveBuffers(4, size: pick([44, 60, 1024, 70000])) }
                for packet in try guest.receive() {
                    #expect(packet.header.sourceCID == 2 || packet.header.operation == VsockHeader.Operation.reset.rawValue)
                    #expect(packet.header.destinationCID == VsockGuest.cid)
                    #expect(packet.payload.count == Int(packet.header.length))
                    #expect(packet.payload.count <= VirtioVsockDevice.maximumPayload)
                }
            }
            #expect(guest.device.connectionCount <= 8)
            #expect(guest.device.bufferedBytes <= 8 * (4096 + 32))
        }
        // The traffic reached every path: data both ways, resets, drops.
        let counters = guest.device.counters
        #expect(counters.packetsFromGuest > 1000 && counters.resetsToGuest > 0 && counters.dropped > 0)
        #expect(counters.bytesToHost > 0 && counters.bytesToGuest > 0)
    }

    @Test func tooManyWaitingProgramsAreClosed() throws {
        var limits = VirtioVsockDevice.Limits()
        limits.waitingHostPrograms = 3
        let guest = try VsockGuest(limits: limits)
        let programs = (0..<5).map { _ in guest.backend.hostConnect() }
        _ = try guest.receive()
        #expect(programs.filter { guest.backend.isClosedByDevice($0) }.count == 2)
    }

    @Test func transportResetDropsConnectionsAndReachesTheEventQueue() throws {
        let guest = try VsockGuest(listening: [52])
        try guest.postReceiveBuffers(4)
        try guest.send(guest.header(.request, from: 1000, to: 52))
        _ = try guest.receive()
        let stream = try #require(guest.backend.streams(toPort: 52).first)
        guest.device.postTransportReset()
        #expect(guest.device.connectionCount == 0 && guest.backend.isClosedByDevice(stream) && guest.device.transportResetPending)

        try guest.eventRing.setDescriptor(0, address: 0x50_0000, length: 8, flags: TestRing.write)
        try guest.memory.write(Array(repeating: 0xEE, count: 8), at: 0x50_0000)
        try guest.device.processQueue(2, queue: &guest.eventQueue, memory: guest.memory)
        #expect(guest.eventRing.usedIndex == 0)   // no buffer yet
        try guest.eventRing.makeAvailable(0)
        try guest.device.processQueue(2, queue: &guest.eventQueue, memory: guest.memory)
        #expect(try guest.eventRing.usedElement(0) == (0, 4))
        #expect(try guest.memory.read(at: 0x50_0000, count: 5) == [0, 0, 0, 0, 0xEE])
        #expect(!guest.device.transportResetPending)
    }

    @Test func aConnectionThroughTheTransport() throws {
        let memory = InMemoryGuestMemory(size: 0x80_0000)
        let backend = InMemoryVsockBackend(listeningPorts: [52])
        let device = VirtioVsockDevice(guestCID: VsockGuest.cid, backend: backend, queueSize: 8)
        let transport = try VirtioPCIDevice(device: device, memory: memory)
        let driver = TestDriver(transport: transport)
        let rings = (0..<3).map { TestRing(memory: memory, size: 8, base: 0x1_0000 * UInt64($0 + 1)) }
        #expect(driver.negotiate(VirtioFeature.version1))
        for (index, ring) in rings.enumerated() { driver.setUpQueue(index, ring) }
        driver.driverOK()
        #expect(driver.read(0x2000, 8) == VsockGuest.cid)

        let request = VsockHeader(sourceCID: VsockGuest.cid, destinationCID: 2, sourcePort: 1000, destinationPort: 52,
                                  operation: .request, bufferAllocation: 4096)
        try memory.write(request.bytes, at: 0x10_0000)
        try rings[1].setDescriptor(0, address: 0x10_0000, length: 44)
        try rings[1].makeAvailable(0)
        try rings[0].setDescriptor(0, address: 0x20_0000, length: 4096, flags: TestRing.write)
        try rings[0].makeAvailable(0)
        driver.notify(1)
        #expect(device.hasPacketsForGuest)
        driver.notify(0)
        let response = VsockHeader(bytes: try memory.read(at: 0x20_0000, count: 44))
        #expect(response?.operation == VsockHeader.Operation.response.rawValue && response?.destinationPort == 1000)
        #expect(try rings[0].usedElement(0).length == 44 && !device.hasPacketsForGuest)
        #expect(backend.streams(toPort: 52).count == 1 && transport.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func stateRestoresAsATransportReset() throws {
        let guest = try VsockGuest(listening: [52])
        try guest.send(guest.header(.request, from: 1000, to: 52))
        let state = guest.device.exportState()
        #expect(try JSONDecoder().decode(VirtioVsockDevice.State.self, from: JSONEncoder().encode(state)) == state)

        let restored = VirtioVsockDevice(guestCID: VsockGuest.cid, backend: InMemoryVsockBackend())
        try restored.importState(state)
        #expect(restored.negotiatedFeatures == VirtioFeature.version1 && restored.transportResetPending)
        #expect(restored.counters.packetsFromGuest == 1)
        let otherCID = VirtioVsockDevice(guestCID: 4, backend: InMemoryVsockBackend())
        #expect(throws: PCIStateError.self) { try otherCID.importState(state) }
        var unknownFeatures = state
        unknownFeatures.negotiatedFeatures |= 1 << 3
        #expect(throws: PCIStateError.self) { try restored.importState(unknownFeatures) }
    }
}
