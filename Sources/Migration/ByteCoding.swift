// Migration: little-endian integer reading and writing for frames and
// payloads; a read past the end is a `MigrationError`, never a trap.

struct ByteWriter {
    var bytes: [UInt8]

    init(bytes: [UInt8] = []) { self.bytes = bytes }

    mutating func put<T: FixedWidthInteger>(_ value: T) { Self.put(value, into: &bytes) }

    /// Appends `value` to `bytes` in place (a reused frame buffer).
    static func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8]) {
        for index in 0..<MemoryLayout<T>.size {
            bytes.append(UInt8(truncatingIfNeeded: value >> (8 * index)))
        }
    }
}

struct ByteReader {
    private(set) var remaining: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { remaining = bytes }

    var isAtEnd: Bool { remaining.isEmpty }

    mutating func get<T: FixedWidthInteger>(_ what: String) throws(MigrationError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining.count >= size else { throw .malformed("\(what) is cut short") }
        var value: T = 0
        for (shift, byte) in remaining.prefix(size).enumerated() {
            value |= T(byte) << (8 * shift)
        }
        remaining = remaining.dropFirst(size)
        return value
    }

    mutating func bytes(_ count: Int, _ what: String) throws(MigrationError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining.count >= count else { throw .malformed("\(what) is cut short") }
        let taken = remaining.prefix(count)
        remaining = remaining.dropFirst(count)
        return taken
    }
}
