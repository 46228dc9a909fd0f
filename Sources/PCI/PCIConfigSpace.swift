// PCIConfigSpace.swift — one type-0 PCI function's 4 KiB configuration space
// (256 bytes of PCI Local Bus 3.0 header and capabilities, then PCIe's
// extended space) with what the guest may change in it: a writable mask and a
// write-one-to-clear mask per byte, as QEMU keeps them (`wmask`, `w1cmask`).
// BARs answer sizing by their writable masks alone: a write of all ones reads
// back ~(size − 1) with the read-only type bits, as hardware does.
//
// Access widths: any offset, 1, 2 or 4 bytes (other sizes count as 4), little
// endian, byte by byte; an access running past 4 KiB is clipped and the
// missing high bytes read as zero (QEMU's pci_host_config_read_common).
// Whether an unaligned access reaches here at all is the mechanism's choice
// (PCIBus: ports 0xCFC–0xCFF and ECAM both pass them through, as QEMU does).

/// What a BAR decodes.
public enum PCIBarKind: String, Codable, Sendable, Equatable {
    /// 32-bit memory BAR.
    case memory32
    /// 64-bit memory BAR: this register and the next hold the address.
    case memory64
    /// I/O port BAR (16-bit port addresses on x86).
    case io
}

/// A BAR a device implements: its kind and size (a power of two, at least 16
/// bytes for memory and 4 for I/O).
public struct PCIBarDefinition: Sendable, Equatable {
    public var kind: PCIBarKind
    public var size: UInt64
    public var prefetchable: Bool

    public init(kind: PCIBarKind, size: UInt64, prefetchable: Bool = false) {
        self.kind = kind
        self.size = size
        self.prefetchable = prefetchable
    }

    var isMemory: Bool { kind != .io }
}

/// The fixed identity of a function: what the guest reads but cannot write.
public struct PCIIdentity: Sendable, Equatable {
    public var vendorID: UInt16
    public var deviceID: UInt16
    public var revision: UInt8
    /// Base class, subclass and programming interface, as 0xBBSSPP.
    public var classCode: UInt32
    public var subsystemVendorID: UInt16
    public var subsystemID: UInt16
    /// INTx pin: 0 none, 1 INTA# … 4 INTD#.
    public var interruptPin: UInt8

    public init(vendorID: UInt16, deviceID: UInt16, revision: UInt8 = 0, classCode: UInt32,
                subsystemVendorID: UInt16 = 0, subsystemID: UInt16 = 0, interruptPin: UInt8 = 0) {
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.revision = revision
        self.classCode = classCode
        self.subsystemVendorID = subsystemVendorID
        self.subsystemID = subsystemID
        self.interruptPin = interruptPin
    }
}

/// Why a device could not lay out its configuration space, or a bus refused it.
public enum PCIError: Error, Equatable, Sendable, CustomStringConvertible {
    case barIndexOutOfRange(Int)
    case barSizeInvalid(Int, UInt64)
    case barOccupied(Int)
    case capabilitySpaceFull(id: UInt8, length: Int)
    case busFull(String)
    case slotInvalid(Int)
    case slotOccupied(Int, String)
    case windowExhausted(device: String, bar: Int, size: UInt64)

    public var description: String {
        switch self {
        case let .barIndexOutOfRange(index): "BAR \(index) does not exist (0–5; a 64-bit BAR takes two registers)"
        case let .barSizeInvalid(index, size): "BAR \(index): size \(size) is not a power of two of at least 16 (memory) or 4 (I/O) bytes"
        case let .barOccupied(index): "BAR \(index) is already defined"
        case let .capabilitySpaceFull(id, length):
            "capability 0x\(String(id, radix: 16)) of \(length) bytes does not fit in the 256-byte configuration header"
        case let .busFull(name): "no free slot on bus 0 for \(name)"
        case let .slotInvalid(slot): "slot \(slot) does not exist (0–31)"
        case let .slotOccupied(slot, name): "slot \(slot) is taken by \(name)"
        case let .windowExhausted(device, bar, size):
            "\(device) BAR \(bar): no room for \(size) bytes in the PCI window"
        }
    }
}

/// Register offsets of the type-0 header.
public enum PCIConfigRegister {
    public static let vendorID = 0x00
    public static let deviceID = 0x02
    public static let command = 0x04
    public static let status = 0x06
    public static let revision = 0x08
    public static let classCode = 0x09
    public static let cacheLineSize = 0x0C
    public static let latencyTimer = 0x0D
    public static let headerType = 0x0E
    public static let bar0 = 0x10
    public static let subsystemVendorID = 0x2C
    public static let subsystemID = 0x2E
    public static let expansionROM = 0x30
    public static let capabilityPointer = 0x34
    public static let interruptLine = 0x3C
    public static let interruptPin = 0x3D
}

