// VMM: the host files the VMM reads besides /dev/kvm (the msr driver, the
// image, module, policy and key files a run loads), with their libc calls in
// one place.
import FoundationEssentials
import Glibc
import ReadableErrors

enum HostFiles {
    /// One 8-byte pread at offset `index` of the msr driver's file; nil when
    /// the driver is missing, not permitted, or the MSR does not exist.
    static func readMSR(path: String, index: UInt32) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { pread(fd, $0.baseAddress, 8, off_t(index)) }
        return n == 8 ? value : nil
    }
}

/// Why an input file (a guest image, a module) was not loaded.
public enum InputFileError: Error, Equatable, CustomStringConvertible {
    case missing
    /// A directory, FIFO, device or socket: reading it would fail, block or never end.
    case notRegularFile(kind: String)
    case tooLarge(size: UInt64, limit: UInt64)
    /// Larger than what its kind of file may hold (a policy, a key).
    case overLimit(size: UInt64, limit: UInt64)
    case unreadable(reason: String)

    /// Completes "<what> <path> ...".
    public var description: String {
        switch self {
        case .missing: return "does not exist"
        case let .notRegularFile(kind): return "is \(kind), not a regular file"
        case let .tooLarge(size, limit): return "is \(size) bytes, more than the guest's \(limit) bytes of RAM"
        case let .overLimit(size, limit): return "is \(size) bytes, more than the \(limit) bytes it may have"
        case let .unreadable(reason): return "cannot be read: \(reason)"
        }
    }
}

/// Loading the files a run needs without reading more than the guest can hold.
public enum InputFiles {
    /// Checks with `stat` that `path` is a regular file of at most `limit`
    /// bytes — before reading anything, so a huge file or a FIFO costs no
    /// time — then maps it read-only: the pages come from the page cache as
    /// they are copied into guest RAM instead of being read into a second buffer.
    public static func mapRegularFile(_ path: String, limit: UInt64) throws(InputFileError) -> Data {
        let size = try regularFileSize(path)
        guard size <= limit else { throw .tooLarge(size: size, limit: limit) }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw .unreadable(reason: ReadableError.reason(error))
        }
    }

    /// The bytes of the regular file at `path`, at most `limit` of them.
    /// Opened without blocking and checked on the open descriptor, so a FIFO
    /// or a device (/dev/zero) is refused at once instead of read forever.
    public static func readRegularFile(_ path: String, limit: Int) throws(InputFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .missing }
            throw .unreadable(reason: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .unreadable(reason: String(cString: strerror(errno))) }
        if let kind = nonRegularKind(status.st_mode) { throw .notRegularFile(kind: kind) }
        guard status.st_size <= limit else { throw .overLimit(size: UInt64(clamping: status.st_size), limit: UInt64(limit)) }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return 0 }
                return read(fd, base + filled, raw.count - filled)
            }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw .unreadable(reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            filled += n
        }
        // A file that grew while it was read.
        guard filled <= limit else { throw .overLimit(size: UInt64(filled), limit: UInt64(limit)) }
        return Array(bytes[..<filled])
    }

    /// The size `stat` reports for a regular file (symbolic links followed).
    public static func regularFileSize(_ path: String) throws(InputFileError) -> UInt64 {
        var status = stat()
        guard stat(path, &status) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .missing }
            throw .unreadable(reason: String(cString: strerror(code)))
        }
        if let kind = nonRegularKind(status.st_mode) { throw .notRegularFile(kind: kind) }
        return UInt64(clamping: status.st_size)
    }

    /// What a file of `mode` is when it is not a regular file.
    private static func nonRegularKind(_ mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: nil
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "of an unknown file type"
        }
    }
}
