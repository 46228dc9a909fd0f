// VMM: the checksums of a snapshot's memory file — CRC-64 (the state
// file's CRC) of every 1 MiB chunk of the file as it reads, holes as zeros —
// computed from the written file before the state file names it, and
// checked by a restore and by `deflect snapshot inspect --verify`. A chunk
// the file holds no data in (a hole) has CRC 0 without being read, since
// CRC-64 with initial value 0 stays 0 over zero bytes.
import KVM
import Snapshot

/// A memory chunk whose bytes do not match their checksum.
public struct MemoryChunkMismatch: Sendable, Equatable, CustomStringConvertible {
    public var chunk: Int
    public var range: Range<UInt64>
    public var stored: UInt64
    public var computed: UInt64

    public var description: String {
        "chunk \(chunk) (bytes 0x\(String(range.lowerBound, radix: 16))..<0x\(String(range.upperBound, radix: 16))) has CRC-64 0x\(String(computed, radix: 16)), the state file says 0x\(String(stored, radix: 16))"
    }
}

public enum MemoryChecksums {
    /// The chunk size snapshots are written with.
    public static let chunkBytes: UInt64 = 1 << 20

    /// The CRC-64 of each `chunkBytes` chunk of the first `size` bytes of `fd`.
    public static func compute(fd: CInt, size: UInt64, chunkBytes: UInt64 = chunkBytes, what: String) throws(KVMError) -> [UInt64] {
        var sums: [UInt64] = []
        try visit(fd: fd, size: size, chunkBytes: chunkBytes, what: what) { _, _, crc in
            sums.append(crc)
            return true
        }
        return sums
    }

    /// The first chunk of `fd` whose CRC-64 differs from `expected`, nil when all match.
    public static func firstMismatch(fd: CInt, size: UInt64, chunkBytes: UInt64, expected: [UInt64],
                                     what: String) throws(KVMError) -> MemoryChunkMismatch? {
        var mismatch: MemoryChunkMismatch?
        try visit(fd: fd, size: size, chunkBytes: chunkBytes, what: what) { index, range, crc in
            guard index < expected.count, expected[index] == crc else {
                mismatch = MemoryChunkMismatch(chunk: index, range: range, stored: index < expected.count ? expected[index] : 0,
                                               computed: crc)
                return false
            }
            return true
        }
        return mismatch
    }

    /// How many chunks `size` bytes make.
    public static func chunkCount(size: UInt64, chunkBytes: UInt64) -> Int {
        Int((size + chunkBytes - 1) / chunkBytes)
    }

    /// Calls `body` with each chunk's index, range and CRC, in order, until it returns false.
    private static func visit(fd: CInt, size: UInt64, chunkBytes: UInt64, what: String,
                              _ body: (Int, Range<UInt64>, UInt64) -> Bool) throws(KVMError) {
        // Without hole reporting every chunk is read.
        let extents = SparseFile.dataExtents(of: fd, in: 0..<size) ?? [0..<size]
        var next = 0
        var start: UInt64 = 0
        var index = 0
        while start < size {
            let range = start..<min(start + chunkBytes, size)
            while next < extents.count, extents[next].upperBound <= range.lowerBound { next += 1 }
            var crc: UInt64 = 0
            if next < extents.count, extents[next].lowerBound < range.upperBound {
                crc = CRC64.checksum(try SparseFile.read(fd, at: range.lowerBound, count: Int(range.count), what: what))
            }
            guard body(index, range, crc) else { return }
            start = range.upperBound
            index += 1
        }
    }
}
