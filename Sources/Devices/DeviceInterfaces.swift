// DeviceInterfaces.swift — the contracts every device in this target shares:
// what an access may ask of the machine (`DeviceEffect`), the port-device
// protocol, the interrupt line and byte sink a device is wired to, and the
// access-size masking rule all devices apply.

/// What a device access asks the machine to do besides returning data.
public enum DeviceEffect: Equatable, Sendable {
    case none
    /// The guest asked to end the run with this process status.
    case exitGuest(status: Int32)
    /// The guest asked for a system reset.
    case resetRequested
    /// The guest entered ACPI S5 (soft off): the machine powers off.
    case powerOff
    /// The guest entered ACPI S3 (suspend to RAM): the machine stops every
    /// vCPU, keeps memory, and resumes at the FACS waking vector on a wake event.
    case suspendToRAM
    /// The guest announced that it reached phase `value` (guest sync port);
    /// the machine lets a test or an embedder act before the guest goes on.
    case guestPhase(UInt32)
}

/// A device on the x86 I/O port bus. `offset` is relative to the device's
/// base port; `size` is 1, 2 or 4 (the width of the guest's `in`/`out`).
///
/// Devices are plain state machines: they never block, never talk to KVM and
/// never trap on guest input. A class because a device has identity (one UART
/// may be reached from several places: the bus, the input pump).
public protocol PortDevice: AnyObject {
    var name: String { get }
    func read(offset: UInt16, size: Int) -> UInt32
    func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect
}

/// Interrupt line a device raises or lowers (level semantics). The machine
/// decides where it goes (PIC/IOAPIC pin, irqfd, nothing). Devices call
/// `setLevel` only when the level changes.
public protocol InterruptLine: AnyObject {
    func setLevel(_ high: Bool)
}

/// A line connected to nothing: for polled devices and tests.
public final class NoInterruptLine: InterruptLine {
    public init() {}
    public func setLevel(_ high: Bool) {}
}

/// Where a device's character output goes. The device calls `write` once per
/// byte the guest sends; buffering policy belongs to the sink, and the
/// machine calls `flush` when it wants output visible (e.g. at exit).
public protocol ByteSink: AnyObject {
    func write(_ byte: UInt8)
    func flush()
}

/// A sink that keeps everything in memory: for tests and output capture.
public final class BufferSink: ByteSink {
    public private(set) var bytes: [UInt8] = []
    /// How many times `flush()` was called (lets tests see flush requests).
    public private(set) var flushCount: Int = 0

    public init() {}

    public func write(_ byte: UInt8) { bytes.append(byte) }
    public func flush() { flushCount += 1 }

    /// The captured bytes decoded as UTF-8 (invalid sequences become U+FFFD).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Forgets captured output (capture in chunks).
    public func removeAll() { bytes.removeAll(keepingCapacity: true) }
}

/// Mask for an access of `size` bytes. KVM only reports sizes 1, 2 and 4 for
/// port I/O; anything else is treated as 4 rather than trapping.
@inline(__always)
func accessMask(size: Int) -> UInt32 {
    switch size {
    case 1: return 0xFF
    case 2: return 0xFFFF
    default: return 0xFFFF_FFFF
    }
}
