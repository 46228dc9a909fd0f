// VirtioConstants.swift — the numbers of the virtio 1.2 specification the
// transport and the queues share: device types, reserved feature bits,
// device status bits, the "no vector" MSI-X value.

/// Device types (virtio 1.2 §5); the PCI device ID is 0x1040 + type.
public enum VirtioDeviceType: UInt16, Sendable, Codable {
    case network = 1
    case block = 2
    case console = 3
    case entropy = 4
    case socket = 19

    public var pciDeviceID: UInt16 { 0x1040 + rawValue }
}

/// Feature bits the transport and the rings define (§6).
public enum VirtioFeature {
    public static let indirectDescriptors: UInt64 = 1 << 28
    public static let eventIndex: UInt64 = 1 << 29
    public static let version1: UInt64 = 1 << 32
    /// The bits the transport itself offers for every device.
    public static let transport: UInt64 = indirectDescriptors | eventIndex | version1
}

/// device_status bits (§2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let deviceNeedsReset: UInt8 = 0x40
    public static let failed: UInt8 = 0x80
    public static let all: UInt8 = acknowledge | driver | driverOK | featuresOK | deviceNeedsReset | failed
}

/// VIRTIO_MSI_NO_VECTOR: the driver asked for no interrupt, or the device
/// could not map the vector it asked for.
public let virtioNoVector: UInt16 = 0xFFFF
