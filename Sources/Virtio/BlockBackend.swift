// BlockBackend.swift — where a virtio-blk device's sectors live: a protocol
// (read, write, flush, discard, write zeroes by 512-byte sector) and an
// in-memory disk for tests. The VMM's file back end (pread/pwrite, fdatasync,
// fallocate) implements the same protocol.

/// A back-end failure: the request is answered VIRTIO_BLK_S_IOERR.
public struct BlockBackendError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A disk of `sectorCount` 512-byte sectors. Offsets are in bytes; the
/// device checks every range against the capacity before calling.
public protocol BlockBackend: AnyObject {
    var sectorCount: UInt64 { get }
    var isReadOnly: Bool { get }
    func read(at offset: UInt64, count: Int) throws(BlockBackendError) -> [UInt8]
    func write(_ bytes: [UInt8], at offset: UInt64) throws(BlockBackendError)
    func flush() throws(BlockBackendError)
    /// The sectors may read back as anything afterwards (here: zeros).
    func discard(at offset: UInt64, count: UInt64) throws(BlockBackendError)
    func writeZeroes(at offset: UInt64, count: UInt64) throws(BlockBackendError)
}

/// A disk held in memory.
public final class InMemoryBlockBackend: BlockBackend {
    public private(set) var bytes: [UInt8]
    public let isReadOnly: Bool
    public private(set) var flushCount = 0
    /// Makes every later operation fail (a dying disk).
    public var failing = false

    public init(sectors: Int, readOnly: Bool = false) {
        bytes = Array(repeating: 0, count: max(0, sectors) * 512)
        isReadOnly = readOnly
    }

    public var sectorCount: UInt64 { UInt64(bytes.count / 512) }

    private func range(_ offset: UInt64, _ count: UInt64) throws(BlockBackendError) -> Range<Int> {
        guard !failing else { throw BlockBackendError("injected failure") }
        guard offset <= UInt64(bytes.count), count <= UInt64(bytes.count) - offset else {
            throw BlockBackendError("offset \(offset)+\(count) is past the disk's \(bytes.count) bytes")
        }
        return Int(offset)..<Int(offset + count)
    }

    public func read(at offset: UInt64, count: Int) throws(BlockBackendError) -> [UInt8] {
        Array(bytes[try range(offset, UInt64(max(0, count)))])
    }

    public func write(_ data: [UInt8], at offset: UInt64) throws(BlockBackendError) {
        bytes.replaceSubrange(try range(offset, UInt64(data.count)), with: data)
    }

    public func flush() throws(BlockBackendError) {
        guard !failing else { throw BlockBackendError("injected failure") }
        flushCount += 1
    }

    public func discard(at offset: UInt64, count: UInt64) throws(BlockBackendError) {
        try writeZeroes(at: offset, count: count)
    }

    public func writeZeroes(at offset: UInt64, count: UInt64) throws(BlockBackendError) {
        let range = try range(offset, count)
        bytes.replaceSubrange(range, with: repeatElement(0, count: range.count))
    }
}
