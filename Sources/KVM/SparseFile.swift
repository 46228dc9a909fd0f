// KVM: sparse memory files — which byte ranges of a file hold data
// (lseek SEEK_DATA/SEEK_HOLE), reading and copying ranges, a file's size.
// The snapshot writer skips a memfd's untouched ranges with it, the merge
// of a diff snapshot finds the pages the diff wrote with it, and the memory
// checksums read only the ranges that hold data.
internal import CKVM
import Glibc

public enum SparseFile {
    /// The ranges of `fd` inside `range` that hold data, in order (a range
    /// may start or end inside a page: file systems report extents in their
    /// own block size). Nil when the file system cannot tell data from holes
    /// (lseek fails with other than ENXIO): callers decide whether "all of
    /// it is data" is a safe answer for them.
    public static func dataExtents(of fd: CInt, in range: Range<UInt64>) -> [Range<UInt64>]? {
        var extents: [Range<UInt64>] = []
        var offset = off_t(range.lowerBound)
        let end = off_t(range.upperBound)
        while offset < end {
            let data = Glibc.lseek(fd, offset, CKVM_SEEK_DATA)
            if data < 0 {
                if Glibc.errno == ENXIO { break }   // no data after offset
                return nil
            }
            guard data < end else { break }
            var hole = Glibc.lseek(fd, data, CKVM_SEEK_HOLE)
            if hole < 0 { return nil }
            if hole > end { hole = end }
            extents.append(UInt64(data)..<UInt64(hole))
            offset = hole
        }
        return extents
    }

    /// Copies `range` of `input` to the same offsets of `output`, 1 MiB at a
    /// time (pread/pwrite, short transfers and EINTR retried).
    public static func copy(_ range: Range<UInt64>, from input: CInt, to output: CInt, what: String) throws(KVMError) {
        let chunk = 1 << 20
        var offset = range.lowerBound
        while offset < range.upperBound {
            let count = Int(min(UInt64(chunk), range.upperBound - offset))
            let bytes = try Syscall.pread(input, count: count, offset: Int(offset), what: what)
            let written = bytes.withUnsafeBytes { raw -> Result<Void, KVMError> in
                guard let base = raw.baseAddress else { return .success(()) }
                do throws(KVMError) {
                    // SAFETY: `base` points at `count` bytes read just above.
                    try Syscall.pwrite(output, from: base, count: count, offset: offset, what: what)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            try written.get()
            offset += UInt64(count)
        }
    }

    /// `count` bytes of `fd` at `offset` (a file shorter than that is an error naming `what`).
    public static func read(_ fd: CInt, at offset: UInt64, count: Int, what: String) throws(KVMError) -> [UInt8] {
        try Syscall.pread(fd, count: count, offset: Int(offset), what: what)
    }

    /// The size of the file behind `fd`.
    public static func size(of fd: CInt, what: String) throws(KVMError) -> UInt64 {
        try Syscall.fileSize(fd, what: what)
    }

    /// Grows the file behind `fd` to at least `size` bytes (the rest a hole).
    public static func ensureSize(_ fd: CInt, _ size: UInt64, what: String) throws(KVMError) {
        try Syscall.ensureSize(fd, size, what: what)
    }
}
