// VMM: a virtio-blk disk's sectors in a host file — pread/pwrite, fdatasync
// for FLUSH, zeros written for DISCARD and WRITE_ZEROES; with direct=on
// through O_DIRECT (KVM's DirectFile: the page cache bypassed, aligned bounce
// buffers). Opened and checked (a regular file, readable, writable unless
// read-only, O_DIRECT accepted) before the guest starts; the device calls it
// on its worker thread, never on a vCPU's.
import Glibc
import KVM
import Virtio

final class FileBlockBackend: BlockBackend {
    let path: String
    let isReadOnly: Bool
    let sectorCount: UInt64
    let isDirect: Bool
    private let fd: CInt
    /// The O_DIRECT handle (direct=on), which then serves every transfer.
    private let direct: DirectFile?

    /// Opens `disk.path`; the error is one line naming the option and the reason.
    init(_ disk: DiskConfiguration) throws(MachineError) {
        path = disk.path
        isReadOnly = disk.readOnly
        let descriptor = open(disk.path, (disk.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .device("--disk path=\(disk.path): cannot open: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw .device("--disk path=\(disk.path): not a regular file")
        }
        fd = descriptor
        sectorCount = UInt64(info.st_size) / 512
        isDirect = disk.direct
        if disk.direct {
            do throws(DirectFile.OpenError) {
                direct = try DirectFile(path: disk.path, readOnly: disk.readOnly)
            } catch {
                close(descriptor)
                throw .device("--disk path=\(disk.path),direct=on: \(error)")
            }
        } else {
            direct = nil
        }
    }

    deinit { close(fd) }

    func read(at offset: UInt64, count: Int) throws(BlockBackendError) -> [UInt8] {
        if let direct {
            do throws(KVMError) { return try direct.read(at: offset, count: count) } catch {
                throw BlockBackendError("\(path): read at \(offset): \(error)")
            }
        }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw BlockBackendError("\(path): read at \(offset): \(n == 0 ? "end of file" : String(cString: strerror(errno)))") }
            done += n
        }
        return bytes
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws(BlockBackendError) {
        guard !isReadOnly else { throw BlockBackendError("\(path) is read-only") }
        if let direct {
            do throws(KVMError) { return try direct.write(bytes, at: offset) } catch {
                throw BlockBackendError("\(path): write at \(offset): \(error)")
            }
        }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw BlockBackendError("\(path): write at \(offset): \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    func flush() throws(BlockBackendError) {
        guard fdatasync(fd) == 0 else { throw BlockBackendError("\(path): fdatasync: \(String(cString: strerror(errno)))") }
    }

    func discard(at offset: UInt64, count: UInt64) throws(BlockBackendError) {
        try writeZeroes(at: offset, count: count)
    }

    func writeZeroes(at offset: UInt64, count: UInt64) throws(BlockBackendError) {
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        var done: UInt64 = 0
        while done < count {
            let length = Int(min(UInt64(chunk.count), count - done))
            try write(length == chunk.count ? chunk : Array(chunk.prefix(length)), at: offset + done)
            done += UInt64(length)
        }
    }
}
