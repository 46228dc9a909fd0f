// FirmwareConfig.swift — QEMU's fw_cfg device, traditional I/O interface only:
// a 16-bit selector write at port 0x510 picks an item, then 8-bit reads at
// 0x511 return its bytes one by one. Test kernels written for QEMU probe it
// for the signature, RAM size and CPU counts, and look up named files.
//
// Behaviour follows QEMU's combined I/O region (hw/nvram/fw_cfg.c): a 2-byte
// write at either port selects, a 1-byte read at either port returns the next
// data byte, 1-byte writes are ignored (QEMU dropped data writes), and other
// widths are invalid. The DMA interface (port 0x514) is not provided: FW_CFG_ID
// does not advertise it, so a guest that honours the feature bits never
// touches 0x514; the machine leaves that port unowned (an unowned-port event).

/// Why `addFile` refused a file.
public enum FirmwareConfigError: Error, Equatable, CustomStringConvertible {
    /// The name is empty, longer than 55 UTF-8 bytes (the directory holds 56
    /// with the terminating NUL), or contains a NUL byte.
    case invalidName(String)
    /// A file with this name exists already.
    case duplicateName(String)
    /// All `FirmwareConfig.maxFiles` file selectors are in use.
    case tooManyFiles(limit: Int)
    /// The directory stores sizes as 32 bits.
    case fileTooLarge(String, size: Int)

    public var description: String {
        switch self {
        case let .invalidName(name):
            return "fw_cfg file name '\(name)' must be 1–55 bytes without NUL"
        case let .duplicateName(name):
            return "fw_cfg file '\(name)' added twice"
        case let .tooManyFiles(limit):
            return "fw_cfg holds at most \(limit) files"
        case let .fileTooLarge(name, size):
            return "fw_cfg file '\(name)' is \(size) bytes, more than 4 GiB − 1"
        }
    }
}

/// QEMU fw_cfg, traditional interface. Register on a `PortBus` at
/// `FirmwareConfig.basePort` (0x510) with count `FirmwareConfig.portCount` (2).
public final class FirmwareConfig: PortDevice, AnomalyReporting {
    public let name = "fw_cfg"

    public static let basePort: UInt16 = 0x510
    public static let portCount: UInt16 = 2
    /// Where QEMU puts the DMA address register; not emulated (see header).
    public static let dmaPort: UInt16 = 0x514

    /// Selector numbers (QEMU's `FW_CFG_*`).
    public enum Selector {
        public static let signature: UInt16 = 0x0000
        public static let id: UInt16 = 0x0001
        public static let uuid: UInt16 = 0x0002
        public static let ramSize: UInt16 = 0x0003
        public static let cpuCount: UInt16 = 0x0005
        public static let maxCPUs: UInt16 = 0x000F
        public static let fileDirectory: UInt16 = 0x0019
        public static let firstFile: UInt16 = 0x0020
        /// Bit 14 asks for the write channel; reads ignore it, as QEMU does.
        public static let writeChannel: UInt16 = 0x4000
    }

    /// FW_CFG_ID feature bits: only the traditional interface (bit 0); bit 1
    /// (DMA) stays clear because 0x514 is not emulated.
    public static let featureTraditional: UInt32 = 0x1

    /// QEMU's default number of file slots (selectors 0x20–0x3F).
    public static let maxFiles = 0x20
    /// Directory name field size, NUL included.
    public static let fileNameFieldSize = 56

    /// Guest accesses that got a fallback answer, for the machine to report.
    public private(set) var anomalies = DeviceAnomalyLog()
    /// Data reads (bytes) made while an unknown selector was selected.
    public private(set) var unknownSelectorReads = 0
    /// The most recent selector the guest chose that has no item.
    public private(set) var lastUnknownSelector: UInt16?

    /// Fixed items by selector (write-channel bit removed).
    private var items: [UInt16: [UInt8]] = [:]
    /// Named files, kept sorted by name; file i has selector `firstFile + i`
    /// (QEMU also renumbers on insertion, so guests must use the directory).
    private var files: [(name: String, bytes: [UInt8])] = []

