// KVMTests: DirectFile — O_DIRECT reads and writes through the aligned
// bounce buffer land on the right bytes, whole blocks or not, and the file
// really is opened with O_DIRECT (no KVM needed).
import Foundation
import Glibc
import Testing
@testable import KVM

@Suite("O_DIRECT files")
struct DirectFileTests {
    /// A file of `size` bytes in /var/tmp (tmpfs-independent), byte i = i * 7 + 3.
    private func patternFile(size: Int) throws -> String {
        let path = "/var/tmp/deflect-direct-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func readsAndWritesTheRightBytesAlignedOrNot() throws {
        let size = 3 << 20
        let path = try patternFile(size: size)
        defer { unlink(path) }
        var expected = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let file = try DirectFile(path: path, readOnly: false)
        #expect(fcntl(file.fd, F_GETFL) & 0o40000 != 0, "opened with O_DIRECT")
        #expect([512, 1024, 2048, 4096].contains(file.alignment))
        #expect(file.size == UInt64(size))
        // Whole sectors, a sector inside a block, a range across the 1 MiB
        // bounce buffer, odd offsets and lengths.
        for (offset, count) in [(0, 4096), (512, 512), (4096 * 3 + 512, 1536), ((1 << 20) - 1024, 300_000), (7, 13), (size - 512, 512)] {
            #expect(try file.read(at: UInt64(offset), count: count) == Array(expected[offset..<(offset + count)]), "read \(offset)+\(count)")
        }
        for (offset, count, seed) in [(512, 512, 1), (8192, 4096, 2), ((1 << 20) - 700, 1 << 20, 3), (5, 9, 4)] {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) }
            try file.write(bytes, at: UInt64(offset))
            expected.replaceSubrange(offset..<(offset + count), with: bytes)
        }
        #expect(try file.read(at: 0, count: size) == expected)
        // Through the page cache as well: the bytes are in the file.
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == expected)
    }

    @Test func aMissingFileIsAnOpenError() {
        #expect(throws: DirectFile.OpenError.open(errno: ENOENT)) {
            _ = try DirectFile(path: "/var/tmp/deflect-direct-missing-\(getpid())", readOnly: true)
        }
    }
}
