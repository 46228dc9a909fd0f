// MSIX.swift — the MSI-X capability (PCI 3.0 §6.8.2): the capability in
// configuration space (message control with its enable and function-mask
// bits, the table and PBA locations), the vector table and the pending-bit
// array in a BAR, and the delivery rule: a vector that fires while masked
// (its own mask bit or the function mask) becomes pending and is delivered
// when unmasked.
//
// Table accesses: the guest uses aligned dwords or qwords (PCI 3.0 says
// other widths are undefined); any width is answered byte by byte here.
// Entries start masked, as after reset.

/// An MSI message: what the device writes to raise an interrupt.
public struct MSIMessage: Sendable, Hashable, Codable {
    public var address: UInt64
    public var data: UInt32

    public init(address: UInt64, data: UInt32) {
        self.address = address
        self.data = data
    }
}

/// Where MSI-X messages go: the VMM injects them (`KVM_SIGNAL_MSI`, or the
/// irqfd it routed for the vector). `vectorChanged` says a vector's address,
/// data or masking changed, so routed irqfds can follow.
public protocol MSIXDelivery: AnyObject {
    func deliver(_ message: MSIMessage)
    func vectorChanged(_ vector: Int)
}

extension MSIXDelivery {
    public func vectorChanged(_ vector: Int) {}
}

/// One table entry.
public struct MSIXTableEntry: Sendable, Equatable, Codable {
    public var messageAddress: UInt64
    public var messageData: UInt32
    /// Bit 0: masked; the other bits are reserved (zero).
    public var vectorControl: UInt32

    public static let masked = MSIXTableEntry(messageAddress: 0, messageData: 0, vectorControl: 1)

    public var isMasked: Bool { vectorControl & 1 != 0 }
    public var message: MSIMessage { MSIMessage(address: messageAddress, data: messageData) }
}

/// The MSI-X capability of one function.
public final class MSIXCapability {
    public static let capabilityID: UInt8 = 0x11
    /// Message control bits (in the word at capability + 2).
    public static let enableBit: UInt16 = 1 << 15
    public static let functionMaskBit: UInt16 = 1 << 14
    public static let maximumVectors = 2048
    public static let entrySize = 16

    public let vectorCount: Int
    public let capabilityOffset: Int
    public let tableBAR: Int
    public let tableOffset: UInt32
    public let pbaBAR: Int
    public let pbaOffset: UInt32
    private let config: PCIConfigSpace
    public private(set) var entries: [MSIXTableEntry]
    private var pending: [Bool]
    public weak var delivery: (any MSIXDelivery)?
    /// Message control as last seen, to notice enable or function-mask changes.
    private var lastControl: UInt16

