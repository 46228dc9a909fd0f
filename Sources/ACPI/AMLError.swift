// AMLError.swift — why an AML tree or a resource template cannot be encoded:
// a bad name, string or EISA ID, a length or count past what the encoding
// holds, a value out of its field's range.

/// An AML tree that has no valid encoding.
public enum AMLError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A name path that is not `\`/`^` prefixes and 1–4 character segments
    /// of `A–Z`, `0–9`, `_` (no digit first).
    case invalidName(String, reason: String)
    /// A string with a character outside ASCII 0x01–0x7F.
    case invalidString(String)
    /// Not three letters `A–Z` and four hex digits.
    case invalidEISAID(String)
    /// An object whose length does not fit its length field (PkgLength:
    /// 2^28 − 1 bytes; a package: 255 elements).
    case tooLong(String, length: Int, limit: Int)
    /// A field value out of its range (an IRQ above 15, a method's argument
    /// count above 7, an empty or inverted address range …).
    case outOfRange(String, value: UInt64)

    public var description: String {
        switch self {
        case let .invalidName(name, reason): return "AML name \"\(name)\": \(reason)"
        case let .invalidString(text): return "AML string \"\(text)\": characters must be ASCII 0x01–0x7F"
        case let .invalidEISAID(id): return "EISA ID \"\(id)\": expected three letters A–Z and four hex digits"
        case let .tooLong(what, length, limit): return "\(what): \(length) is more than the encoding holds (\(limit))"
        case let .outOfRange(what, value): return "\(what): \(value) is out of range"
        }
    }
}
