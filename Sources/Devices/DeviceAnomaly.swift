// DeviceAnomaly.swift — how the PC platform devices (fw_cfg, RTC/CMOS, ACPI
// PM) report guest accesses they answered with a fallback: an unknown fw_cfg
// selector, an access width the register does not support, a write to a
// read-only register. The guest always gets a defined answer; the record lets
// the machine turn the access into an event without the device knowing how
// events are delivered.

/// One guest access a device answered with a fallback value.
public struct DeviceAnomaly: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// fw_cfg: the guest selected (and then read) a selector with no item.
        case unknownSelector(UInt16)
        /// The register does not support this access width or alignment.
        case unsupportedAccess
        /// A write to a register that ignores writes.
        case writeIgnored
        /// ACPI PM1 control: the guest asked for sleep state `slpTyp` (S1–S4),
        /// which is not emulated; the write is otherwise ignored.
        case sleepNotSupported(slpTyp: UInt8)
        /// RTC: a time register write whose value is not a valid time field.
        case invalidTimeValue
    }

    public let device: String
    public let kind: Kind
    /// Offset in the device's port range, access width and direction.
    public let offset: UInt16
    public let size: Int
    public let isWrite: Bool
    /// The value written (0 for reads).
    public let value: UInt32

    public init(device: String, kind: Kind, offset: UInt16, size: Int, isWrite: Bool, value: UInt32) {
        self.device = device
        self.kind = kind
        self.offset = offset
        self.size = size
        self.isWrite = isWrite
        self.value = value
    }

    public var description: String {
        let access = isWrite
            ? "write of \(size) byte(s) value 0x\(String(value, radix: 16))"
            : "read of \(size) byte(s)"
        let what: String
        switch kind {
        case let .unknownSelector(selector): what = "unknown selector 0x\(String(selector, radix: 16))"
        case .unsupportedAccess: what = "unsupported access"
        case .writeIgnored: what = "write ignored"
        case let .sleepNotSupported(slpTyp): what = "sleep type \(slpTyp) not supported"
        case .invalidTimeValue: what = "invalid time value"
        }
        return "\(device): \(what) (\(access) at offset \(offset))"
    }
}

/// A bounded queue of anomalies. A guest hammering a bad port must not grow
/// host memory, so past `capacity` new records are only counted.
public struct DeviceAnomalyLog: Sendable {
    public static let defaultCapacity = 64

    public let capacity: Int
    public private(set) var pending: [DeviceAnomaly] = []
    /// Records dropped because the queue was full (since the last drain).
    public private(set) var dropped: Int = 0
    /// Every anomaly ever recorded, dropped ones included.
    public private(set) var total: Int = 0

    public init(capacity: Int = DeviceAnomalyLog.defaultCapacity) {
        self.capacity = max(0, capacity)
    }

    mutating func record(_ anomaly: DeviceAnomaly) {
        total &+= 1
        if pending.count < capacity {
            pending.append(anomaly)
        } else {
            dropped &+= 1
        }
    }

    /// Returns the queued records and how many were dropped, and empties the queue.
    public mutating func drain() -> (anomalies: [DeviceAnomaly], dropped: Int) {
        let result = (anomalies: pending, dropped: dropped)
        pending.removeAll(keepingCapacity: true)
        dropped = 0
        return result
    }
}

/// A device that keeps a `DeviceAnomalyLog`; the machine drains it after
/// each exit (or periodically) and turns records into events.
public protocol AnomalyReporting: AnyObject {
    func drainAnomalies() -> (anomalies: [DeviceAnomaly], dropped: Int)
}

/// Little-endian bytes of `value`, `count` of them (the low ones).
@inline(__always)
func littleEndianBytes<T: FixedWidthInteger>(_ value: T, count: Int = MemoryLayout<T>.size) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

/// Big-endian bytes of `value` (all of them).
@inline(__always)
func bigEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    let count = MemoryLayout<T>.size
    return (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * (count - 1 - $0))) }
}
