// EISAID.swift — the compressed EISA ID of ASL's `EISAID ("PNP0501")`
// (ACPI 6.5 §19.6.35, and _HID in §6.1.5): three letters of five bits each
// (the letter − 0x40) and four hex digits, big-endian in a DWord stored
// little-endian. "PNP0501" is 0x41D0 then 0x0501: bytes 41 D0 05 01, the
// value 0x0105D041.

public enum EISAID {
    /// The 32-bit value of `id` (such as "PNP0A03").
    public static func compress(_ id: String) throws(AMLError) -> UInt32 {
        let chars = Array(id.utf8)
        guard chars.count == 7,
              chars[0..<3].allSatisfy({ (0x41...0x5A).contains($0) }) else { throw .invalidEISAID(id) }
        var product: UInt32 = 0
        for char in chars[3..<7] {
            guard let digit = hexDigit(char) else { throw .invalidEISAID(id) }
            product = product << 4 | digit
        }
        let vendor = UInt32(chars[0] - 0x40) << 10 | UInt32(chars[1] - 0x40) << 5 | UInt32(chars[2] - 0x40)
        let bigEndian = vendor << 16 | product
        return bigEndian.byteSwapped
    }

    /// 0–9, A–F (upper case, as ASL writes them).
    private static func hexDigit(_ char: UInt8) -> UInt32? {
        switch char {
        case 0x30...0x39: return UInt32(char - 0x30)
        case 0x41...0x46: return UInt32(char - 0x41 + 10)
        default: return nil
        }
    }
}