    /// The selected item's key, or nil when the guest selected an unknown one.
    private var current: UInt16? = Selector.signature
    private var currentSelectorRaw: UInt16 = Selector.signature
    private var dataOffset = 0
    private var unknownSelectionReported = false

    /// `cpuCount` is the boot vCPU count (FW_CFG_NB_CPUS), `maxCPUs` the
    /// hot-plug limit (FW_CFG_MAX_CPUS); both are clamped to 0...0xFFFF
    /// because the items are 16-bit.
    public init(ramSize: UInt64, cpuCount: Int, maxCPUs: Int) {
        items[Selector.signature] = Array("QEMU".utf8)
        items[Selector.id] = littleEndianBytes(Self.featureTraditional)
        items[Selector.uuid] = [UInt8](repeating: 0, count: 16)
        items[Selector.ramSize] = littleEndianBytes(ramSize)
        items[Selector.cpuCount] = littleEndianBytes(Self.clamp16(cpuCount))
        items[Selector.maxCPUs] = littleEndianBytes(Self.clamp16(maxCPUs))
        rebuildDirectory()
    }

    /// Adds a named file (e.g. "etc/deflect/version"). Files are listed in
    /// FW_CFG_FILE_DIR sorted by name, with selectors from 0x0020.
    public func addFile(name: String, bytes: [UInt8]) throws(FirmwareConfigError) {
        let nameBytes = Array(name.utf8)
        guard !nameBytes.isEmpty, nameBytes.count < Self.fileNameFieldSize, !nameBytes.contains(0) else {
            throw .invalidName(name)
        }
        guard !files.contains(where: { $0.name == name }) else { throw .duplicateName(name) }
        guard files.count < Self.maxFiles else { throw .tooManyFiles(limit: Self.maxFiles) }
        guard UInt64(bytes.count) <= UInt64(UInt32.max) else { throw .fileTooLarge(name, size: bytes.count) }
        // Byte-wise order, like QEMU's strcmp.
        let index = files.firstIndex { $0.name.utf8.lexicographicallyPrecedes(nameBytes) == false } ?? files.count
        files.insert((name: name, bytes: bytes), at: index)
        rebuildDirectory()
    }

    /// The selector a file currently has (what the directory says).
    public func selector(ofFile name: String) -> UInt16? {
        files.firstIndex { $0.name == name }.map { Selector.firstFile + UInt16($0) }
    }

    public func drainAnomalies() -> (anomalies: [DeviceAnomaly], dropped: Int) {
        anomalies.drain()
    }

    // MARK: - PortDevice

    public func read(offset: UInt16, size: Int) -> UInt32 {
        guard size == 1 else {
            // QEMU rejects wide reads; answer like a floating bus and leave
            // the data offset where it was.
            report(.unsupportedAccess, offset: offset, size: size, isWrite: false, value: 0)
            return accessMask(size: size)
        }
        guard let key = current else {
            unknownSelectorReads &+= 1
            // One record per selection: firmware reads items in loops, and
            // one event says all there is to say.
            if !unknownSelectionReported {
                unknownSelectionReported = true
                report(.unknownSelector(currentSelectorRaw), offset: offset, size: size, isWrite: false, value: 0)
            }
            return 0
        }
        let data = bytes(of: key)
        // Past the end: 0, and the offset stays put (as QEMU does).
        guard dataOffset < data.count else { return 0 }
        let byte = data[dataOffset]
        dataOffset += 1
        return UInt32(byte)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        switch size {
        case 2:
            select(UInt16(truncatingIfNeeded: value))
        case 1:
            // The data-write path QEMU removed in 2.4: ignored.
            report(.writeIgnored, offset: offset, size: size, isWrite: true, value: value & 0xFF)
        default:
            report(.unsupportedAccess, offset: offset, size: size, isWrite: true, value: value)
        }
        return .none
    }

    // MARK: - Items

