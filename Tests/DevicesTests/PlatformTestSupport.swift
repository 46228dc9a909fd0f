// PlatformTestSupport.swift — test doubles for the PC platform devices: a
// settable clock to inject into the RTC and the ACPI PM timer, and byte-wise
// fw_cfg helpers.

import Synchronization
import Testing
import Devices

/// A clock tests move by hand. Sendable so it fits the devices' `@Sendable`
/// clock closures.
final class ManualClock: Sendable {
    private let value: Mutex<Int64>

    init(_ start: Int64 = 0) { value = Mutex(start) }

    var now: Int64 { value.withLock { $0 } }
    func set(_ newValue: Int64) { value.withLock { $0 = newValue } }
    func advance(by delta: Int64) { value.withLock { $0 += delta } }

    /// As a wall clock in Unix seconds.
    var seconds: @Sendable () -> Int64 { { [self] in self.now } }
    /// As a monotonic clock in nanoseconds (negative values read as 0).
    var nanoseconds: @Sendable () -> UInt64 { { [self] in UInt64(clamping: self.now) } }
}

extension FirmwareConfig {
    /// Selects `selector` with a 16-bit write to the selector port.
    func select(_ selector: UInt16) {
        #expect(write(offset: 0, size: 2, value: UInt32(selector)) == .none)
    }

    /// `count` 8-bit reads from the data port.
    func readData(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: read(offset: 1, size: 1)) }
    }

    /// Selects `selector` and reads `count` bytes.
    func item(_ selector: UInt16, _ count: Int) -> [UInt8] {
        select(selector)
        return readData(count)
    }
}

/// Little-endian integer from bytes (tests decode guest-visible layouts).
func le(_ bytes: some Collection<UInt8>) -> UInt64 {
    bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
}

/// Big-endian integer from bytes.
func be(_ bytes: some Collection<UInt8>) -> UInt64 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}
