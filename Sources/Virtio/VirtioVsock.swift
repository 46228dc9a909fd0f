// VirtioVsock.swift — the virtio-vsock core (virtio 1.2 §5.10): receive,
// transmit and event queues, the guest CID in the configuration, and the
// stream protocol between the guest and host programs reached through a
// VsockBackend:
//
// - guest-initiated: a REQUEST to the host (CID 2) port P connects the back
//   end to P (PATH_P); RESPONSE on success, RST when nobody listens;
// - host-initiated: a host program on PATH writes `CONNECT P\n`; the device
//   sends REQUEST to guest port P from a host port of its own, and on
//   RESPONSE writes `OK <host port>\n` to the program (RST: it is closed);
// - RW both ways under credit flow control: the device never sends more
//   than the guest's buf_alloc − (sent − fwd_cnt), and holds at most its own
//   buffer size per connection of what the guest sends (a guest past its
//   credit is reset); CREDIT_UPDATE once half the buffer is forwarded, and
//   in answer to CREDIT_REQUEST;
// - SHUTDOWN and RST both ways; unknown operations, other socket types,
//   other destination CIDs and packets for no connection are answered with
//   RST; packets with another source CID (spoofed) are dropped.
//
// Memory is bounded whatever the guest or host programs do: connections,
// host programs waiting to send their CONNECT line, and RSTs waiting for
// receive buffers each have a limit (past it a connection is refused, a
// program closed, an RST dropped and counted).
//
// The VMM serves the receive queue (notify(queue: 0)) after the transmit
// queue, and whenever a host stream or PATH is readable or writable; after a
// restore it posts TRANSPORT_RESET and serves the event queue.
import PCI

public final class VirtioVsockDevice: VirtioDevice {
    public static let hostCID: UInt64 = 2
    /// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE: the largest payload either way.
    public static let maximumPayload = 64 * 1024
    /// Host ports the device gives host-initiated connections start here.
    public static let firstHostPort: UInt32 = 1 << 30
    /// `CONNECT 4294967295\n` is 19 bytes; a longer line is not one.
    static let maximumConnectLine = 32
    /// Host programs accepted per receive pass at most.
    static let acceptsPerPass = 64

    public enum QueueIndex {
        public static let receive = 0
        public static let transmit = 1
        public static let event = 2
    }

    public struct Limits: Sendable, Equatable {
        /// buf_alloc: what the device holds per connection for the host.
        public var bufferSize: UInt32 = 256 * 1024
        public var connections = 256
        public var waitingHostPrograms = 32
        public var pendingResets = 256

        public init() {}
    }

    public struct Counters: Codable, Sendable, Equatable {
        public var packetsFromGuest: UInt64 = 0
        public var packetsToGuest: UInt64 = 0
        public var resetsToGuest: UInt64 = 0
        public var bytesToHost: UInt64 = 0
        public var bytesToGuest: UInt64 = 0
        /// Spoofed packets, and RSTs the full queue could not take.
        public var dropped: UInt64 = 0
        public init() {}
    }

    struct ConnectionKey: Hashable {
        var hostPort: UInt32
        var guestPort: UInt32
    }

    final class Connection {
        /// hostDone: the host stream reached its end; the guest may still send.
        enum Phase { case connecting, established, hostDone }
        let stream: VsockStream
        var phase: Phase
        // Control packets owed to the guest.
        var requestOwed = false
        var responseOwed = false
        var creditUpdateOwed = false
        var creditRequestOwed = false
        var shutdownOwed: UInt32 = 0
        var creditRequested = false
        /// Guest bytes (after a leading `OK` line of `handshakeBytes`) not yet written to the host.
        var toHost: [UInt8] = []
        var handshakeBytes = 0
        /// fwd_cnt: guest bytes written to the host, and the value last told.
        var forwarded: UInt32 = 0
        var forwardedTold: UInt32 = 0
        /// The guest's buf_alloc and fwd_cnt, and what the device sent it.
        var peerBuffer: UInt32 = 0
        var peerForwarded: UInt32 = 0
        var sentToGuest: UInt32 = 0
        var guestShutdown: UInt32 = 0
        var hostWriteShut = false

        init(stream: VsockStream, phase: Phase) {
            self.stream = stream
            self.phase = phase
        }

        /// What the guest can take now.
        var peerCredit: Int { max(0, Int(peerBuffer) - Int(sentToGuest &- peerForwarded)) }

