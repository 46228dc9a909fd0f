// PCIBus.swift — bus 0 of the root complex: 32 slots (function 0 of each;
// the host bridge at 00:00.0), configuration access through ports
// 0xCF8/0xCFC–0xCFF (mechanism #1) and through ECAM, BAR placement when a
// device is added, and the routing of MMIO and port accesses to the BAR that
// holds them — following what the guest programs, with changes reported to a
// listener (the VMM re-registers its ioeventfds there).
//
// Mechanism #1 (PCI 3.0 §3.2.2.3.2): CONFIG_ADDRESS at 0xCF8 is written and
// read as a dword (bit 31 enable, bus 23:16, device 15:11, function 10:8,
// register 7:2); narrower writes to 0xCF8–0xCFB are ignored, as QEMU does
// (0xCF9 is the chipset's reset register on real boards, not ours). Data at
// 0xCFC+n reaches register (CONFIG_ADDRESS & 0xFC) + n with the access's
// width. With the enable bit clear, or for an absent function, reads are all
// ones and writes are dropped.

/// One BAR as the guest has it mapped now.
public struct PCIBarMapping: Sendable, Equatable, CustomStringConvertible {
    public enum Space: String, Sendable, Equatable { case memory, io }
    public var slot: Int
    public var bar: Int
    public var space: Space
    public var base: UInt64
    public var size: UInt64

    public init(slot: Int, bar: Int, space: Space, base: UInt64, size: UInt64) {
        self.slot = slot
        self.bar = bar
        self.space = space
        self.base = base
        self.size = size
    }

    public func contains(_ address: UInt64) -> Bool { address >= base && address - base < size }

    public var description: String {
        "00:\(slot < 16 ? "0" : "")\(String(slot, radix: 16)).0 BAR \(bar) \(space.rawValue) 0x\(String(base, radix: 16))+0x\(String(size, radix: 16))"
    }
}

/// Told when BAR mappings appear, move or disappear (decode switched off, a
/// BAR reprogrammed), after the change: the VMM moves its ioeventfds and
/// memory-region registrations.
public protocol PCIBarListener: AnyObject {
    func barMappingsChanged(removed: [PCIBarMapping], added: [PCIBarMapping])
}

/// Bus 0 with its host bridge.
public final class PCIBus {
    public static let slotCount = 32
    public static let configAddressPort: UInt16 = 0xCF8
    public static let configDataPort: UInt16 = 0xCFC
    private static let configAddressMask: UInt32 = 0x80FF_FFFC

    private var slots: [(any PCIDevice)?] = Array(repeating: nil, count: PCIBus.slotCount)
    private var allocator: PCIBarAllocator
    /// The mapped BARs of every slot.
    private var mappingsBySlot: [[PCIBarMapping]] = Array(repeating: [], count: PCIBus.slotCount)
    public private(set) var configAddress: UInt32 = 0
    /// Bus numbers the ECAM window covers; only bus 0 has devices.
    public let ecamBuses: ClosedRange<UInt8>
    public weak var listener: (any PCIBarListener)?

    public init(windows: PCIWindows, ecamBuses: ClosedRange<UInt8> = 0...0, hostBridge: any PCIDevice = PCIHostBridge()) {
        allocator = PCIBarAllocator(windows: windows)
        self.ecamBuses = ecamBuses
        slots[0] = hostBridge
    }

    public func device(atSlot slot: Int) -> (any PCIDevice)? {
        slot >= 0 && slot < Self.slotCount ? slots[slot] : nil
    }

    /// Adds `device` at `slot` (or the first free one), places its BARs and
    /// turns decoding on for the spaces it uses, as firmware does before the
    /// OS starts. Returns the slot.
    @discardableResult
    public func register(_ device: any PCIDevice, slot requested: Int? = nil) throws(PCIError) -> Int {
        let slot: Int
        if let requested {
            guard requested >= 0, requested < Self.slotCount else { throw .slotInvalid(requested) }
            if let occupant = slots[requested] { throw .slotOccupied(requested, occupant.name) }
            slot = requested
        } else {
            guard let free = slots.firstIndex(where: { $0 == nil }) else { throw .busFull(device.name) }
            slot = free
        }
        let config = device.configSpace
        var trial = allocator
        var placements: [(Int, UInt64)] = []
        // Largest first: fewer alignment gaps.
        let defined = config.bars.enumerated().compactMap { index, bar in bar.map { (index, $0) } }
        for (index, definition) in defined.sorted(by: { $0.1.size > $1.1.size }) {
            guard let address = trial.allocate(definition) else {
                throw .windowExhausted(device: device.name, bar: index, size: definition.size)
            }
            placements.append((index, address))
        }
        allocator = trial
        for (index, address) in placements { config.setBARAddress(index, address) }
        config.enableDecoding(memory: defined.contains { $0.1.isMemory }, io: defined.contains { !$0.1.isMemory })
        slots[slot] = device
        refreshMappings(slot: slot)
        return slot
    }