/// Command register bits.
public enum PCICommand {
    public static let ioSpace: UInt16 = 1 << 0
    public static let memorySpace: UInt16 = 1 << 1
    public static let busMaster: UInt16 = 1 << 2
    public static let parityErrorResponse: UInt16 = 1 << 6
    public static let serrEnable: UInt16 = 1 << 8
    public static let interruptDisable: UInt16 = 1 << 10
    /// What a guest may change; the rest (special cycles, MWI, VGA snoop,
    /// fast back-to-back) is hard-wired to zero.
    public static let writable: UInt16 = ioSpace | memorySpace | busMaster | parityErrorResponse | serrEnable | interruptDisable
}

/// Status register bits.
public enum PCIStatus {
    public static let interruptStatus: UInt16 = 1 << 3
    public static let capabilityList: UInt16 = 1 << 4
    /// The error bits a write of one clears (master data parity error,
    /// signaled/received target abort, received master abort, signaled system
    /// error, detected parity error).
    public static let writeOneToClear: UInt16 = 0xF900
}

/// A type-0 function's configuration space. A class: the device, the bus and
/// the MSI-X logic all look at the same bytes.
public final class PCIConfigSpace {
    public static let size = 4096
    /// End of the legacy space, where the capability list must live.
    public static let legacySize = 256

    public private(set) var bytes: [UInt8]
    private var writable: [UInt8]
    private var writeOneToClear: [UInt8]
    /// Bits the device itself changes at run time (interrupt status): neither
    /// guest-writable nor fixed, so a restored state may differ there.
    private var deviceDriven: [UInt8]
    public private(set) var bars: [PCIBarDefinition?] = Array(repeating: nil, count: 6)
    private var nextCapabilityOffset = 0x40
    private var lastCapabilityOffset: Int?

    public init(identity: PCIIdentity) {
        bytes = Array(repeating: 0, count: Self.size)
        writable = Array(repeating: 0, count: Self.size)
        writeOneToClear = Array(repeating: 0, count: Self.size)
        deviceDriven = Array(repeating: 0, count: Self.size)
        setWord(PCIConfigRegister.vendorID, identity.vendorID)
        setWord(PCIConfigRegister.deviceID, identity.deviceID)
        bytes[PCIConfigRegister.revision] = identity.revision
        bytes[0x09] = UInt8(truncatingIfNeeded: identity.classCode)
        bytes[0x0A] = UInt8(truncatingIfNeeded: identity.classCode >> 8)
        bytes[0x0B] = UInt8(truncatingIfNeeded: identity.classCode >> 16)
        setWord(PCIConfigRegister.subsystemVendorID, identity.subsystemVendorID)
        setWord(PCIConfigRegister.subsystemID, identity.subsystemID)
        bytes[PCIConfigRegister.interruptPin] = identity.interruptPin
        setMaskWord(&writable, PCIConfigRegister.command, PCICommand.writable)
        setMaskWord(&writeOneToClear, PCIConfigRegister.status, PCIStatus.writeOneToClear)
        setMaskWord(&deviceDriven, PCIConfigRegister.status, PCIStatus.interruptStatus)
        writable[PCIConfigRegister.cacheLineSize] = 0xFF
        writable[PCIConfigRegister.latencyTimer] = 0xFF
        writable[PCIConfigRegister.interruptLine] = 0xFF
    }

    // MARK: - Guest access

    /// Reads `size` bytes at `offset`, little endian.
    public func read(offset: Int, size: Int) -> UInt32 {
        var value: UInt32 = 0
        for index in 0..<Self.width(size) {
            let at = offset + index
            guard at >= 0, at < Self.size else { break }
            value |= UInt32(bytes[at]) << (8 * index)
        }
        return value
    }

    /// Writes `size` bytes at `offset` as the guest may: only writable bits
    /// change, and ones written to write-one-to-clear bits clear them.
    public func write(offset: Int, size: Int, value: UInt32) {
        for index in 0..<Self.width(size) {
            let at = offset + index
            guard at >= 0, at < Self.size else { break }
            let byte = UInt8(truncatingIfNeeded: value >> (8 * index))
            let mask = writable[at]
            var new = (bytes[at] & ~mask) | (byte & mask)
            new &= ~(byte & writeOneToClear[at])
            bytes[at] = new
        }
    }

    static func width(_ size: Int) -> Int { size == 1 || size == 2 ? size : 4 }

    // MARK: - Device-side access (no masks)