    /// Adds the capability to `config`: `vectorCount` entries (1–2048), the
    /// table at `tableOffset` of BAR `tableBAR` and the PBA at `pbaOffset` of
    /// BAR `pbaBAR` (both offsets 8-byte aligned).
    public init(config: PCIConfigSpace, vectorCount: Int, tableBAR: Int, tableOffset: UInt32,
                pbaBAR: Int, pbaOffset: UInt32) throws(PCIError) {
        guard vectorCount >= 1, vectorCount <= Self.maximumVectors, tableOffset & 7 == 0, pbaOffset & 7 == 0,
              (0..<6).contains(tableBAR), (0..<6).contains(pbaBAR) else {
            throw .capabilitySpaceFull(id: Self.capabilityID, length: 12)
        }
        self.config = config
        self.vectorCount = vectorCount
        self.tableBAR = tableBAR
        self.tableOffset = tableOffset
        self.pbaBAR = pbaBAR
        self.pbaOffset = pbaOffset
        entries = Array(repeating: .masked, count: vectorCount)
        pending = Array(repeating: false, count: vectorCount)
        let control = UInt16(vectorCount - 1)
        var body: [UInt8] = [UInt8(truncatingIfNeeded: control), UInt8(truncatingIfNeeded: control >> 8)]
        body += Self.littleEndian(tableOffset | UInt32(tableBAR))
        body += Self.littleEndian(pbaOffset | UInt32(pbaBAR))
        var writable = Array(repeating: UInt8(0), count: body.count)
        writable[1] = UInt8(truncatingIfNeeded: (Self.enableBit | Self.functionMaskBit) >> 8)
        capabilityOffset = try config.addCapability(id: Self.capabilityID, body: body, writableBody: writable)
        lastControl = control
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    public var messageControl: UInt16 { config.word(capabilityOffset + 2) }
    public var isEnabled: Bool { messageControl & Self.enableBit != 0 }
    public var isFunctionMasked: Bool { messageControl & Self.functionMaskBit != 0 }

    /// Bytes of the table and of the PBA (a bit per vector, in qwords).
    public var tableSize: UInt64 { UInt64(vectorCount * Self.entrySize) }
    public var pbaSize: UInt64 { UInt64((vectorCount + 63) / 64 * 8) }

    public func isPending(_ vector: Int) -> Bool { vector >= 0 && vector < vectorCount && pending[vector] }

    // MARK: - Firing

    /// Raises `vector`: delivered now, or made pending when masked. False when
    /// MSI-X is disabled or the vector does not exist (the caller falls back
    /// to INTx or drops it).
    @discardableResult
    public func signal(_ vector: Int) -> Bool {
        guard isEnabled, vector >= 0, vector < vectorCount else { return false }
        if isFunctionMasked || entries[vector].isMasked {
            pending[vector] = true
        } else {
            delivery?.deliver(entries[vector].message)
        }
        return true
    }

    /// Delivers the pending vectors that are no longer masked.
    private func deliverUnmaskedPending() {
        guard isEnabled, !isFunctionMasked else { return }
        for vector in 0..<vectorCount where pending[vector] && !entries[vector].isMasked {
            pending[vector] = false
            delivery?.deliver(entries[vector].message)
        }
    }

    /// Call after every guest write to configuration space: follows the
    /// enable and function-mask bits.
    public func configurationWritten() {
        let control = messageControl
        guard control != lastControl else { return }
        lastControl = control
        for vector in 0..<vectorCount { delivery?.vectorChanged(vector) }
        deliverUnmaskedPending()
    }

    // MARK: - Table and PBA

    private func tableByte(_ index: Int) -> UInt8 {
        let entry = entries[index / Self.entrySize]
        let field = index % Self.entrySize
        let value: UInt64 = switch field / 4 {
        case 0: entry.messageAddress & 0xFFFF_FFFF
        case 1: entry.messageAddress >> 32
        case 2: UInt64(entry.messageData)
        default: UInt64(entry.vectorControl)
        }
        return UInt8(truncatingIfNeeded: value >> (8 * (field % 4)))
    }

    /// Reads `size` bytes at `offset` in the table; past its end reads zero.
    public func readTable(offset: UInt64, size: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<Self.width(size) {
            let at = offset &+ UInt64(index)
            guard at < tableSize else { break }
            value |= UInt64(tableByte(Int(at))) << (8 * index)
        }
        return value
    }

    /// Writes the table. Address bits 1:0 and the reserved vector-control
    /// bits stay zero. Unmasking delivers what was pending.
    public func writeTable(offset: UInt64, size: Int, value: UInt64) {
        var touched: Set<Int> = []
        for index in 0..<Self.width(size) {
            let at = offset &+ UInt64(index)
            guard at < tableSize else { break }
            let vector = Int(at) / Self.entrySize
            let field = Int(at) % Self.entrySize
            let byte = UInt64(UInt8(truncatingIfNeeded: value >> (8 * index)))
            let shift = UInt64(8 * (field % 4))
            var entry = entries[vector]
            switch field / 4 {
            case 0:
                entry.messageAddress = (entry.messageAddress & ~(0xFF << shift)) | (byte << shift)
                entry.messageAddress &= ~3
            case 1:
                entry.messageAddress = (entry.messageAddress & ~(0xFF << (32 + shift))) | (byte << (32 + shift))
            case 2:
                entry.messageData = (entry.messageData & ~(0xFF << UInt32(shift))) | UInt32(byte) << UInt32(shift)
            default:
                if field % 4 == 0 { entry.vectorControl = UInt32(byte & 1) }
            }
            if entry != entries[vector] {
                entries[vector] = entry
                touched.insert(vector)
            }
        }
        for vector in touched.sorted() { delivery?.vectorChanged(vector) }
        if !touched.isEmpty { deliverUnmaskedPending() }
    }

    /// Reads the PBA; writes to it are ignored (it is read-only).
    public func readPBA(offset: UInt64, size: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<Self.width(size) {
            let byte = offset &+ UInt64(index)
            guard byte < pbaSize else { break }
            let bit = Int(byte) * 8
            for b in 0..<8 where bit + b < vectorCount && pending[bit + b] {
                value |= 1 << (8 * index + b)
            }
        }
        return value
    }

    static func width(_ size: Int) -> Int { [1, 2, 4, 8].contains(size) ? size : 8 }

    /// Back to reset: every entry masked and cleared, nothing pending. (The
    /// message control word is reset with the configuration space.)
    public func reset() {
        entries = Array(repeating: .masked, count: vectorCount)
        pending = Array(repeating: false, count: vectorCount)
        lastControl = messageControl
    }

    // MARK: - State

    public struct State: Codable, Sendable, Equatable {
        public var entries: [MSIXTableEntry]
        /// The pending vectors, ascending.
        public var pending: [Int]
    }

    public func exportState() -> State {
        State(entries: entries, pending: (0..<vectorCount).filter { pending[$0] })
    }

    /// Restores the table and pending bits (after the configuration space,
    /// whose message control it reads). Delivers nothing: a pending vector
    /// waits for an unmask as it did before the save.
    public func importState(_ state: State, device: String) throws(PCIStateError) {
        guard state.entries.count == vectorCount else {
            throw PCIStateError(device: device, field: "msix.entries", "\(state.entries.count) entries, this device has \(vectorCount)")
        }
        for (index, entry) in state.entries.enumerated() {
            try PCIStateError.checkBits(entry.vectorControl, allowed: 1, device: device, field: "msix.entries[\(index)].vectorControl")
            try PCIStateError.checkBits(entry.messageAddress, allowed: ~3, device: device, field: "msix.entries[\(index)].messageAddress")
        }
        if let bad = state.pending.first(where: { $0 < 0 || $0 >= vectorCount }) {
            throw PCIStateError(device: device, field: "msix.pending", "vector \(bad) does not exist")
        }
        entries = state.entries
        pending = Array(repeating: false, count: vectorCount)
        for vector in state.pending { pending[vector] = true }
        lastControl = messageControl
    }
}
