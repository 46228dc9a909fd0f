// SplitQueue.swift — one split virtqueue (virtio 1.2 §2.7) as the device
// side sees it: the driver-programmed size and ring addresses, checked when
// the driver enables the queue (size a power of two, alignment, every ring
// byte inside RAM, a used ring that overlaps neither of the driver's); the
// device's indices; popping available chains (bounded per batch), pushing
// used elements, and deciding whether to interrupt (EVENT_IDX's used_event,
// or VIRTQ_AVAIL_F_NO_INTERRUPT).
//
// Memory ordering is the GuestMemoryAccess implementation's job: the VMM's
// must make the used element visible before the used index (a release
// store), and read the available index before the ring entries it covers.

public struct SplitQueue: Sendable, Equatable {
    public static let largestSize: UInt16 = 32768

    /// The largest size the device offers (what queue_size reads at reset).
    public let maxSize: UInt16
    public var size: UInt16
    public var ready = false
    public var descriptorTable: UInt64 = 0
    public var availableRing: UInt64 = 0
    public var usedRing: UInt64 = 0
    public var msixVector: UInt16 = virtioNoVector
    /// The next available-ring slot to consume (free-running, mod 2^16).
    public private(set) var nextAvailable: UInt16 = 0
    /// The used index the device publishes next (free-running).
    public private(set) var nextUsed: UInt16 = 0
    /// The used index at the last interrupt decision; nil before the first
    /// (the first decision always interrupts, as QEMU's signalled_used_valid).
    public private(set) var signalledUsed: UInt16?
    /// Something was pushed since the last interrupt decision.
    private var pushedSinceDecision = false
    /// Negotiated: VIRTIO_F_EVENT_IDX and VIRTIO_F_INDIRECT_DESC.
    public var eventIndex = false
    public var indirectDescriptors = false
    /// Pops left in this batch (`beginBatch`): a guest that keeps refilling
    /// the ring cannot keep one call busy forever.
    public private(set) var popsLeftInBatch = Int(SplitQueue.largestSize)

    public init(maxSize: UInt16) {
        self.maxSize = maxSize
        size = maxSize
    }

    /// Back to the state at device reset.
    public mutating func reset() {
        self = SplitQueue(maxSize: maxSize)
    }

    // MARK: - Layout

    var descriptorTableBytes: UInt64 { 16 * UInt64(size) }
    /// flags, idx, ring[size], used_event.
    var availableRingBytes: UInt64 { 6 + 2 * UInt64(size) }
    /// flags, idx, ring[size] of {id, len}, avail_event.
    var usedRingBytes: UInt64 { 6 + 8 * UInt64(size) }

    /// Checks what the driver programmed before the queue is enabled.
    public func validate(memory: any GuestMemoryAccess) throws(VirtqueueError) {
        guard size >= 1, size <= maxSize, size <= Self.largestSize, size & (size - 1) == 0 else { throw .invalidSize(size) }
        let rings: [(String, UInt64, UInt64, UInt64)] = [
            ("descriptor table", descriptorTable, descriptorTableBytes, 16),
            ("available ring", availableRing, availableRingBytes, 2),
            ("used ring", usedRing, usedRingBytes, 4),
        ]
        for (name, address, length, alignment) in rings {
            guard address % alignment == 0 else { throw .misalignedRing(name, address) }
            guard memory.contains(address: address, length: length) else { throw .ringOutsideMemory(name, address, length) }
        }
        func overlaps(_ a: UInt64, _ aLength: UInt64, _ b: UInt64, _ bLength: UInt64) -> Bool {
            a < b + bLength && b < a + aLength
        }
        guard !overlaps(usedRing, usedRingBytes, descriptorTable, descriptorTableBytes),
              !overlaps(usedRing, usedRingBytes, availableRing, availableRingBytes) else { throw .ringsOverlap }
    }

    // MARK: - Available ring

    /// Starts a batch of at most `size` pops.
    public mutating func beginBatch() { popsLeftInBatch = Int(size) }

    /// True when the last batch stopped at its limit with chains left.
    public func hasMoreAvailable(memory: any GuestMemoryAccess) throws(VirtqueueError) -> Bool {
        try availableIndex(memory: memory) != nextAvailable
    }

    private func availableIndex(memory: any GuestMemoryAccess) throws(VirtqueueError) -> UInt16 {
        do { return try memory.readUInt16(at: availableRing &+ 2) } catch { throw .memory(error) }
    }

