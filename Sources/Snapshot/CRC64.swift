// CRC64.swift — the checksum of snapshot files: CRC-64 with the Jones
// polynomial, the variant Firecracker's snapshot files use (Rust `crc64`
// crate) and Redis's RDB files: in the CRC catalogue this is CRC-64/REDIS,
// width 64, poly 0xad93d23594c935a9, init 0, reflected in and out, xorout 0,
// check ("123456789") 0xe9c6d914c4b8d9ca.

/// CRC-64/Jones (CRC-64/REDIS): byte-wise with a 256-entry table, and
/// eight bytes a step (slicing-by-8) over arrays, which migration frames
/// and memory files run through by the megabyte.
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

    /// Slicing-by-8: table k (entries 256k ..< 256(k+1)) is the CRC of a
    /// byte followed by k zero bytes, so eight bytes fold in one step.
    private static let slices: [UInt64] = {
        var tables = table
        for k in 1..<8 {
            for index in 0..<256 {
                let previous = tables[(k - 1) * 256 + index]
                tables.append(table[Int(UInt8(truncatingIfNeeded: previous))] ^ (previous >> 8))
            }
        }
        return tables
    }()

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

    /// `update` for contiguous bytes, eight at a time.
    public mutating func update(_ bytes: ArraySlice<UInt8>) {
        var crc = value
        let t = Self.slices
        var i = bytes.startIndex
        let end = bytes.endIndex
        while end - i >= 8 {
            let low = UInt64(bytes[i]) | UInt64(bytes[i + 1]) << 8 | UInt64(bytes[i + 2]) << 16 | UInt64(bytes[i + 3]) << 24
            let high = UInt64(bytes[i + 4]) | UInt64(bytes[i + 5]) << 8 | UInt64(bytes[i + 6]) << 16 | UInt64(bytes[i + 7]) << 24
            let x = crc ^ (low | high << 32)
            crc = t[7 * 256 + Int(x & 0xFF)] ^ t[6 * 256 + Int((x >> 8) & 0xFF)]
                ^ t[5 * 256 + Int((x >> 16) & 0xFF)] ^ t[4 * 256 + Int((x >> 24) & 0xFF)]
                ^ t[3 * 256 + Int((x >> 32) & 0xFF)] ^ t[2 * 256 + Int((x >> 40) & 0xFF)]
                ^ t[256 + Int((x >> 48) & 0xFF)] ^ t[Int(x >> 56)]
            i += 8
        }
        while i < end {
            crc = t[Int(UInt8(truncatingIfNeeded: crc) ^ bytes[i])] ^ (crc >> 8)
            i += 1
        }
        value = crc
    }

    public mutating func update(_ bytes: [UInt8]) { update(bytes[...]) }

    /// The CRC of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }

    public static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt64 { checksum(bytes[...]) }
}