    // MARK: - Configuration mechanism #1

    /// Whether `port` is one of the configuration ports 0xCF8–0xCFF.
    public static func isConfigPort(_ port: UInt16) -> Bool { port >= 0xCF8 && port <= 0xCFF }

    public func readConfigPort(_ port: UInt16, size: Int) -> UInt32 {
        switch port {
        case 0xCF8...0xCFB:
            let shift = UInt32(port - 0xCF8) * 8
            return (configAddress >> shift) & UInt32(truncatingIfNeeded: allOnes(size: size))
        case 0xCFC...0xCFF:
            guard let (device, register) = addressedFunction(port: port) else {
                return UInt32(truncatingIfNeeded: allOnes(size: size))
            }
            return device.readConfig(offset: register, size: size)
        default:
            return UInt32(truncatingIfNeeded: allOnes(size: size))
        }
    }

    public func writeConfigPort(_ port: UInt16, size: Int, value: UInt32) {
        switch port {
        case 0xCF8:
            if size == 4 { configAddress = value & Self.configAddressMask }
        case 0xCFC...0xCFF:
            guard let (device, register) = addressedFunction(port: port) else { return }
            writeConfig(device, offset: register, size: size, value: value)
        default:
            break
        }
    }

    /// The function and register CONFIG_ADDRESS selects for a data access at
    /// `port`, nil when disabled or absent.
    private func addressedFunction(port: UInt16) -> (any PCIDevice, Int)? {
        guard configAddress & 0x8000_0000 != 0 else { return nil }
        let bus = (configAddress >> 16) & 0xFF
        let slot = Int((configAddress >> 11) & 0x1F)
        let function = (configAddress >> 8) & 0x7
        guard bus == 0, function == 0, let device = slots[slot] else { return nil }
        return (device, Int(configAddress & 0xFC) + Int(port - 0xCFC))
    }

    // MARK: - ECAM

    /// Bytes of the ECAM window: 1 MiB per bus in `ecamBuses`.
    public var ecamSize: UInt64 { UInt64(ecamBuses.count) << 20 }

    /// Reads at `offset` into the ECAM window, whose start is the first bus of
    /// `ecamBuses` (offset = bus << 20 | device << 15 | function << 12 | register,
    /// with the bus relative to that first bus).
    public func readECAM(offset: UInt64, size: Int) -> UInt32 {
        guard let (device, register) = ecamFunction(offset: offset) else {
            return UInt32(truncatingIfNeeded: allOnes(size: size))
        }
        return device.readConfig(offset: register, size: size)
    }

    public func writeECAM(offset: UInt64, size: Int, value: UInt32) {
        guard let (device, register) = ecamFunction(offset: offset) else { return }
        writeConfig(device, offset: register, size: size, value: value)
    }

    private func ecamFunction(offset: UInt64) -> (any PCIDevice, Int)? {
        guard offset < ecamSize else { return nil }
        let bus = UInt64(ecamBuses.lowerBound) + (offset >> 20)
        let slot = Int((offset >> 15) & 0x1F)
        let function = (offset >> 12) & 0x7
        guard bus == 0, function == 0, let device = slots[slot] else { return nil }
        return (device, Int(offset & 0xFFF))
    }

    /// A configuration write from either mechanism: the device takes it, then
    /// the bus follows any BAR or decode change.
    private func writeConfig(_ device: any PCIDevice, offset: Int, size: Int, value: UInt32) {
        device.writeConfig(offset: offset, size: size, value: value)
        if let slot = slots.firstIndex(where: { $0 === device }) { refreshMappings(slot: slot) }
    }

    // MARK: - BAR routing

    /// Every mapped BAR, by slot.
    public var mappings: [PCIBarMapping] { mappingsBySlot.flatMap { $0 } }

    /// The BAR holding `address` in `space`: first by slot when the guest
    /// made two overlap.
    public func mapping(containing address: UInt64, space: PCIBarMapping.Space) -> PCIBarMapping? {
        for slotMappings in mappingsBySlot {
            for mapping in slotMappings where mapping.space == space && mapping.contains(address) { return mapping }
        }
        return nil
    }

    /// Reads `size` bytes of MMIO at `address`; nil when no BAR holds it.
    public func readMemory(address: UInt64, size: Int) -> UInt64? {
        guard let mapping = mapping(containing: address, space: .memory), let device = slots[mapping.slot] else { return nil }
        return device.readBAR(mapping.bar, offset: address - mapping.base, size: size)
    }

    /// Writes MMIO at `address`; false when no BAR holds it.
    public func writeMemory(address: UInt64, size: Int, value: UInt64) -> Bool {
        guard let mapping = mapping(containing: address, space: .memory), let device = slots[mapping.slot] else { return false }
        device.writeBAR(mapping.bar, offset: address - mapping.base, size: size, value: value)
        return true
    }

