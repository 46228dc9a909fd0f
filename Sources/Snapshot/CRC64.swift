// CRC64.swift — the checksum of snapshot files: CRC-64 with the Jones
// polynomial, the variant Firecracker's snapshot files use (Rust `crc64`
// crate) and Redis's RDB files: in the CRC catalogue this is CRC-64/REDIS,
// width 64, poly 0xad93d23594c935a9, init 0, reflected in and out, xorout 0,
// check ("123456789") 0xe9c6d914c4b8d9ca.

/// CRC-64/Jones (CRC-64/REDIS), byte-wise with a 256-entry table.
public struct CRC64: Sendable {
    /// The polynomial in normal form, and bit-reversed as the reflected
    /// (LSB-first) algorithm uses it.
    public static let polynomial: UInt64 = 0xAD93_D235_94C9_35A9
    static let reflectedPolynomial: UInt64 = 0x95AC_9329_AC4B_C9B5

    private static let table: [UInt64] = (0..<256).map { index in
        var crc = UInt64(index)
        for _ in 0..<8 {
            crc = crc & 1 != 0 ? (crc >> 1) ^ reflectedPolynomial : crc >> 1
        }
        return crc
    }

    /// The running value (the CRC of everything fed so far, init 0, no xorout).
    public private(set) var value: UInt64 = 0

    public init() {}

    public mutating func update(_ bytes: some Sequence<UInt8>) {
        var crc = value
        let table = Self.table
        for byte in bytes {
            crc = table[Int(UInt8(truncatingIfNeeded: crc) ^ byte)] ^ (crc >> 8)
        }
        value = crc
    }

    /// The CRC of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }
}
