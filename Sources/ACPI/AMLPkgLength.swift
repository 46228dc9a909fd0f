// AMLPkgLength.swift — PkgLength (ACPI 6.5 §20.2.4, "Package Length
// Encoding"): the length of an object's remaining bytes, counting the
// PkgLength bytes themselves, in 1 to 4 bytes.
//
//   1 byte:  bits 7–6 = 0, bits 5–0 = the length (up to 63).
//   2–4:     bits 7–6 of the lead byte = how many bytes follow (1–3), bits
//            5–4 = 0, bits 3–0 = the length's low nibble; each following byte
//            the next 8 bits. So up to 2^12 − 1, 2^20 − 1, 2^28 − 1.

public enum AMLPkgLength {
    /// The largest length four bytes hold.
    public static let maximum = (1 << 28) - 1

    /// The PkgLength for `contentLength` bytes that follow it: the smallest
    /// encoding whose value (content plus the PkgLength bytes) fits.
    public static func encode(contentLength: Int) throws(AMLError) -> [UInt8] {
        guard contentLength >= 0 else { throw .outOfRange("PkgLength content", value: 0) }
        if contentLength + 1 <= 0x3F { return [UInt8(contentLength + 1)] }
        for extra in 1...3 {
            let total = contentLength + 1 + extra
            guard total < 1 << (4 + 8 * extra) else { continue }
            var bytes = [UInt8(extra) << 6 | UInt8(total & 0x0F)]
            for index in 0..<extra { bytes.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * index))) }
            return bytes
        }
        throw .tooLong("PkgLength", length: contentLength + 4, limit: maximum)
    }

    /// `content` preceded by its PkgLength.
    static func wrap(_ content: [UInt8]) throws(AMLError) -> [UInt8] {
        try encode(contentLength: content.count) + content
    }

    /// Decodes a PkgLength at the start of `bytes`: (value, bytes used), nil
    /// when truncated or malformed (bits 5–4 set in a multi-byte lead).
    public static func decode(_ bytes: some Collection<UInt8>) -> (length: Int, size: Int)? {
        guard let lead = bytes.first else { return nil }
        let extra = Int(lead >> 6)
        if extra == 0 { return (Int(lead & 0x3F), 1) }
        guard lead & 0x30 == 0, bytes.count > extra else { return nil }
        var value = Int(lead & 0x0F)
        for (index, byte) in bytes.dropFirst().prefix(extra).enumerated() {
            value |= Int(byte) << (4 + 8 * index)
        }
        return (value, 1 + extra)
    }
}