    public func readIO(port: UInt16, size: Int) -> UInt32? {
        guard let mapping = mapping(containing: UInt64(port), space: .io), let device = slots[mapping.slot] else { return nil }
        return UInt32(truncatingIfNeeded: device.readBAR(mapping.bar, offset: UInt64(port) - mapping.base, size: size))
    }

    public func writeIO(port: UInt16, size: Int, value: UInt32) -> Bool {
        guard let mapping = mapping(containing: UInt64(port), space: .io), let device = slots[mapping.slot] else { return false }
        device.writeBAR(mapping.bar, offset: UInt64(port) - mapping.base, size: size, value: UInt64(value))
        return true
    }

    /// Recomputes the slot's mappings from its configuration space and tells
    /// the listener what changed.
    private func refreshMappings(slot: Int) {
        let current = slots[slot].map { Self.mappings(of: $0.configSpace, slot: slot) } ?? []
        let previous = mappingsBySlot[slot]
        guard current != previous else { return }
        mappingsBySlot[slot] = current
        listener?.barMappingsChanged(removed: previous.filter { !current.contains($0) },
                                     added: current.filter { !previous.contains($0) })
    }

    /// What a function decodes now. A BAR is not routed when its space's
    /// decode bit is off, when it holds 0 (never placed), or when it would run
    /// past the end of its space (a 32-bit BAR past 4 GiB, an I/O BAR past
    /// 0xFFFF, a 64-bit one past 2^64) — the sizing value of all ones masked
    /// to the size does fit, and is routed like QEMU does while decode is on.
    static func mappings(of config: PCIConfigSpace, slot: Int) -> [PCIBarMapping] {
        var result: [PCIBarMapping] = []
        for (index, bar) in config.bars.enumerated() {
            guard let definition = bar, let base = config.barAddress(index), base != 0 else { continue }
            let enabled = definition.isMemory ? config.memoryDecodeEnabled : config.ioDecodeEnabled
            let limit: UInt64 = switch definition.kind {
            case .memory32: 0xFFFF_FFFF
            case .memory64: .max
            case .io: 0xFFFF
            }
            let (last, overflow) = base.addingReportingOverflow(definition.size - 1)
            guard enabled, !overflow, last <= limit else { continue }
            result.append(PCIBarMapping(slot: slot, bar: index, space: definition.isMemory ? .memory : .io,
                                        base: base, size: definition.size))
        }
        return result
    }

    // MARK: - State

    /// CONFIG_ADDRESS and every function's configuration space, by slot.
    public struct State: Codable, Sendable, Equatable {
        public var configAddress: UInt32
        public var functions: [Int: PCIConfigSpace.State]
    }

    public func exportState() -> State {
        var functions: [Int: PCIConfigSpace.State] = [:]
        for (slot, device) in slots.enumerated() {
            if let device { functions[slot] = device.configSpace.exportState() }
        }
        return State(configAddress: configAddress, functions: functions)
    }

    /// Restores every function's configuration space (exactly the occupied
    /// slots, each checked by its function) and CONFIG_ADDRESS, then routes
    /// the BARs as restored. All or nothing.
    public func importState(_ state: State) throws(PCIStateError) {
        try PCIStateError.checkBits(state.configAddress, allowed: Self.configAddressMask, device: "pci-bus", field: "configAddress")
        for slot in 0..<Self.slotCount where (slots[slot] == nil) != (state.functions[slot] == nil) {
            let problem = slots[slot] == nil ? "is empty on this machine" : "is missing from the saved state"
            throw PCIStateError(device: "pci-bus", field: "slot \(slot)", problem)
        }
        if let extra = state.functions.keys.first(where: { $0 < 0 || $0 >= Self.slotCount }) {
            throw PCIStateError(device: "pci-bus", field: "slot \(extra)", "does not exist")
        }
        var previous: [(PCIConfigSpace, PCIConfigSpace.State)] = []
        for (slot, device) in slots.enumerated() {
            guard let device, let saved = state.functions[slot] else { continue }
            let before = device.configSpace.exportState()
            do {
                try device.configSpace.importState(saved, device: device.name)
            } catch {
                for (config, old) in previous { try? config.importState(old, device: "") }
                throw error
            }
            previous.append((device.configSpace, before))
        }
        configAddress = state.configAddress
        for slot in 0..<Self.slotCount { refreshMappings(slot: slot) }
    }
}

extension PCIStateError {
    /// Checks that `value` has no bits outside `allowed`.
    public static func checkBits<T: FixedWidthInteger>(_ value: T, allowed: T, device: String, field: String) throws(PCIStateError) {
        guard value & ~allowed == 0 else {
            throw PCIStateError(device: device, field: field,
                                "0x\(String(value, radix: 16)) sets bits outside 0x\(String(allowed, radix: 16))")
        }
    }
}
