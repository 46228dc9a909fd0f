// VirtioNet.swift — the virtio-net core (virtio 1.2 §5.1): one receive and
// one transmit queue, the configuration (MAC, link status), the features
// (MAC, STATUS, MRG_RXBUF, and the checksum/TSO/ECN/UFO offloads only when
// the back end takes them), and the frames:
//
// - transmit: each chain is the 12-byte virtio_net_hdr_v1 and a frame, read
//   across any descriptor boundaries and sent to the back end. A frame over
//   64 KiB is dropped and counted without being read; so is a frame that
//   asks for an offload the back end does not take.
// - receive: frames the back end holds go into writable chains, header
//   first; with MRG_RXBUF one frame spans as many chains as it needs
//   (num_buffers says how many), else one chain holds it or it is dropped
//   and counted. Chains are only taken once the whole frame fits, so with no
//   room the frame waits (one in the device, the rest in the back end).
//
// A chain without room for the header cannot be used: the device breaks, as
// in QEMU.
import PCI

public final class VirtioNetDevice: VirtioDevice {
    public enum Feature {
        public static let checksum: UInt64 = 1 << 0
        public static let guestChecksum: UInt64 = 1 << 1
        public static let mac: UInt64 = 1 << 5
        public static let guestTSO4: UInt64 = 1 << 7
        public static let guestTSO6: UInt64 = 1 << 8
        public static let guestECN: UInt64 = 1 << 9
        public static let guestUFO: UInt64 = 1 << 10
        public static let hostTSO4: UInt64 = 1 << 11
        public static let hostTSO6: UInt64 = 1 << 12
        public static let hostECN: UInt64 = 1 << 13
        public static let hostUFO: UInt64 = 1 << 14
        public static let mergeableReceiveBuffers: UInt64 = 1 << 15
        public static let status: UInt64 = 1 << 16
    }

    public enum QueueIndex {
        public static let receive = 0
        public static let transmit = 1
    }

    /// virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start,
    /// csum_offset, num_buffers.
    public static let headerSize = 12
    /// The largest frame either way (a 64 KiB TSO/GSO frame).
    public static let maximumFrameBytes = 65536
    /// Frames one receive pass handles, dropped ones included, so a back end
    /// that never runs dry cannot hold the caller.
    public static let maximumFramesPerPass = 1024
    static let linkUp: UInt16 = 1
    static let headerNeedsChecksum: UInt8 = 1

    /// Frames, bytes (without headers) and drops each way.
    public struct Counters: Codable, Sendable, Equatable {
        public var transmittedFrames: UInt64 = 0
        public var transmittedBytes: UInt64 = 0
        public var transmitDrops: UInt64 = 0
        public var receivedFrames: UInt64 = 0
        public var receivedBytes: UInt64 = 0
        public var receiveDrops: UInt64 = 0
        public init() {}
    }

    public let deviceType = VirtioDeviceType.network
    public let pciClassCode: UInt32 = 0x02_0000
    public let backend: any NetBackend
    public let queueSize: UInt16
    public private(set) var negotiatedFeatures: UInt64 = 0
    public private(set) var counters = Counters()
    /// The frame taken from the back end that waits for receive buffers.
    private var pendingFrame: NetFrame?
    /// A frame taken from the back end waits for receive buffers.
    public var hasPendingFrame: Bool { pendingFrame != nil }

    public init(backend: any NetBackend, queueSize: UInt16 = 256) {
        self.backend = backend
        self.queueSize = queueSize
    }

    /// The feature bits `offloads` allow, dependencies respected (§5.1.3.1:
    /// TSO and UFO need checksum offload, ECN needs TSO).
    public static func offloadFeatures(_ offloads: NetOffloads) -> UInt64 {
        guard offloads.contains(.checksum) else { return 0 }
        var bits = Feature.checksum | Feature.guestChecksum
        if offloads.contains(.tso4) { bits |= Feature.hostTSO4 | Feature.guestTSO4 }
        if offloads.contains(.tso6) { bits |= Feature.hostTSO6 | Feature.guestTSO6 }
        if offloads.contains(.ecn), !offloads.isDisjoint(with: [.tso4, .tso6]) { bits |= Feature.hostECN | Feature.guestECN }
        if offloads.contains(.ufo) { bits |= Feature.hostUFO | Feature.guestUFO }
        return bits
    }

