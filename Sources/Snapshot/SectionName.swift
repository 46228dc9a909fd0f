// SectionName.swift — the names of a Deflect state file's sections, in one
// place: what each holds is in docs/snapshot-format.md ("Sections"). Readers
// look sections up by these names and ignore names they do not know.

/// A section of a Deflect state file.
public enum SnapshotSectionName: Hashable, Sendable, CustomStringConvertible {
    /// What the machine was built from (image, mode, RAM, vCPUs, platform, boot).
    case config
    /// Deflect's own state: MSR policy and values, page map, hypercall counts, guest clock.
    case user
    /// Every port device's state, each tagged with its kind.
    case devices
    /// The in-kernel PICs, IOAPIC, PIT and the kvmclock.
    case vm
    /// vCPU N's state.
    case vcpu(Int)
    /// What a restoring host must offer (optional).
    case host
    /// The memory file: name, size, kind, chunk checksums.
    case memory
    /// The PCI bus and its devices (configuration spaces, virtio transports
    /// and queues, the devices' own state); absent for a VM without them.
    case pci

    /// The name as the section table stores it.
    public var rawValue: String {
        switch self {
        case .config: "config"
        case .user: "user"
        case .devices: "devices"
        case .vm: "vm"
        case let .vcpu(index): "vcpu.\(index)"
        case .host: "host"
        case .memory: "memory"
        case .pci: "pci"
        }
    }

    public init?(rawValue: String) {
        switch rawValue {
        case "config": self = .config
        case "user": self = .user
        case "devices": self = .devices
        case "vm": self = .vm
        case "host": self = .host
        case "memory": self = .memory
        case "pci": self = .pci
        default:
            guard rawValue.hasPrefix("vcpu."), let index = Int(rawValue.dropFirst(5)), index >= 0,
                  "vcpu.\(index)" == rawValue else { return nil }
            self = .vcpu(index)
        }
    }

    public var description: String { rawValue }
}

extension SnapshotFile {
    public mutating func append(_ name: SnapshotSectionName, payload: [UInt8]) throws(SnapshotFormatError) {
        try append(section: name.rawValue, payload: payload)
    }

    public mutating func append<T: Encodable>(_ name: SnapshotSectionName, encoding value: T) throws(SnapshotFormatError) {
        try append(section: name.rawValue, encoding: value)
    }

    public func section(named name: SnapshotSectionName) -> [UInt8]? {
        section(named: name.rawValue)
    }

    public func decode<T: Decodable>(_ type: T.Type, section name: SnapshotSectionName) throws(SnapshotFormatError) -> T {
        try decode(type, section: name.rawValue)
    }
}