    public func byte(_ offset: Int) -> UInt8 { bytes[offset] }
    public func word(_ offset: Int) -> UInt16 { UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8 }
    public func dword(_ offset: Int) -> UInt32 { UInt32(word(offset)) | UInt32(word(offset + 2)) << 16 }

    public func setByte(_ offset: Int, _ value: UInt8) { bytes[offset] = value }
    public func setWord(_ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(truncatingIfNeeded: value)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }
    public func setDword(_ offset: Int, _ value: UInt32) {
        setWord(offset, UInt16(truncatingIfNeeded: value))
        setWord(offset + 2, UInt16(truncatingIfNeeded: value >> 16))
    }

    /// Makes the bits of `mask` in the word at `offset` guest-writable.
    public func setWritableWord(_ offset: Int, _ mask: UInt16) { setMaskWord(&writable, offset, mask) }
    public func setWritableDword(_ offset: Int, _ mask: UInt32) {
        setMaskWord(&writable, offset, UInt16(truncatingIfNeeded: mask))
        setMaskWord(&writable, offset + 2, UInt16(truncatingIfNeeded: mask >> 16))
    }

    private func setMaskWord(_ masks: inout [UInt8], _ offset: Int, _ value: UInt16) {
        masks[offset] = UInt8(truncatingIfNeeded: value)
        masks[offset + 1] = UInt8(truncatingIfNeeded: value >> 8)
    }

    // MARK: - Command and status

    public var command: UInt16 { word(PCIConfigRegister.command) }
    public var memoryDecodeEnabled: Bool { command & PCICommand.memorySpace != 0 }
    public var ioDecodeEnabled: Bool { command & PCICommand.ioSpace != 0 }
    public var busMasterEnabled: Bool { command & PCICommand.busMaster != 0 }
    public var interruptDisabled: Bool { command & PCICommand.interruptDisable != 0 }

    /// Sets or clears the status register's interrupt-status bit (INTx pending).
    public func setInterruptStatus(_ pending: Bool) {
        var status = word(PCIConfigRegister.status)
        if pending { status |= PCIStatus.interruptStatus } else { status &= ~PCIStatus.interruptStatus }
        setWord(PCIConfigRegister.status, status)
    }

    /// Enables decoding as firmware does after placing the BARs.
    public func enableDecoding(memory: Bool, io: Bool) {
        var command = self.command
        if memory { command |= PCICommand.memorySpace }
        if io { command |= PCICommand.ioSpace }
        setWord(PCIConfigRegister.command, command)
    }

    // MARK: - BARs

    /// Declares BAR `index`. A 64-bit BAR also takes register `index + 1`.
    public func defineBAR(_ index: Int, _ definition: PCIBarDefinition) throws(PCIError) {
        let registers = definition.kind == .memory64 ? 2 : 1
        guard index >= 0, index + registers <= 6 else { throw .barIndexOutOfRange(index) }
        let minimum: UInt64 = definition.isMemory ? 16 : 4
        let maximum: UInt64 = switch definition.kind {
        case .memory32: 1 << 31
        case .memory64: 1 << 63
        case .io: 1 << 8   // PCI 3.0: an I/O BAR claims at most 256 ports
        }
        guard definition.size >= minimum, definition.size <= maximum, definition.size & (definition.size - 1) == 0 else {
            throw .barSizeInvalid(index, definition.size)
        }
        guard bars[index] == nil, !isUpperHalfOf64BitBAR(index), registers == 1 || bars[index + 1] == nil else {
            throw .barOccupied(index)
        }
        bars[index] = definition
        let offset = PCIConfigRegister.bar0 + 4 * index
        let sizeMask = ~(definition.size - 1)
        switch definition.kind {
        case .memory32:
            setDword(offset, definition.prefetchable ? 0x8 : 0)
            setWritableDword(offset, UInt32(truncatingIfNeeded: sizeMask) & 0xFFFF_FFF0)
        case .memory64:
            setDword(offset, 0x4 | (definition.prefetchable ? 0x8 : 0))
            setWritableDword(offset, UInt32(truncatingIfNeeded: sizeMask) & 0xFFFF_FFF0)
            setWritableDword(offset + 4, UInt32(truncatingIfNeeded: sizeMask >> 32))
        case .io:
            setDword(offset, 0x1)
            setWritableDword(offset, UInt32(truncatingIfNeeded: sizeMask) & 0xFFFC)
        }
    }

    /// True when `index` is the upper register of a 64-bit BAR.
    public func isUpperHalfOf64BitBAR(_ index: Int) -> Bool {
        index > 0 && index < 6 && bars[index - 1]?.kind == .memory64
    }

