// DebugExitPort.swift — QEMU's isa-debug-exit: lets a guest test program end
// the run with a status of its choosing (QEMU puts it at port 0x501, size 2).
// It has no state: snapshots skip it.

/// Any write of value `v` asks the machine to exit with process status
/// `(v << 1) | 1`, exactly as QEMU does, so test suites written for QEMU keep
/// their conventions. The status is always odd so that no guest write can be
/// mistaken for a clean exit (0).
///
/// A shell sees only the low 8 bits: `echo $?` prints `((v << 1) | 1) & 0xFF`,
/// e.g. v = 0 → 1, v = 0x7F → 255, v = 0x80 → 1.
public final class DebugExitPort: PortDevice {
    public let name = "debug-exit"

    public init() {}

    /// Write-only device: reads float high, as an unconnected ISA port does.
    public func read(offset: UInt16, size: Int) -> UInt32 {
        accessMask(size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        let v = UInt64(value & accessMask(size: size))
        return .exitGuest(status: Int32(truncatingIfNeeded: (v << 1) | 1))
    }
}
