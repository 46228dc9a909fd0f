// DeviceState.swift — snapshot support shared by the devices: the contract a
// device with guest-visible state follows (`StatefulDevice`: export a value,
// import it back after validating it), the one-line error a refused state
// gives, the type-erased `DeviceState` a whole bus is saved as, and the
// `PortBus` export/import keyed by a stable per-registration name.
//
// What a state holds is what the guest can observe and the host cannot
// rebuild from the machine's configuration: registers, queues, latches.
// Wiring (interrupt lines, sinks, clocks), configuration (fw_cfg items, the
// UART's queue capacity) and diagnostics (anomaly logs) are not state.

/// Why a device refused a state: names the device and the field, one line.
public struct DeviceStateError: Error, Equatable, Sendable, CustomStringConvertible {
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

/// A device whose guest-visible state can be saved and restored.
///
/// `importState` validates the whole value before changing anything: a
/// refused state leaves the device as it was. After a successful import the
/// device behaves, on every further access, as the exporting device would
/// have (and drives its interrupt line to the restored level).
public protocol StatefulDevice: PortDevice {
    associatedtype State: Codable, Sendable, Equatable
    func exportState() -> State
    func importState(_ state: State) throws(DeviceStateError)
    /// The state in the type-erased form a bus export uses.
    static func erase(_ state: State) -> DeviceState
    /// The typed state, or nil when `state` belongs to another kind of device.
    static func unerase(_ state: DeviceState) -> State?
}

/// One device's state, tagged with its kind. JSON: `{"kind": "...", "state": {...}}`.
public enum DeviceState: Codable, Sendable, Equatable {
    case serial16550(Serial16550.State)
    case rtcCMOS(RTCCMOS.State)
    case firmwareConfig(FirmwareConfig.State)
    case acpiPMTimer(ACPIPMTimer.State)
    case acpiPM1(ACPIPM1Registers.State)
    case i8042(I8042Controller.State)
    case postCode(PostCodePort.State)
    case guestSync(GuestSyncPort.State)

    /// The `kind` string in JSON.
    public var kind: String {
        switch self {
        case .serial16550: "serial16550"
        case .rtcCMOS: "rtc-cmos"
        case .firmwareConfig: "fw_cfg"
        case .acpiPMTimer: "acpi-pm-timer"
        case .acpiPM1: "acpi-pm1"
        case .i8042: "i8042"
        case .postCode: "post-code"
        case .guestSync: "guest-sync"
        }
    }

    private enum CodingKeys: String, CodingKey { case kind, state }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try container.decode(String.self, forKey: .kind)
        switch kind {
        case "serial16550": self = .serial16550(try container.decode(Serial16550.State.self, forKey: .state))
        case "rtc-cmos": self = .rtcCMOS(try container.decode(RTCCMOS.State.self, forKey: .state))
        case "fw_cfg": self = .firmwareConfig(try container.decode(FirmwareConfig.State.self, forKey: .state))
        case "acpi-pm-timer": self = .acpiPMTimer(try container.decode(ACPIPMTimer.State.self, forKey: .state))
        case "acpi-pm1": self = .acpiPM1(try container.decode(ACPIPM1Registers.State.self, forKey: .state))
        case "i8042": self = .i8042(try container.decode(I8042Controller.State.self, forKey: .state))
        case "post-code": self = .postCode(try container.decode(PostCodePort.State.self, forKey: .state))
        case "guest-sync": self = .guestSync(try container.decode(GuestSyncPort.State.self, forKey: .state))
        default:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: container, debugDescription: "unknown device kind '\(kind)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        switch self {
        case let .serial16550(state): try container.encode(state, forKey: .state)
        case let .rtcCMOS(state): try container.encode(state, forKey: .state)
        case let .firmwareConfig(state): try container.encode(state, forKey: .state)
        case let .acpiPMTimer(state): try container.encode(state, forKey: .state)
        case let .acpiPM1(state): try container.encode(state, forKey: .state)
        case let .i8042(state): try container.encode(state, forKey: .state)
        case let .postCode(state): try container.encode(state, forKey: .state)
        case let .guestSync(state): try container.encode(state, forKey: .state)
        }
    }
}

extension StatefulDevice {
    /// The state, type-erased.
    public func exportDeviceState() -> DeviceState { Self.erase(exportState()) }

    /// Imports a type-erased state; a state of another kind is refused.
    public func importDeviceState(_ state: DeviceState) throws(DeviceStateError) {
        guard let typed = Self.unerase(state) else {
            throw DeviceStateError(device: name, field: "kind", "is '\(state.kind)', not this device's kind")
        }
        try importState(typed)
    }
}

extension PortBus {
    /// The stable key of a registration: device name and base port, e.g.
    /// "serial16550@0x3f8" (two UARTs differ by their port).
    public static func stateKey(name: String, base: UInt16) -> String {
        "\(name)@0x\(String(base, radix: 16))"
    }

    /// Every stateful device's state, keyed by `stateKey`. Devices without
    /// state (the debug-exit port) are not listed.
    public func exportDeviceStates() -> [String: DeviceState] {
        var states: [String: DeviceState] = [:]
        for (key, device) in statefulDevices {
            states[key] = device.exportDeviceState()
        }
        return states
    }

    /// Imports `states` into the devices on this bus: exactly one state per
    /// stateful device, each of the right kind. All or nothing: when one
    /// device refuses its state, those already imported get their previous
    /// state back.
    public func importDeviceStates(_ states: [String: DeviceState]) throws(DeviceStateError) {
        let devices = statefulDevices
        let known = Set(devices.map(\.key))
        if let unknown = states.keys.sorted().first(where: { !known.contains($0) }) {
            throw DeviceStateError(device: unknown, field: "key", "no such device on this machine")
        }
        if let missing = devices.first(where: { states[$0.key] == nil }) {
            throw DeviceStateError(device: missing.key, field: "key", "missing from the saved states")
        }
        var previous: [(any StatefulDevice, DeviceState)] = []
        for (key, device) in devices {
            guard let state = states[key] else { continue }
            let before = device.exportDeviceState()
            do {
                try device.importDeviceState(state)
            } catch {
                // Importing a state the device itself exported cannot fail.
                for (restored, old) in previous.reversed() { try? restored.importDeviceState(old) }
                throw error
            }
            previous.append((device, before))
        }
    }

    /// The stateful devices by key, in port order.
    private var statefulDevices: [(key: String, device: any StatefulDevice)] {
        registrations.compactMap { registration in
            guard let device = owner(of: registration.base) as? any StatefulDevice else { return nil }
            return (key: Self.stateKey(name: registration.name, base: registration.base), device: device)
        }
    }
}

extension DeviceStateError {
    /// Checks that `value` has no bits outside `allowed`.
    static func checkBits<T: FixedWidthInteger>(_ value: T, allowed: T, device: String, field: String) throws(DeviceStateError) {
        guard value & ~allowed == 0 else {
            throw DeviceStateError(device: device, field: field,
                                   "0x\(String(value, radix: 16)) sets bits outside 0x\(String(allowed, radix: 16))")
        }
    }
}