    private func select(_ raw: UInt16) {
        currentSelectorRaw = raw
        dataOffset = 0
        unknownSelectionReported = false
        let key = raw & ~Selector.writeChannel
        if hasItem(key) {
            current = key
        } else {
            current = nil
            lastUnknownSelector = raw
        }
    }

    private func hasItem(_ key: UInt16) -> Bool {
        if items[key] != nil { return true }
        return key >= Selector.firstFile && Int(key - Selector.firstFile) < files.count
    }

    private func bytes(of key: UInt16) -> [UInt8] {
        if let item = items[key] { return item }
        guard key >= Selector.firstFile else { return [] }
        let index = Int(key - Selector.firstFile)
        return index < files.count ? files[index].bytes : []
    }

    /// FW_CFG_FILE_DIR: BE32 count, then per file BE32 size, BE16 selector,
    /// BE16 reserved, 56-byte NUL-padded name.
    private func rebuildDirectory() {
        var dir = bigEndianBytes(UInt32(files.count))
        for (index, file) in files.enumerated() {
            dir += bigEndianBytes(UInt32(truncatingIfNeeded: file.bytes.count))
            dir += bigEndianBytes(Selector.firstFile + UInt16(index))
            dir += [0, 0]
            var nameField = Array(file.name.utf8)
            nameField += [UInt8](repeating: 0, count: Self.fileNameFieldSize - nameField.count)
            dir += nameField
        }
        items[Selector.fileDirectory] = dir
    }

    private func report(_ kind: DeviceAnomaly.Kind, offset: UInt16, size: Int, isWrite: Bool, value: UInt32) {
        anomalies.record(DeviceAnomaly(device: name, kind: kind, offset: offset, size: size,
                                       isWrite: isWrite, value: value))
    }

    private static func clamp16(_ value: Int) -> UInt16 {
        UInt16(clamping: value)
    }
}

// MARK: - Snapshot state

extension FirmwareConfig: StatefulDevice {
    /// Where the guest is in its reading: the selector it wrote and the data
    /// offset. The items and files themselves are not saved: the restoring
    /// machine rebuilds them from its configuration (RAM size, CPU counts,
    /// ACPI tables, files), which must be the same for the offset to mean
    /// the same byte. There is no DMA address: the DMA interface is not
    /// emulated (see the file header).
    public struct State: Codable, Sendable, Equatable {
        /// As the guest wrote it (write-channel bit included).
        public var selector: UInt16
        public var dataOffset: Int
        public var unknownSelectionReported: Bool
        public var unknownSelectorReads: Int
        public var lastUnknownSelector: UInt16?
    }

    public func exportState() -> State {
        State(selector: currentSelectorRaw, dataOffset: dataOffset, unknownSelectionReported: unknownSelectionReported,
              unknownSelectorReads: unknownSelectorReads, lastUnknownSelector: lastUnknownSelector)
    }

    /// Refuses a data offset past the end of the selected item as this
    /// machine's configuration builds it (or non-zero for a selector with no
    /// item), and negative counters.
    public func importState(_ state: State) throws(DeviceStateError) {
        let key = state.selector & ~Selector.writeChannel
        let itemSize = hasItem(key) ? bytes(of: key).count : 0
        guard state.dataOffset >= 0, state.dataOffset <= itemSize else {
            throw DeviceStateError(device: name, field: "dataOffset",
                                   "\(state.dataOffset) is outside selector 0x\(String(state.selector, radix: 16))'s \(itemSize) bytes")
        }
        guard state.unknownSelectorReads >= 0 else {
            throw DeviceStateError(device: name, field: "unknownSelectorReads", "is negative")
        }
        select(state.selector)
        dataOffset = state.dataOffset
        unknownSelectionReported = state.unknownSelectionReported
        unknownSelectorReads = state.unknownSelectorReads
        lastUnknownSelector = state.lastUnknownSelector
    }

    public static func erase(_ state: State) -> DeviceState { .firmwareConfig(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .firmwareConfig(typed) = state { return typed }
        return nil
    }
}