    /// The offloads the driver takes on what it receives (GUEST_* bits).
    static func receiveOffloads(_ features: UInt64) -> NetOffloads {
        var offloads: NetOffloads = []
        if features & Feature.guestChecksum != 0 { offloads.insert(.checksum) }
        if features & Feature.guestTSO4 != 0 { offloads.insert(.tso4) }
        if features & Feature.guestTSO6 != 0 { offloads.insert(.tso6) }
        if features & Feature.guestECN != 0 { offloads.insert(.ecn) }
        if features & Feature.guestUFO != 0 { offloads.insert(.ufo) }
        return offloads
    }

    public var deviceFeatures: UInt64 {
        Feature.mac | Feature.status | Feature.mergeableReceiveBuffers | Self.offloadFeatures(backend.offloads)
    }

    public var queueMaxSizes: [UInt16] { [queueSize, queueSize] }

    /// struct virtio_net_config up to max_virtqueue_pairs: mac, status, 1 pair.
    public var configBytes: [UInt8] {
        backend.macAddress.bytes + [UInt8(Self.linkUp), 0, 1, 0]
    }

    public func activate(features: UInt64) {
        negotiatedFeatures = features
        backend.enableReceiveOffloads(Self.receiveOffloads(features))
    }

    public func reset() {
        negotiatedFeatures = 0
        pendingFrame = nil
        backend.enableReceiveOffloads([])
    }