    /// The address BAR `index` holds now (whatever the guest programmed), nil
    /// when the BAR is not defined.
    public func barAddress(_ index: Int) -> UInt64? {
        guard index >= 0, index < 6, let definition = bars[index] else { return nil }
        let offset = PCIConfigRegister.bar0 + 4 * index
        switch definition.kind {
        case .memory32: return UInt64(dword(offset) & 0xFFFF_FFF0)
        case .memory64: return UInt64(dword(offset) & 0xFFFF_FFF0) | UInt64(dword(offset + 4)) << 32
        case .io: return UInt64(dword(offset) & 0xFFFF_FFFC)
        }
    }

    /// Programs BAR `index` with `address` (firmware's placement), keeping the
    /// type bits; bits below the size are dropped.
    public func setBARAddress(_ index: Int, _ address: UInt64) {
        guard index >= 0, index < 6, let definition = bars[index] else { return }
        let offset = PCIConfigRegister.bar0 + 4 * index
        let aligned = address & ~(definition.size - 1)
        let typeBits = dword(offset) & (definition.kind == .io ? 0x3 : 0xF)
        setDword(offset, UInt32(truncatingIfNeeded: aligned) & (definition.kind == .io ? 0xFFFC : 0xFFFF_FFF0) | typeBits)
        if definition.kind == .memory64 { setDword(offset + 4, UInt32(truncatingIfNeeded: aligned >> 32)) }
    }

    // MARK: - Capabilities

    /// Appends a capability to the list: `id`, the next pointer, then `body`.
    /// `writableBody` (same length as `body`, or empty for none) says which
    /// body bits the guest may write. Returns the capability's offset.
    @discardableResult
    public func addCapability(id: UInt8, body: [UInt8], writableBody: [UInt8] = []) throws(PCIError) -> Int {
        let length = 2 + body.count
        let offset = nextCapabilityOffset
        guard offset + length <= Self.legacySize, writableBody.isEmpty || writableBody.count == body.count else {
            throw .capabilitySpaceFull(id: id, length: length)
        }
        bytes[offset] = id
        bytes[offset + 1] = 0
        for (index, byte) in body.enumerated() { bytes[offset + 2 + index] = byte }
        for (index, mask) in writableBody.enumerated() { writable[offset + 2 + index] = mask }
        if let last = lastCapabilityOffset {
            bytes[last + 1] = UInt8(offset)
        } else {
            bytes[PCIConfigRegister.capabilityPointer] = UInt8(offset)
            setWord(PCIConfigRegister.status, word(PCIConfigRegister.status) | PCIStatus.capabilityList)
        }
        lastCapabilityOffset = offset
        nextCapabilityOffset = (offset + length + 3) & ~3
        return offset
    }

    /// The capabilities as (id, offset), following the list from 0x34 (at most
    /// 48 steps: a looped list written by no one but us still terminates).
    public var capabilities: [(id: UInt8, offset: Int)] {
        var result: [(id: UInt8, offset: Int)] = []
        var offset = Int(bytes[PCIConfigRegister.capabilityPointer]) & ~3
        while offset >= 0x40, result.count < 48 {
            result.append((id: bytes[offset], offset: offset))
            offset = Int(bytes[offset + 1]) & ~3
        }
        return result
    }

    // MARK: - State

    /// The configuration space as saved: all 4 KiB.
    public struct State: Codable, Sendable, Equatable {
        public var bytes: [UInt8]
        public init(bytes: [UInt8]) { self.bytes = bytes }
    }

    public func exportState() -> State { State(bytes: bytes) }

    /// Takes the saved bytes after checking that every bit the guest cannot
    /// write (identity, BAR types, capability layout) matches this function:
    /// a state from another device or another layout is refused.
    public func importState(_ state: State, device: String) throws(PCIStateError) {
        guard state.bytes.count == Self.size else {
            throw PCIStateError(device: device, field: "config", "\(state.bytes.count) bytes, not \(Self.size)")
        }
        for at in 0..<Self.size {
            let fixed = ~(writable[at] | writeOneToClear[at] | deviceDriven[at])
            guard (state.bytes[at] ^ bytes[at]) & fixed == 0 else {
                throw PCIStateError(device: device, field: "config",
                                    "read-only byte 0x\(String(at, radix: 16)) is 0x\(String(state.bytes[at], radix: 16)), this device has 0x\(String(bytes[at], radix: 16))")
            }
        }
        bytes = state.bytes
    }
}

/// Why a PCI state was refused: names the device and the field, one line.
public struct PCIStateError: Error, Equatable, Sendable, CustomStringConvertible {
    public var device: String
    public var field: String
    public var problem: String

    public init(device: String, field: String, _ problem: String) {
        self.device = device
        self.field = field
        self.problem = problem
    }

    public var description: String { "device state \(device): \(field): \(problem)" }
}
