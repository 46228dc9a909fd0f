// AMLName.swift — AML names (ACPI 6.5 §20.2.2, "Name Objects Encoding"):
// a NameSeg is four characters, a lead of `A–Z` or `_` and then `A–Z`,
// `0–9` or `_` (ASL pads shorter names with `_`: `_S5` is `_S5_`); a
// NameString is an optional root `\` or parent prefixes `^`, then a
// NamePath: NullName (no segment), one NameSeg, DualNamePrefix and two,
// or MultiNamePrefix, a count and that many.

/// A parsed name path, as `\_SB.PCI0`, `^^COM1`, `_S5` or `\`.
public struct AMLName: Sendable, Equatable, CustomStringConvertible {
    /// Starts at the namespace root (`\`).
    public let isRooted: Bool
    /// How many scopes up (`^` each); 0 when rooted.
    public let parentPrefixes: Int
    /// Four-character segments, padded with `_`.
    public let segments: [String]

    /// Parses `path`; segments shorter than four characters are padded
    /// with `_`.
    public init(_ path: String) throws(AMLError) {
        var rest = Substring(path)
        let rooted = rest.first == "\\"
        if rooted { rest = rest.dropFirst() }
        var parents = 0
        while rest.first == "^" {
            parents += 1
            rest = rest.dropFirst()
        }
        if rooted && parents > 0 { throw .invalidName(path, reason: "both a root and a parent prefix") }
        var segments: [String] = []
        if !rest.isEmpty {
            for part in rest.split(separator: ".", omittingEmptySubsequences: false) {
                segments.append(try Self.segment(part, in: path))
            }
        }
        if segments.isEmpty && !rooted && parents == 0 { throw .invalidName(path, reason: "empty") }
        guard segments.count <= 255 else { throw .tooLong("name \(path) segments", length: segments.count, limit: 255) }
        isRooted = rooted
        parentPrefixes = parents
        self.segments = segments
    }

    /// One NameSeg: 1–4 characters, padded with `_` to four.
    private static func segment(_ part: Substring, in path: String) throws(AMLError) -> String {
        let chars = Array(part.utf8)
        guard (1...4).contains(chars.count) else {
            throw .invalidName(path, reason: "segment \"\(part)\" is not 1–4 characters")
        }
        for (index, char) in chars.enumerated() {
            let upper = (0x41...0x5A).contains(char), underscore = char == 0x5F, digit = (0x30...0x39).contains(char)
            guard upper || underscore || (digit && index > 0) else {
                throw .invalidName(path, reason: "segment \"\(part)\" has a character outside A–Z, 0–9, _ (or a digit first)")
            }
        }
        return String(decoding: chars + [UInt8](repeating: 0x5F, count: 4 - chars.count), as: UTF8.self)
    }

    /// The NameString bytes.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = isRooted ? [AMLOpcode.rootChar] : []
        bytes += [UInt8](repeating: AMLOpcode.parentPrefixChar, count: parentPrefixes)
        switch segments.count {
        case 0: bytes.append(AMLOpcode.nullName)
        case 1: break
        case 2: bytes.append(AMLOpcode.dualNamePrefix)
        default: bytes += [AMLOpcode.multiNamePrefix, UInt8(segments.count)]
        }
        for segment in segments { bytes += Array(segment.utf8) }
        return bytes
    }

    public var description: String {
        (isRooted ? "\\" : "") + String(repeating: "^", count: parentPrefixes) + segments.joined(separator: ".")
    }
}
