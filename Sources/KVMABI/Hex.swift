// KVMABI: how every module writes numbers in hexadecimal for people, in one
// place: plain (0x3f8), zero-padded (0x000000ce, register dumps) and grouped
// in fours for TOML (0x800_0000_1000).

/// "0x" and lowercase hex digits, no padding: 0x3f8.
public func hex<T: BinaryInteger>(_ value: T) -> String {
    "0x" + String(value, radix: 16)
}

/// "0x" and at least `digits` lowercase hex digits: hex(0xce, digits: 8) = 0x000000ce.
public func hex<T: BinaryInteger>(_ value: T, digits: Int) -> String {
    "0x" + paddedHexDigits(value, digits)
}

/// At least `digits` lowercase hex digits, no prefix (register dumps).
public func paddedHexDigits<T: BinaryInteger>(_ value: T, _ digits: Int) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
}

/// "0x" and hex digits in groups of four from the right (TOML allows `_`): 0x800_0000_1000.
public func groupedHex<T: BinaryInteger>(_ value: T) -> String {
    let digits = Array(String(value, radix: 16))
    var groups: [String] = []
    var end = digits.count
    while end > 0 {
        let start = max(0, end - 4)
        groups.insert(String(digits[start..<end]), at: 0)
        end = start
    }
    return "0x" + groups.joined(separator: "_")
}
