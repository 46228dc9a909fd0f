// AMLReader.swift — an independent reader of the AML subset the builder
// writes, for the tests: it walks a term list, checks that every PkgLength
// ends exactly where its object's content ends, and collects the named
// objects by absolute path ("\_SB_.COM1._HID") with their values.

import ACPI

/// A value as the reader decodes it.
indirect enum AMLValue: Equatable {
    case integer(UInt64)
    case string(String)
    case buffer([UInt8])
    case package([AMLValue])
    case reference(String)
    case device
    case method(flags: UInt8, body: [UInt8])
}

struct AMLReadError: Error, CustomStringConvertible {
    let offset: Int
    let reason: String
    var description: String { "AML offset \(offset): \(reason)" }
}

struct AMLReader {
    let bytes: [UInt8]
    var position = 0
    /// Absolute path → value; devices as `.device`.
    private(set) var objects: [String: AMLValue] = [:]
    /// Paths in the order they were defined.
    private(set) var order: [String] = []

    /// Reads a whole term list (a table's body); throws on anything outside
    /// the subset, a length that runs past its parent, or trailing bytes.
    static func read(_ bytes: [UInt8]) throws -> AMLReader {
        var reader = AMLReader(bytes: bytes)
        try reader.termList(until: bytes.count, scope: [])
        return reader
    }

    private func fail(_ reason: String) -> AMLReadError { AMLReadError(offset: position, reason: reason) }

    private mutating func byte() throws -> UInt8 {
        guard position < bytes.count else { throw fail("truncated") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func take(_ count: Int) throws -> [UInt8] {
        guard count >= 0, position + count <= bytes.count else { throw fail("truncated (\(count) bytes)") }
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    /// PkgLength → the offset where the object ends.
    private mutating func packageEnd(limit: Int) throws -> Int {
        let start = position
        guard let decoded = AMLPkgLength.decode(bytes[position...]) else { throw fail("bad PkgLength") }
        position += decoded.size
        let length = decoded.length
        guard start + length <= limit else { throw fail("PkgLength \(length) runs past its parent (\(limit))") }
        return start + length
    }

    /// A NameString → (rooted, parents, segments).
    private mutating func nameString() throws -> (rooted: Bool, parents: Int, segments: [String]) {
        var rooted = false, parents = 0
        if bytes[safe: position] == 0x5C { rooted = true; position += 1 }
        while bytes[safe: position] == 0x5E { parents += 1; position += 1 }
        let count: Int
        switch try byte() {
        case 0x00: count = 0
        case 0x2E: count = 2
        case 0x2F: count = Int(try byte())
        default: position -= 1; count = 1
        }
        var segments: [String] = []
        for _ in 0..<count { segments.append(String(decoding: try take(4), as: UTF8.self)) }
        return (rooted, parents, segments)
    }

    private func resolve(_ name: (rooted: Bool, parents: Int, segments: [String]), in scope: [String]) throws -> [String] {
        if name.rooted { return name.segments }
        guard name.parents <= scope.count else { throw fail("^ above the root") }
        return Array(scope.dropLast(name.parents)) + name.segments
    }

    private static func path(_ segments: [String]) -> String { "\\" + segments.joined(separator: ".") }

    private mutating func define(_ segments: [String], _ value: AMLValue) throws {
        let key = Self.path(segments)
        guard objects[key] == nil else { throw fail("\(key) defined twice") }
        objects[key] = value
        order.append(key)
    }

    private mutating func termList(until end: Int, scope: [String]) throws {
        while position < end {
            switch try byte() {
            case AMLOpcode.nameOp:
                let parsed = try nameString()
                let name = try resolve(parsed, in: scope)
                let value = try dataObject(limit: end)
                try define(name, value)
            case AMLOpcode.scopeOp:
                let objectEnd = try packageEnd(limit: end)
                let parsed = try nameString()
                let name = try resolve(parsed, in: scope)
                try termList(until: objectEnd, scope: name)
            case AMLOpcode.extOpPrefix:
                guard try byte() == AMLOpcode.deviceOp else { throw fail("extended opcode other than Device") }
                let objectEnd = try packageEnd(limit: end)
                let parsed = try nameString()
                let name = try resolve(parsed, in: scope)
                try define(name, .device)
                try termList(until: objectEnd, scope: name)
            case AMLOpcode.methodOp:
                let objectEnd = try packageEnd(limit: end)
                let parsed = try nameString()
                let name = try resolve(parsed, in: scope)
                let flags = try byte()
                let body = try take(objectEnd - position)
                try define(name, .method(flags: flags, body: body))
            case let op:
                position -= 1
                throw fail("unexpected opcode 0x\(String(op, radix: 16))")
            }
            guard position <= end else { throw fail("object runs past its parent") }
        }
        guard position == end else { throw fail("term list ends at \(position), not \(end)") }
    }

    private mutating func dataObject(limit: Int) throws -> AMLValue {
        guard let op = bytes[safe: position] else { throw fail("truncated") }
        switch op {
        case 0x00, 0x01, 0xFF: position += 1; return .integer(op == 0xFF ? .max : UInt64(op))
        case 0x0A, 0x0B, 0x0C, 0x0E:
            position += 1
            let size = [0x0A: 1, 0x0B: 2, 0x0C: 4, 0x0E: 8][op] ?? 0
            let raw = try take(size)
            return .integer(le(raw))
        case 0x0D:
            position += 1
            var chars: [UInt8] = []
            while true {
                let char = try byte()
                if char == 0 { break }
                chars.append(char)
            }
            return .string(String(decoding: chars, as: UTF8.self))
        case 0x11:
            position += 1
            let objectEnd = try packageEnd(limit: limit)
            guard case let .integer(size) = try dataObject(limit: objectEnd) else { throw fail("buffer size not an integer") }
            let content = try take(objectEnd - position)
            guard content.count == size else { throw fail("buffer size \(size) but \(content.count) bytes") }
            return .buffer(content)
        case 0x12:
            position += 1
            let objectEnd = try packageEnd(limit: limit)
            let count = Int(try byte())
            var elements: [AMLValue] = []
            while position < objectEnd { elements.append(try dataObject(limit: objectEnd)) }
            guard position == objectEnd, elements.count == count else { throw fail("package of \(count) has \(elements.count)") }
            return .package(elements)
        default:
            let name = try nameString()
            return AMLValue.reference((name.rooted ? "\\" : "") + String(repeating: "^", count: name.parents) + name.segments.joined(separator: "."))
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

/// Little-endian value of `bytes`.
func le(_ bytes: some Collection<UInt8>) -> UInt64 {
    bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
}