        func learnCredit(_ header: VsockHeader) {
            if header.bufferAllocation != peerBuffer || header.forwardCount != peerForwarded { creditRequested = false }
            peerBuffer = header.bufferAllocation
            peerForwarded = header.forwardCount
        }
    }

    public let deviceType = VirtioDeviceType.socket
    /// PCI_CLASS_COMMUNICATION_OTHER, as QEMU's vhost-vsock-pci reports.
    public let pciClassCode: UInt32 = 0x07_8000
    public let deviceFeatures: UInt64 = 0
    public let guestCID: UInt64
    public let backend: any VsockBackend
    public let limits: Limits
    public let queueSize: UInt16
    public private(set) var negotiatedFeatures: UInt64 = 0
    public private(set) var counters = Counters()
    /// TRANSPORT_RESET waits for an event buffer.
    public private(set) var transportResetPending = false

    private var connections: [ConnectionKey: Connection] = [:]
    /// Connections in the order they are served (the one served goes last).
    private var order: [ConnectionKey] = []
    private var waitingPrograms: [(stream: VsockStream, line: [UInt8])] = []
    private var pendingResets: [VsockHeader] = []
    private var nextHostPort = VirtioVsockDevice.firstHostPort

    /// `guestCID` must be 3 or more (0–2 are reserved; the VMM checks).
    public init(guestCID: UInt64, backend: any VsockBackend, limits: Limits = Limits(), queueSize: UInt16 = 256) {
        self.guestCID = guestCID
        self.backend = backend
        self.limits = limits
        self.queueSize = queueSize
    }

    public var queueMaxSizes: [UInt16] { [queueSize, queueSize, queueSize] }

