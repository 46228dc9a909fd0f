// ACPIBytes.swift — the byte helpers every ACPI table shares: little-endian
// integers, the 8-bit checksum that makes a table sum to zero, space-padded
// ASCII identifiers, and power-of-two alignment of guest addresses.

/// Byte helpers of the ACPI target (and of Devices' table set built on it).
public enum ACPIBytes {
    /// The low `count` bytes of `value`, least significant first.
    public static func littleEndian<T: FixedWidthInteger>(_ value: T, count: Int = MemoryLayout<T>.size) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    /// The byte that makes `bytes` (with it still 0) sum to 0 mod 256
    /// (ACPI 6.5 §5.2.5.3 and §5.2.6, the RSDP's and every table's checksum).
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }

    /// ASCII, space-padded or cut to `count` bytes (OEM ID, table IDs).
    public static func padded(_ text: String, _ count: Int) -> [UInt8] {
        let bytes = Array(text.utf8.prefix(count))
        return bytes + [UInt8](repeating: 0x20, count: count - bytes.count)
    }

    /// `value` rounded up to `alignment`, a power of two. Wrapping: an absurd
    /// address must not trap.
    public static func align(_ value: UInt64, _ alignment: UInt64) -> UInt64 {
        (value &+ (alignment &- 1)) & ~(alignment &- 1)
    }
}