    public func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        switch index {
        case QueueIndex.receive: try receive(queue: &queue, memory: memory)
        case QueueIndex.transmit:
            while let chain = try queue.popAvailable(memory: memory) {
                try transmit(chain, memory: memory)
                try queue.pushUsed(head: chain.head, length: 0, memory: memory)
            }
        default: break
        }
    }

    // MARK: - Transmit

    private func transmit(_ chain: DescriptorChain, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        let length = chain.readableLength
        guard length >= UInt64(Self.headerSize) else {
            throw .malformedRequest("virtio-net transmit chain shorter than its 12-byte header")
        }
        let frameLength = length - UInt64(Self.headerSize)
        guard frameLength > 0, frameLength <= UInt64(Self.maximumFrameBytes) else {
            counters.transmitDrops += 1
            return
        }
        let bytes = try chain.readBytes(count: Int(length), memory: memory)
        var header = Array(bytes[0..<Self.headerSize])
        let frame = Array(bytes[Self.headerSize...])
        if backend.offloads.isEmpty {
            // No header crosses: a frame that needs a checksum filled in or
            // segmenting (gso_type) cannot be sent as it is.
            guard header[0] & Self.headerNeedsChecksum == 0, header[1] == 0 else {
                counters.transmitDrops += 1
                return
            }
            header = []
        } else {
            header[10] = 0   // num_buffers means nothing on transmit
            header[11] = 0
        }
        guard backend.send(frame: frame, header: header) else {
            counters.transmitDrops += 1
            return
        }
        counters.transmittedFrames += 1
        counters.transmittedBytes += UInt64(frame.count)
    }

    // MARK: - Receive

    private var mergeable: Bool { negotiatedFeatures & Feature.mergeableReceiveBuffers != 0 }

    /// Receive chains hold only writable buffers, each with room for the header.
    private func checkReceiveChain(_ chain: DescriptorChain) throws(VirtqueueError) {
        guard chain.readable.isEmpty else { throw .malformedRequest("virtio-net receive chain with device-readable buffers") }
        guard chain.writableLength >= UInt64(Self.headerSize) else {
            throw .malformedRequest("virtio-net receive chain shorter than the 12-byte header")
        }
    }

    private enum ReceivePlan {
        case chains(Int)
        case drop
        case wait
    }

    /// How many chains `total` bytes need, without taking any.
    private func plan(_ total: UInt64, queue: SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) -> ReceivePlan {
        var room: UInt64 = 0
        var chains = 0
        while room < total {
            guard chains < queue.popsLeftInBatch, chains < Int(queue.size),
                  let chain = try queue.peekAvailable(ahead: UInt16(chains), memory: memory) else { return .wait }
            try checkReceiveChain(chain)
            if !mergeable, chain.writableLength < total { return .drop }
            room += chain.writableLength
            chains += 1
        }
        return .chains(chains)
    }

    private func receive(queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        for _ in 0..<Self.maximumFramesPerPass {
            guard let incoming = pendingFrame ?? backend.receive() else { return }
            pendingFrame = incoming
            guard !incoming.frame.isEmpty, incoming.frame.count <= Self.maximumFrameBytes else {
                counters.receiveDrops += 1
                pendingFrame = nil
                continue
            }
            let total = UInt64(Self.headerSize + incoming.frame.count)
            switch try plan(total, queue: queue, memory: memory) {
            case .wait:
                return
            case .drop:
                counters.receiveDrops += 1
            case let .chains(count):
                try deliver(incoming, header: receiveHeader(incoming, buffers: count), chains: count, queue: &queue, memory: memory)
            }
            pendingFrame = nil
        }
    }

    /// The back end's header (or zeros) with num_buffers filled in.
    private func receiveHeader(_ incoming: NetFrame, buffers: Int) -> [UInt8] {
        var header = incoming.header.count == Self.headerSize ? incoming.header : Array(repeating: 0, count: Self.headerSize)
        let count = UInt16(clamping: buffers)
        header[10] = UInt8(truncatingIfNeeded: count)
        header[11] = UInt8(truncatingIfNeeded: count >> 8)
        return header
    }

    private func deliver(_ incoming: NetFrame, header: [UInt8], chains: Int, queue: inout SplitQueue,
                         memory: any GuestMemoryAccess) throws(VirtqueueError) {
        let packet = header + incoming.frame
        var offset = 0
        for _ in 0..<chains {
            // The chains were just looked at; a driver that rewrote them
            // since gets what fits.
            guard offset < packet.count, let chain = try queue.popAvailable(memory: memory) else { break }
            try checkReceiveChain(chain)
            let end = min(packet.count, offset + Int(min(chain.writableLength, UInt64(packet.count))))
            let written = try chain.writeBytes(Array(packet[offset..<end]), memory: memory)
            try queue.pushUsed(head: chain.head, length: UInt32(written), memory: memory)
            offset += written
        }
        guard offset == packet.count else {
            counters.receiveDrops += 1
            return
        }
        counters.receivedFrames += 1
        counters.receivedBytes += UInt64(incoming.frame.count)
    }

    // MARK: - State

    /// What a snapshot keeps: the features in force, the MAC the guest
    /// knows, the counters. A frame waiting for buffers is not kept (a
    /// network may lose a frame).
    public struct State: Codable, Sendable, Equatable {
        public var negotiatedFeatures: UInt64
        public var macAddress: MACAddress
        public var counters: Counters
    }

    public func exportState() -> State {
        State(negotiatedFeatures: negotiatedFeatures, macAddress: backend.macAddress, counters: counters)
    }

    /// Refuses features this device does not offer and another MAC (the
    /// guest would keep the old one); a running device is activated again.
    public func importState(_ state: State) throws(PCIStateError) {
        try PCIStateError.checkBits(state.negotiatedFeatures, allowed: deviceFeatures | VirtioFeature.transport,
                                    device: "virtio-net", field: "negotiatedFeatures")
        guard state.macAddress == backend.macAddress else {
            throw PCIStateError(device: "virtio-net", field: "macAddress",
                                "the snapshot's \(state.macAddress) is not this device's \(backend.macAddress)")
        }
        reset()
        counters = state.counters
        if state.negotiatedFeatures != 0 { activate(features: state.negotiatedFeatures) }
    }
}