    /// The chain `ahead` places after the next available one, without
    /// consuming anything (a device that must know the room it has before it
    /// takes buffers, as virtio-net's receive side); nil when the driver has
    /// not made that many available.
    public func peekAvailable(ahead: UInt16 = 0, memory: any GuestMemoryAccess) throws(VirtqueueError) -> DescriptorChain? {
        guard ready, size > 0 else { return nil }
        let available = try availableIndex(memory: memory)
        let outstanding = available &- nextAvailable
        guard outstanding != 0 else { return nil }
        guard outstanding <= size else { throw .availableIndexJump(available: available, next: nextAvailable) }
        guard ahead < outstanding else { return nil }
        let head: UInt16
        do {
            head = try memory.readUInt16(at: availableRing &+ 4 &+ 2 * UInt64((nextAvailable &+ ahead) % size))
        } catch { throw .memory(error) }
        guard head < size else { throw .headOutOfRange(head) }
        return try walkChain(head: head, memory: memory)
    }

    /// The next available chain, nil when there is none (or the batch is
    /// spent). A malformed chain throws and leaves the index where it was.
    public mutating func popAvailable(memory: any GuestMemoryAccess) throws(VirtqueueError) -> DescriptorChain? {
        guard popsLeftInBatch > 0, let chain = try peekAvailable(memory: memory) else { return nil }
        nextAvailable &+= 1
        popsLeftInBatch -= 1
        if eventIndex {
            // avail_event: notify us again only once the driver passes this index.
            do { try memory.writeUInt16(nextAvailable, at: usedRing &+ 4 &+ 8 * UInt64(size)) } catch { throw .memory(error) }
        }
        return chain
    }

    // MARK: - Used ring

    /// Returns chain `head` to the driver with `length` bytes written.
    public mutating func pushUsed(head: UInt16, length: UInt32, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        guard size > 0 else { throw .invalidSize(size) }
        let element = usedRing &+ 4 &+ 8 * UInt64(nextUsed % size)
        do {
            try memory.writeUInt32(UInt32(head), at: element)
            try memory.writeUInt32(length, at: element &+ 4)
            try memory.writeUInt16(nextUsed &+ 1, at: usedRing &+ 2)
        } catch { throw .memory(error) }
        nextUsed &+= 1
        pushedSinceDecision = true
    }

    /// Whether the driver wants an interrupt for what was pushed since the
    /// last decision: with EVENT_IDX when the used index passed used_event
    /// (vring_need_event), else unless VIRTQ_AVAIL_F_NO_INTERRUPT is set.
    public mutating func needsInterrupt(memory: any GuestMemoryAccess) throws(VirtqueueError) -> Bool {
        guard pushedSinceDecision else { return false }
        pushedSinceDecision = false
        let new = nextUsed
        let old = signalledUsed
        signalledUsed = new
        do {
            if eventIndex {
                guard let old else { return true }
                let usedEvent = try memory.readUInt16(at: availableRing &+ 4 &+ 2 * UInt64(size))
                return new &- usedEvent &- 1 < new &- old
            }
            let flags = try memory.readUInt16(at: availableRing)
            return flags & 1 == 0
        } catch { throw .memory(error) }
    }

    // MARK: - State

    public struct State: Codable, Sendable, Equatable {
        public var size: UInt16
        public var ready: Bool
        public var descriptorTable: UInt64
        public var availableRing: UInt64
        public var usedRing: UInt64
        public var msixVector: UInt16
        public var nextAvailable: UInt16
        public var nextUsed: UInt16
        public var signalledUsed: UInt16?
    }

    public var state: State {
        State(size: size, ready: ready, descriptorTable: descriptorTable, availableRing: availableRing, usedRing: usedRing,
              msixVector: msixVector, nextAvailable: nextAvailable, nextUsed: nextUsed, signalledUsed: signalledUsed)
    }

    /// This queue with `state` applied, after the checks enabling it makes
    /// (for a ready queue); the negotiated flags are kept.
    public func restored(_ state: State, memory: any GuestMemoryAccess) throws(VirtqueueError) -> SplitQueue {
        var queue = SplitQueue(maxSize: maxSize)
        queue.size = state.size
        queue.ready = state.ready
        queue.descriptorTable = state.descriptorTable
        queue.availableRing = state.availableRing
        queue.usedRing = state.usedRing
        queue.msixVector = state.msixVector
        queue.nextAvailable = state.nextAvailable
        queue.nextUsed = state.nextUsed
        queue.signalledUsed = state.signalledUsed
        queue.eventIndex = eventIndex
        queue.indirectDescriptors = indirectDescriptors
        // A queue not enabled yet holds whatever the driver wrote; it is
        // checked when enabled, as it would have been.
        if state.ready { try queue.validate(memory: memory) }
        return queue
    }
}
