// KVMTests: SparseFile — data extents of a file with holes and range copies
// (no KVM needed).
import Foundation
import Glibc
import Testing
@testable import KVM

@Suite("Sparse files")
struct SparseFileTests {
    /// A temporary file of `size` bytes holding `fill` only in `written`.
    private func sparseFile(size: Int, written: [Range<Int>], fill: UInt8) throws -> (CInt, String) {
        let path = NSTemporaryDirectory() + "deflect-sparse-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        #expect(ftruncate(fd, off_t(size)) == 0)
        for range in written {
            let bytes = [UInt8](repeating: fill, count: range.count)
            let put = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, range.count, off_t(range.lowerBound)) }
            #expect(put == range.count)
        }
        return (fd, path)
    }

    @Test func dataExtentsAreTheWrittenRangesAndNotTheHoles() throws {
        let mib = 1 << 20
        let (fd, path) = try sparseFile(size: 8 * mib, written: [mib..<(mib + 4096), (5 * mib)..<(6 * mib)], fill: 0xA5)
        defer { close(fd); unlink(path) }
        let extents = try #require(SparseFile.dataExtents(of: fd, in: 0..<UInt64(8 * mib)))
        // File systems report extents in their block size: each written range
        // is covered, and nothing far from them is.
        #expect(extents.count == 2)
        #expect(extents.allSatisfy { $0.count <= 2 * mib })
        #expect(extents.contains { $0.contains(UInt64(mib)) && $0.contains(UInt64(mib + 4095)) })
        #expect(extents.contains { $0.contains(UInt64(5 * mib)) && $0.contains(UInt64(6 * mib - 1)) })
        // A window past the last data has none; one inside the data is clipped.
        #expect(SparseFile.dataExtents(of: fd, in: UInt64(7 * mib)..<UInt64(8 * mib)) == [])
        let clipped = try #require(SparseFile.dataExtents(of: fd, in: UInt64(5 * mib)..<UInt64(5 * mib + 8192)))
        #expect(clipped == [UInt64(5 * mib)..<UInt64(5 * mib + 8192)])
    }

    @Test func copyPutsTheRangeAtTheSameOffsets() throws {
        let (input, inputPath) = try sparseFile(size: 3 << 20, written: [4096..<(3 << 20)], fill: 0x5A)
        let (output, outputPath) = try sparseFile(size: 3 << 20, written: [], fill: 0)
        defer { close(input); unlink(inputPath); close(output); unlink(outputPath) }
        try SparseFile.copy(8192..<((2 << 20) + 100), from: input, to: output, what: "test")
        var bytes = [UInt8](repeating: 0, count: 3 << 20)
        let got = bytes.withUnsafeMutableBytes { pread(output, $0.baseAddress, 3 << 20, 0) }
        #expect(got == 3 << 20)
        #expect(bytes[8191] == 0 && bytes[8192] == 0x5A)
        #expect(bytes[(2 << 20) + 99] == 0x5A && bytes[(2 << 20) + 100] == 0)
    }
}
