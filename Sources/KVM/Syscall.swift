// KVM: every libc call of the KVM layer goes through this file, so that each
// failure is turned into a KVMError naming the request in exactly one way.
internal import CKVM
import Glibc

enum Syscall {
    /// An ioctl without argument. Returns the non-negative result.
    @inline(__always)
    static func ioctl(_ fd: CInt, _ request: UInt, _ name: String) throws(KVMError) -> CInt {
        let result = ckvm_ioctl_none(fd, request)
        guard result >= 0 else { throw .ioctl(request: name, errno: -result) }
        return result
    }

    /// An ioctl whose argument is an integer (KVM_CHECK_EXTENSION, KVM_CREATE_VCPU, ...).
    @inline(__always)
    static func ioctl(_ fd: CInt, _ request: UInt, value: UInt, _ name: String) throws(KVMError) -> CInt {
        let result = ckvm_ioctl_value(fd, request, value)
        guard result >= 0 else { throw .ioctl(request: name, errno: -result) }
        return result
    }

    /// An ioctl whose argument points at a structure.
    @inline(__always)
    static func ioctl<T>(_ fd: CInt, _ request: UInt, _ argument: inout T, _ name: String) throws(KVMError) -> CInt {
        // SAFETY: `argument` is a live inout of the struct type the request expects.
        let result = withUnsafeMutablePointer(to: &argument) { ckvm_ioctl_ptr(fd, request, $0) }
        guard result >= 0 else { throw .ioctl(request: name, errno: -result) }
        return result
    }

    /// An ioctl on a raw buffer (structures with flexible array members).
    @inline(__always)
    static func ioctl(_ fd: CInt, _ request: UInt, buffer: UnsafeMutableRawPointer, _ name: String) -> CInt {
        ckvm_ioctl_ptr(fd, request, buffer)
    }

    static func open(_ path: String, flags: CInt) throws(KVMError) -> CInt {
        let fd = Glibc.open(path, flags | O_CLOEXEC)
        guard fd >= 0 else { throw .open(path: path, errno: Glibc.errno) }
        return fd
    }

    static func close(_ fd: CInt) {
        _ = Glibc.close(fd)
    }

    /// Anonymous memory when `fd` < 0; else the file at `offset`, shared
    /// (writes reach the file) or private (copy-on-write, the file unchanged).
    static func mmap(length: Int, fd: CInt, shared: Bool, offset: UInt64 = 0, what: String) throws(KVMError) -> UnsafeMutableRawPointer {
        let flags = fd < 0 ? (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE) : (shared ? MAP_SHARED : MAP_PRIVATE | MAP_NORESERVE)
        let pointer = Glibc.mmap(nil, length, PROT_READ | PROT_WRITE, flags, fd, off_t(offset))
        guard let pointer, pointer != MAP_FAILED else { throw .mmap(what: what, errno: Glibc.errno) }
        return pointer
    }

    static func munmap(_ pointer: UnsafeMutableRawPointer, length: Int) {
        _ = Glibc.munmap(pointer, length)
    }

    /// Reads exactly `count` bytes at `offset` (loops over short reads and
    /// EINTR); fewer at end of file is an error naming `what`.
    static func pread(_ fd: CInt, count: Int, offset: Int, what: String) throws(KVMError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.pread(fd, base + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw .ioctl(request: "pread(\(what))", errno: Glibc.errno)
            }
            if n == 0 { throw .invalidArgument(request: "pread(\(what))", reason: "file ends at \(offset + done), \(count - done) bytes short") }
            done += n
        }
        return bytes
    }

    /// memfd_create(name, MFD_CLOEXEC), grown to `size` bytes (a hole until written).
    static func memoryFile(name: String, size: UInt64) throws(KVMError) -> CInt {
        let fd = ckvm_memfd_create(name, CKVM_MFD_CLOEXEC)
        guard fd >= 0 else { throw .ioctl(request: "memfd_create(\(name))", errno: -fd) }
        guard Glibc.ftruncate(fd, off_t(size)) == 0 else {
            let error = Glibc.errno
            close(fd)
            throw .ioctl(request: "ftruncate(\(name))", errno: error)
        }
        return fd
    }

    /// The size of the file behind `fd` (fstat).
    static func fileSize(_ fd: CInt, what: String) throws(KVMError) -> UInt64 {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .ioctl(request: "fstat(\(what))", errno: Glibc.errno) }
        return UInt64(info.st_size)
    }

    /// Grows the file behind `fd` to at least `size` bytes (the rest a hole).
    static func ensureSize(_ fd: CInt, _ size: UInt64, what: String) throws(KVMError) {
        guard try fileSize(fd, what: what) < size else { return }
        guard Glibc.ftruncate(fd, off_t(size)) == 0 else { throw .ioctl(request: "ftruncate(\(what))", errno: Glibc.errno) }
    }

    /// Writes `count` bytes from `source` at `offset` (loops over short writes and EINTR).
    static func pwrite(_ fd: CInt, from source: UnsafeRawPointer, count: Int, offset: UInt64, what: String) throws(KVMError) {
        var done = 0
        while done < count {
            let n = Glibc.pwrite(fd, source + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if Glibc.errno == EINTR { continue }
                throw .ioctl(request: "pwrite(\(what))", errno: Glibc.errno)
            }
            if n == 0 { throw .invalidArgument(request: "pwrite(\(what))", reason: "no progress at \(offset + UInt64(done))") }
            done += n
        }
    }
}