    /// struct virtio_vsock_config: guest_cid.
    public var configBytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: guestCID >> (8 * $0)) } }

    /// Connections open now.
    public var connectionCount: Int { connections.count }
    /// Guest bytes held for host programs, over every connection.
    public var bufferedBytes: Int { connections.values.reduce(0) { $0 + $1.toHost.count } }
    /// Something waits for a receive buffer: serve the receive queue.
    public var hasPacketsForGuest: Bool {
        !pendingResets.isEmpty || connections.values.contains {
            $0.requestOwed || $0.responseOwed || $0.creditUpdateOwed || $0.creditRequestOwed || $0.shutdownOwed != 0
        }
    }

    public func activate(features: UInt64) { negotiatedFeatures = features }

    public func reset() {
        negotiatedFeatures = 0
        dropConnections()
        for program in waitingPrograms { backend.close(program.stream) }
        waitingPrograms = []
        transportResetPending = false
    }

    /// The guest must forget its connections (after a restore: the host
    /// streams they used are gone). Serve the event queue afterwards.
    public func postTransportReset() {
        dropConnections()
        transportResetPending = true
    }

    private func dropConnections() {
        for connection in connections.values { backend.close(connection.stream) }
        connections = [:]
        order = []
        pendingResets = []
    }

    public func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        switch index {
        case QueueIndex.receive:
            acceptHostPrograms()
            flushAll()
            try fillReceive(queue: &queue, memory: memory)
        case QueueIndex.transmit:
            while let chain = try queue.popAvailable(memory: memory) {
                try handle(chain, memory: memory)
                try queue.pushUsed(head: chain.head, length: 0, memory: memory)
            }
            flushAll()
        case QueueIndex.event:
            guard transportResetPending, let chain = try queue.popAvailable(memory: memory) else { return }
            guard chain.writableLength >= 4 else { throw .malformedRequest("virtio-vsock event buffer shorter than 4 bytes") }
            let written = try chain.writeBytes([0, 0, 0, 0], memory: memory)   // id VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
            try queue.pushUsed(head: chain.head, length: UInt32(written), memory: memory)
            transportResetPending = false
        default:
            break
        }
    }

    // MARK: - Packets from the guest

    private func handle(_ chain: DescriptorChain, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        guard chain.readableLength >= UInt64(VsockHeader.size),
              let header = VsockHeader(bytes: try chain.readBytes(count: VsockHeader.size, memory: memory)) else {
            throw .malformedRequest("virtio-vsock packet shorter than its 44-byte header")
        }
        counters.packetsFromGuest += 1
        guard header.sourceCID == guestCID else {
            counters.dropped += 1
            return
        }
        guard header.destinationCID == Self.hostCID, header.type == VsockHeader.streamType,
              let operation = VsockHeader.Operation(rawValue: header.operation) else {
            refuse(header)
            return
        }
        let key = ConnectionKey(hostPort: header.destinationPort, guestPort: header.sourcePort)
        if operation == .request {
            connectFromGuest(header, key: key)
            return
        }
        guard let connection = connections[key] else {
            if operation != .reset { refuse(header) }
            return
        }
        connection.learnCredit(header)
        switch operation {
        case .request:
            break
        case .response:
            guard connection.phase == .connecting, !connection.requestOwed else { return resetConnection(key) }
            connection.phase = .established
            let line = Array("OK \(key.hostPort)\n".utf8)
            connection.toHost = line + connection.toHost
            connection.handshakeBytes = line.count
        case .reset:
            close(key)
        case .shutdown:
            // Both ways shut: RST once what the guest sent is written (flush).
            connection.guestShutdown |= header.flags & VsockHeader.shutdownBoth
            flush(key, connection)
        case .readWrite:
            try receiveData(header, chain: chain, key: key, connection: connection, memory: memory)
        case .creditUpdate:
            break
        case .creditRequest:
            connection.creditUpdateOwed = true
        }
    }

    private func connectFromGuest(_ header: VsockHeader, key: ConnectionKey) {
        if connections[key] != nil { return resetConnection(key) }
        guard connections.count < limits.connections, let stream = backend.connect(port: key.hostPort) else {
            return refuse(header)
        }
        let connection = Connection(stream: stream, phase: .established)
        connection.learnCredit(header)
        connection.responseOwed = true
        add(connection, key)
    }

    private func receiveData(_ header: VsockHeader, chain: DescriptorChain, key: ConnectionKey, connection: Connection,
                             memory: any GuestMemoryAccess) throws(VirtqueueError) {
        let length = Int(header.length)
        guard connection.phase != .connecting, connection.guestShutdown & VsockHeader.shutdownSend == 0,
              length <= Self.maximumPayload, UInt64(length) <= chain.readableLength - UInt64(VsockHeader.size),
              connection.toHost.count - connection.handshakeBytes + length <= Int(limits.bufferSize) else {
            // No connection to send on, a length the chain does not hold, or past the credit given.
            return resetConnection(key)
        }
        guard length > 0 else { return }
        connection.toHost += try chain.readBytes(from: UInt64(VsockHeader.size), count: length, memory: memory)
    }

    // MARK: - Host streams

    private func add(_ connection: Connection, _ key: ConnectionKey) {
        connections[key] = connection
        order.append(key)
    }

    private func close(_ key: ConnectionKey) {
        guard let connection = connections.removeValue(forKey: key) else { return }
        backend.close(connection.stream)
        order.removeAll { $0 == key }
    }

    /// Closes the connection and owes the guest an RST for it.
    private func resetConnection(_ key: ConnectionKey) {
        close(key)
        queueReset(VsockHeader(sourceCID: Self.hostCID, destinationCID: guestCID, sourcePort: key.hostPort, destinationPort: key.guestPort,
                               operation: .reset))
    }

    /// Owes an RST answering `header` (never one answering an RST).
    private func refuse(_ header: VsockHeader) {
        guard header.operation != VsockHeader.Operation.reset.rawValue else { return }
        queueReset(VsockHeader(sourceCID: header.destinationCID, destinationCID: guestCID, sourcePort: header.destinationPort,
                               destinationPort: header.sourcePort, operation: .reset))
    }

    private func queueReset(_ reset: VsockHeader) {
        guard pendingResets.count < limits.pendingResets else {
            counters.dropped += 1
            return
        }
        pendingResets.append(reset)
    }

    /// New host programs on PATH, each to send its CONNECT line; past the
    /// limit they are closed (left in the backlog, PATH would stay readable).
    private func acceptHostPrograms() {
        for _ in 0..<max(limits.waitingHostPrograms, Self.acceptsPerPass) {
            guard let stream = backend.accept() else { break }
            if waitingPrograms.count >= limits.waitingHostPrograms {
                backend.close(stream)
            } else {
                waitingPrograms.append((stream, []))
            }
        }
        var still: [(stream: VsockStream, line: [UInt8])] = []
        for var program in waitingPrograms {
            switch readConnectLine(&program) {
            case .waiting: still.append(program)
            case .failed: backend.close(program.stream)
            case let .port(port): connectFromHost(program.stream, port: port)
            }
        }
        waitingPrograms = still
    }

    private enum ConnectLine { case waiting, failed, port(UInt32) }

    /// Reads byte by byte, so nothing past the newline is taken from the stream.
    private func readConnectLine(_ program: inout (stream: VsockStream, line: [UInt8])) -> ConnectLine {
        while program.line.count < Self.maximumConnectLine {
            switch backend.read(program.stream, count: 1) {
            case .wouldBlock: return .waiting
            case .closed: return .failed
            case let .data(bytes):
                guard let byte = bytes.first else { return .waiting }
                guard byte != UInt8(ascii: "\n") else { return Self.parseConnect(program.line).map { .port($0) } ?? .failed }
                program.line.append(byte)
            }
        }
        return .failed
    }

    /// `CONNECT <port>` (without the newline): the port, else nil.
    static func parseConnect(_ line: [UInt8]) -> UInt32? {
        let prefix = Array("CONNECT ".utf8)
        guard line.count > prefix.count, Array(line.prefix(prefix.count)) == prefix else { return nil }
        let digits = line.dropFirst(prefix.count)
        guard digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return UInt32(String(decoding: digits, as: UTF8.self))
    }

    private func connectFromHost(_ stream: VsockStream, port: UInt32) {
        guard connections.count < limits.connections else { return backend.close(stream) }
        var key = ConnectionKey(hostPort: nextHostPort, guestPort: port)
        while connections[key] != nil { key.hostPort &+= 1 }
        nextHostPort = key.hostPort &+ 1 < Self.firstHostPort ? Self.firstHostPort : key.hostPort &+ 1
        let connection = Connection(stream: stream, phase: .connecting)
        connection.requestOwed = true
        add(connection, key)
    }

    private func flushAll() {
        for key in order {
            if let connection = connections[key] { flush(key, connection) }
        }
    }

    /// Writes what the host stream takes; owes a credit update once half the
    /// buffer was forwarded since the last one told; once everything is
    /// written passes the guest's SHUTDOWN(SEND) on, or ends the connection
    /// with an RST when the guest shut both ways.
    private func flush(_ key: ConnectionKey, _ connection: Connection) {
        if !connection.toHost.isEmpty {
            guard let written = backend.write(connection.stream, connection.toHost) else {
                return resetConnection(key)   // the host program is gone
            }
            connection.toHost.removeFirst(written)
            let handshake = min(written, connection.handshakeBytes)
            connection.handshakeBytes -= handshake
            connection.forwarded &+= UInt32(written - handshake)
            counters.bytesToHost += UInt64(written - handshake)
            if connection.forwarded &- connection.forwardedTold >= limits.bufferSize / 2 { connection.creditUpdateOwed = true }
        }
        guard connection.toHost.isEmpty else { return }
        if connection.guestShutdown == VsockHeader.shutdownBoth {
            resetConnection(key)
        } else if connection.guestShutdown & VsockHeader.shutdownSend != 0, !connection.hostWriteShut {
            backend.shutdownWrite(connection.stream)
            connection.hostWriteShut = true
        }
    }

    // MARK: - Packets to the guest

    private func fillReceive(queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        while queue.popsLeftInBatch > 0, let peeked = try queue.peekAvailable(memory: memory) {
            try Self.checkReceiveChain(peeked)
            let room = Int(min(peeked.writableLength - UInt64(VsockHeader.size), UInt64(Self.maximumPayload)))
            guard let (header, payload) = nextPacket(room: room) else { return }
            guard let chain = try queue.popAvailable(memory: memory) else { return }
            try Self.checkReceiveChain(chain)
            let packet = header.bytes + payload
            guard chain.writableLength >= UInt64(packet.count) else {
                throw .malformedRequest("virtio-vsock receive chain shrank while the device used it")
            }
            let written = try chain.writeBytes(packet, memory: memory)
            try queue.pushUsed(head: chain.head, length: UInt32(written), memory: memory)
            counters.packetsToGuest += 1
            counters.bytesToGuest += UInt64(payload.count)
            if header.operation == VsockHeader.Operation.reset.rawValue { counters.resetsToGuest += 1 }
        }
    }

    private static func checkReceiveChain(_ chain: DescriptorChain) throws(VirtqueueError) {
        guard chain.readable.isEmpty, chain.writableLength >= UInt64(VsockHeader.size) else {
            throw .malformedRequest("virtio-vsock receive chain without room for the 44-byte header")
        }
    }

    /// The next packet for the guest, payload at most `room` bytes: RSTs
    /// first, then control packets, then data, connections taking turns.
    private func nextPacket(room: Int) -> (VsockHeader, [UInt8])? {
        if !pendingResets.isEmpty { return (pendingResets.removeFirst(), []) }
        for key in order {
            guard let connection = connections[key], let (operation, flags) = owedControl(connection) else { continue }
            served(key)
            return (header(key, connection, operation, flags: flags), [])
        }
        for key in order {
            guard let connection = connections[key], connection.phase == .established,
                  connection.guestShutdown & VsockHeader.shutdownReceive == 0 else { continue }
            let credit = connection.peerCredit
            guard credit > 0 else {
                // Ask once per stall; the guest's next packet tells its credit.
                guard !connection.creditRequested else { continue }
                connection.creditRequested = true
                connection.creditRequestOwed = true
                return nextPacket(room: room)
            }
            switch backend.read(connection.stream, count: min(credit, room)) {
            case .wouldBlock:
                continue
            case .closed:
                // The host program sends no more (it may still read: a
                // half-close); the guest's own SHUTDOWN or RST ends it.
                connection.phase = .hostDone
                connection.shutdownOwed = VsockHeader.shutdownSend
                served(key)
                return nextPacket(room: room)
            case let .data(bytes):
                guard !bytes.isEmpty else { continue }
                connection.sentToGuest &+= UInt32(bytes.count)
                served(key)
                var packet = header(key, connection, .readWrite, flags: 0)
                packet.length = UInt32(bytes.count)
                return (packet, bytes)
            }
        }
        return nil
    }

    /// The control packet (and flags) the connection owes first, cleared as taken.
    private func owedControl(_ connection: Connection) -> (VsockHeader.Operation, UInt32)? {
        if connection.requestOwed { connection.requestOwed = false; return (.request, 0) }
        if connection.responseOwed { connection.responseOwed = false; return (.response, 0) }
        if connection.shutdownOwed != 0 {
            defer { connection.shutdownOwed = 0 }
            return (.shutdown, connection.shutdownOwed)
        }
        if connection.creditUpdateOwed { return (.creditUpdate, 0) }
        if connection.creditRequestOwed { connection.creditRequestOwed = false; return (.creditRequest, 0) }
        return nil
    }

    /// A packet on the connection; every one tells the guest the device's
    /// credit, so none is owed after it.
    private func header(_ key: ConnectionKey, _ connection: Connection, _ operation: VsockHeader.Operation, flags: UInt32) -> VsockHeader {
        connection.forwardedTold = connection.forwarded
        connection.creditUpdateOwed = false
        return VsockHeader(sourceCID: Self.hostCID, destinationCID: guestCID, sourcePort: key.hostPort, destinationPort: key.guestPort,
                           operation: operation, flags: flags, bufferAllocation: limits.bufferSize, forwardCount: connection.forwarded)
    }

    /// The connection goes to the back of the line.
    private func served(_ key: ConnectionKey) {
        order.removeAll { $0 == key }
        order.append(key)
    }

    // MARK: - State

    /// What a snapshot keeps. Connections are not kept: their host streams
    /// do not survive the process, so a restore posts TRANSPORT_RESET and
    /// the guest starts over.
    public struct State: Codable, Sendable, Equatable {
        public var guestCID: UInt64
        public var negotiatedFeatures: UInt64
        public var counters: Counters
    }

    public func exportState() -> State {
        State(guestCID: guestCID, negotiatedFeatures: negotiatedFeatures, counters: counters)
    }

    /// Refuses another CID (the guest knows its own) and features not
    /// offered; owes the guest TRANSPORT_RESET when its driver was running.
    public func importState(_ state: State) throws(PCIStateError) {
        try PCIStateError.checkBits(state.negotiatedFeatures, allowed: deviceFeatures | VirtioFeature.transport,
                                    device: "virtio-vsock", field: "negotiatedFeatures")
        guard state.guestCID == guestCID else {
            throw PCIStateError(device: "virtio-vsock", field: "guestCID", "the snapshot's CID \(state.guestCID) is not this device's \(guestCID)")
        }
        reset()
        counters = state.counters
        negotiatedFeatures = state.negotiatedFeatures
        if state.negotiatedFeatures != 0 { postTransportReset() }
    }
}
