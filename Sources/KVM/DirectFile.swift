// KVM: a file opened with O_DIRECT, so reads and writes bypass the host's
// page cache (QEMU's cache=none, cloud-hypervisor's direct=on). O_DIRECT
// wants the memory, the offset and the length aligned: transfers go through
// a page-aligned bounce buffer, in whole blocks of the alignment the file
// system asks for (probed at open as QEMU's raw_probe_alignment does, by
// reading ever larger blocks until one is accepted); a write covering part
// of a block reads the block, changes it and writes it back.
internal import CKVM
import Glibc

public final class DirectFile {
    /// Why a file cannot be used with O_DIRECT.
    public enum OpenError: Error, Equatable, CustomStringConvertible {
        /// The file system refuses O_DIRECT (EINVAL at open, or no alignment up to 4096 works).
        case unsupported
        /// A size that is not a whole number of the alignment's blocks: a
        /// write of the last block would grow the file.
        case unalignedSize(size: UInt64, alignment: Int)
        case open(errno: Int32)

        public var description: String {
            switch self {
            case .unsupported: return "the file system does not support O_DIRECT (direct=on); use direct=off or a file elsewhere"
            case let .unalignedSize(size, alignment):
                return "its size (\(size) bytes) is not a multiple of the file system's O_DIRECT block (\(alignment) bytes)"
            case let .open(errno): return "cannot open: \(ErrnoName.describe(errno))"
            }
        }
    }

    public let fd: CInt
    /// Offsets and lengths of every transfer are multiples of this.
    public let alignment: Int
    public let size: UInt64
    /// The bounce buffer (page-aligned, `capacity` bytes).
    private let buffer: UnsafeMutableRawPointer
    private let capacity = 1 << 20
    private static let pageSize = 4096

    /// Opens `path` with O_DIRECT (read-write unless `readOnly`).
    public init(path: String, readOnly: Bool) throws(OpenError) {
        let descriptor = Glibc.open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | CKVM_O_DIRECT)
        guard descriptor >= 0 else {
            let error = Glibc.errno
            throw error == EINVAL ? .unsupported : .open(errno: error)
        }
        var info = stat()
        var memory: UnsafeMutableRawPointer?
        // SAFETY: posix_memalign stores a pointer to `capacity` bytes aligned to a page, or fails.
        guard fstat(descriptor, &info) == 0, posix_memalign(&memory, Self.pageSize, capacity) == 0, let memory else {
            let error = Glibc.errno
            Glibc.close(descriptor)
            throw .open(errno: error)
        }
        fd = descriptor
        buffer = memory
        size = UInt64(info.st_size)
        guard let probed = Self.probeAlignment(descriptor, buffer: memory, fileSize: size) else {
            Glibc.close(descriptor)
            free(memory)
            throw .unsupported
        }
        alignment = probed
        guard size % UInt64(alignment) == 0 else {
            Glibc.close(descriptor)
            free(memory)
            throw .unalignedSize(size: size, alignment: alignment)
        }
    }

    deinit {
        Glibc.close(fd)
        free(buffer)
    }

    /// The smallest block (512 … 4096 bytes) an O_DIRECT read at offset 0
    /// accepts; nil when none is. An empty file accepts any: 512.
    private static func probeAlignment(_ fd: CInt, buffer: UnsafeMutableRawPointer, fileSize: UInt64) -> Int? {
        for block in [512, 1024, 2048, 4096] {
            let n = Glibc.pread(fd, buffer, block, 0)
            if n >= 0 { return block }
            if Glibc.errno != EINVAL { return nil }
        }
        return nil
    }

    /// `count` bytes at `offset` (which the caller keeps inside the file).
    public func read(at offset: UInt64, count: Int) throws(KVMError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let position = offset + UInt64(done)
            let (start, length) = window(position, count - done)
            try transfer(read: true, at: start, length: length)
            let skip = Int(position - start)
            let take = min(length - skip, count - done)
            result.withUnsafeMutableBytes { raw in
                // SAFETY: `done + take` ≤ `count`, and `skip + take` ≤ `length` ≤ `capacity`.
                raw.baseAddress.map { $0.advanced(by: done).copyMemory(from: buffer.advanced(by: skip), byteCount: take) }
            }
            done += take
        }
        return result
    }

    /// Writes `bytes` at `offset`; partial blocks are read first.
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(KVMError) {
        var done = 0
        while done < bytes.count {
            let position = offset + UInt64(done)
            let (start, length) = window(position, bytes.count - done)
            let skip = Int(position - start)
            let take = min(length - skip, bytes.count - done)
            if skip != 0 || take != length { try transfer(read: true, at: start, length: length) }
            bytes.withUnsafeBytes { raw in
                // SAFETY: as in `read`, the other way round.
                raw.baseAddress.map { buffer.advanced(by: skip).copyMemory(from: $0.advanced(by: done), byteCount: take) }
            }
            try transfer(read: false, at: start, length: length)
            done += take
        }
    }

    /// The aligned block range, at most the buffer's size, that starts at or
    /// before `position` and covers as much of the next `count` bytes as fits.
    private func window(_ position: UInt64, _ count: Int) -> (start: UInt64, length: Int) {
        let a = UInt64(alignment)
        let start = position / a * a
        let end = min((position + UInt64(count) + a - 1) / a * a, start + UInt64(capacity))
        return (start, Int(end - start))
    }

    /// One whole aligned transfer between the buffer and the file (short
    /// transfers and EINTR retried; the end of the file is an error).
    private func transfer(read: Bool, at offset: UInt64, length: Int) throws(KVMError) {
        var done = 0
        while done < length {
            let n = read ? Glibc.pread(fd, buffer + done, length - done, off_t(offset) + off_t(done))
                         : Glibc.pwrite(fd, buffer + done, length - done, off_t(offset) + off_t(done))
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw .ioctl(request: read ? "pread(O_DIRECT)" : "pwrite(O_DIRECT)", errno: Glibc.errno)
            }
            if n == 0 { throw .invalidArgument(request: read ? "pread(O_DIRECT)" : "pwrite(O_DIRECT)", reason: "no progress at \(offset + UInt64(done))") }
            done += n
        }
    }
}
