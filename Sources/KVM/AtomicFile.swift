// KVM: how Deflect's files reach the disk — the one atomic writer. A
// `PendingFile` is written where no reader can see it (an unnamed O_TMPFILE
// in the target's directory, or where the file system has none a hidden,
// uniquely named `.NAME.<16 hex>.partial` there), synced, and only then
// given its name: linked under a new name, or renamed over the old file,
// and the directory synced. `AtomicFile` writes whole files through it and
// reads files with a size bound and without ever blocking on a FIFO.
// `FileKind` says what a path is before anything is written to it.
internal import CKVM
import Glibc

/// A failed file operation: the step, the path and the OS's reason. One line.
public struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var reason: String
    /// The errno of the failed call, when there was one.
    public var errno: Int32?

    public init(operation: String, path: String, reason: String, errno: Int32? = nil) {
        self.operation = operation
        self.path = path
        self.reason = reason
        self.errno = errno
    }

    /// The failure of the last system call (`errno`).
    static func system(_ operation: String, _ path: String, _ code: Int32 = Glibc.errno) -> FileError {
        FileError(operation: operation, path: path, reason: String(cString: strerror(code)), errno: code)
    }

    public var description: String { "cannot \(operation) \(path): \(reason)" }
}

/// What a path names, without following a final symbolic link.
public enum FileKind: Sendable, Equatable, CustomStringConvertible {
    case missing, regular, directory, fifo, socket, characterDevice, blockDevice, symbolicLink

    /// lstat(2) of `path`; nil when it cannot be examined (EACCES, ELOOP …):
    /// the operation that follows reports that itself.
    public static func of(_ path: String) -> FileKind? {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            return Glibc.errno == ENOENT || Glibc.errno == ENOTDIR ? .missing : nil
        }
        return kind(mode: info.st_mode)
    }

    static func kind(mode: mode_t) -> FileKind {
        switch mode & S_IFMT {
        case S_IFREG: .regular
        case S_IFDIR: .directory
        case S_IFIFO: .fifo
        case S_IFSOCK: .socket
        case S_IFCHR: .characterDevice
        case S_IFBLK: .blockDevice
        default: .symbolicLink
        }
    }

    public var description: String {
        switch self {
        case .missing: "missing"
        case .regular: "a regular file"
        case .directory: "a directory"
        case .fifo: "a FIFO"
        case .socket: "a socket"
        case .characterDevice: "a character device"
        case .blockDevice: "a block device"
        case .symbolicLink: "a symbolic link"
        }
    }
}

/// A file being written that no reader sees until `install` names it.
/// Dropped without `install`, it disappears (an unnamed file with its
/// descriptor; a named temporary is unlinked). After `kill -9` an unnamed
/// file leaves nothing; a named temporary (file systems without O_TMPFILE)
/// stays as `.NAME.<16 hex>.partial`, which the next writer of NAME can
/// recognise by that pattern.
public final class PendingFile {
    /// The directory the file will be named in ("." for a bare name).
    public let directory: String
    /// The descriptor to write to (read-write; the writer owns it).
    public let fileDescriptor: CInt
    /// The hidden temporary's name, nil for an unnamed O_TMPFILE.
    public private(set) var temporaryName: String?
    /// Whether `install` gave the file its name (a later step may still have failed).
    public private(set) var isInstalled = false
    /// Bytes `write` has appended.
    private var written: UInt64 = 0
    /// Test hook: the step of `install` that fails, as an injected error.
    var failingStep: AtomicFile.Step?

    /// Opens a pending file in `directory`; `hint` (the target's name) is
    /// part of the temporary's name when one is needed.
    public init(in directory: String, hint: String) throws(FileError) {
        let directory = directory.isEmpty ? "." : directory
        self.directory = directory
        var fd = Glibc.open(directory, CKVM_O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600)
        if fd < 0 {
            let code = Glibc.errno
            // EOPNOTSUPP: no O_TMPFILE on this file system; EISDIR/EINVAL: older kernels.
            guard code == EOPNOTSUPP || code == EISDIR || code == EINVAL else {
                throw .system("create a file in", directory, code)
            }
            let name = Self.temporaryName(for: hint)
            fd = Glibc.open(directory + "/" + name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .system("create", directory + "/" + name) }
            temporaryName = name
        }
        fileDescriptor = fd
    }

    deinit {
        _ = Glibc.close(fileDescriptor)
        if !isInstalled, let temporaryName { _ = unlink(directory + "/" + temporaryName) }
    }

    /// `.NAME.<16 hex>.partial`: hidden, unique, and recognisable.
    public static func temporaryName(for hint: String) -> String {
        ".\(hint).\(AtomicFile.randomHex()).partial"
    }

    /// Whether `name` is a temporary `temporaryName(for: hint)` made.
    public static func isTemporaryName(_ name: String, for hint: String) -> Bool {
        let prefix = "." + hint + ".", suffix = ".partial"
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count == prefix.count + 16 + suffix.count else { return false }
        return AtomicFile.isHex(name.dropFirst(prefix.count).dropLast(suffix.count))
    }

    /// Appends `bytes` after what was written so far (short writes and EINTR retried).
    public func write(_ bytes: [UInt8]) throws(FileError) {
        if failingStep == .write { throw AtomicFile.injected("write", name) }
        let result = bytes.withUnsafeBytes { raw -> Result<Void, KVMError> in
            guard let base = raw.baseAddress else { return .success(()) }
            do throws(KVMError) {
                // SAFETY: `base` points at the array's `raw.count` bytes.
                try Syscall.pwrite(fileDescriptor, from: base, count: raw.count, offset: written, what: name)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case let .failure(error) = result { throw Self.fileError("write", name, error) }
        written += UInt64(bytes.count)
    }

    /// Syncs the file and names it `name` in its directory, then syncs the
    /// directory. `replacing`: rename over whatever has that name (the
    /// commit of a replacement); otherwise the name must be new (EEXIST).
    /// Until the name exists the file is invisible; a failure of the last
    /// step (the directory fsync) is reported with the file already named.
    public func install(as name: String, replacing: Bool) throws(FileError) {
        let target = directory + "/" + name
        if failingStep == .sync { throw AtomicFile.injected("fsync", self.name) }
        guard fsync(fileDescriptor) == 0 else { throw .system("fsync", self.name) }
        if failingStep == .rename { throw AtomicFile.injected("rename onto", target) }
        if let temporaryName {
            let source = directory + "/" + temporaryName
            if replacing {
                guard rename(source, target) == 0 else { throw .system("rename onto", target) }
            } else {
                guard link(source, target) == 0 else { throw .system("create", target) }
                _ = unlink(source)
            }
        } else if replacing {
            // An unnamed file cannot be renamed: link it under a temporary name first.
            let temporary = directory + "/" + Self.temporaryName(for: name)
            try linkUnnamed(to: temporary)
            guard rename(temporary, target) == 0 else {
                let error = FileError.system("rename onto", target)
                _ = unlink(temporary)
                throw error
            }
        } else {
            try linkUnnamed(to: target)
        }
        isInstalled = true
        try AtomicFile.syncDirectory(directory)
    }

    /// linkat of the O_TMPFILE through /proc (any user), or AT_EMPTY_PATH
    /// where /proc is not mounted (needs CAP_DAC_READ_SEARCH).
    private func linkUnnamed(to target: String) throws(FileError) {
        if linkat(AT_FDCWD, "/proc/self/fd/\(fileDescriptor)", AT_FDCWD, target, AT_SYMLINK_FOLLOW) == 0 { return }
        let code = Glibc.errno
        guard code == ENOENT, linkat(fileDescriptor, "", AT_FDCWD, target, CKVM_AT_EMPTY_PATH) == 0 else {
            throw .system("create", target, code == ENOENT ? Glibc.errno : code)
        }
    }

    /// A KVM-layer failure of `operation` on `path` as a FileError (the errno's text when there is one).
    static func fileError(_ operation: String, _ path: String, _ error: KVMError) -> FileError {
        guard let code = error.errno else { return FileError(operation: operation, path: path, reason: "\(error)") }
        return .system(operation, path, code)
    }

    /// How errors name the file: its temporary, or the directory it is in.
    private var name: String {
        temporaryName.map { directory + "/" + $0 } ?? "an unnamed file in \(directory)"
    }
}

public enum AtomicFile {
    /// Steps of a write, for tests that make one fail.
    public enum Step: Sendable { case write, sync, rename }

    /// Replaces `path` with `bytes` atomically: a pending file in the same
    /// directory, fsync, rename, fsync of the directory. Until the rename a
    /// crash or an error leaves the previous file as it was. A `path` that
    /// exists and is not a regular file (a device, a FIFO, a directory, a
    /// symbolic link) is refused before anything is written.
    public static func write(_ bytes: [UInt8], to path: String) throws(FileError) {
        try write(bytes, to: path, failing: nil)
    }

    static func write(_ bytes: [UInt8], to path: String, failing step: Step?) throws(FileError) {
        let (directory, name) = split(path)
        if let kind = FileKind.of(path), kind != .missing, kind != .regular {
            throw FileError(operation: "write", path: path, reason: "it is \(kind); only a regular file is replaced")
        }
        let file = try PendingFile(in: directory, hint: name)
        file.failingStep = step
        try file.write(bytes)
        try file.install(as: name, replacing: true)
    }

    /// Reads the regular file at `path`, refusing anything else (a FIFO is
    /// opened without blocking and refused); a file longer than `limit`
    /// bytes is refused before anything is read.
    public static func read(_ path: String, limit: Int) throws(FileError) -> [UInt8] {
        let fd = try openRegular(path, what: "read")
        defer { _ = Glibc.close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system("read", path) }
        guard info.st_size <= limit else {
            throw FileError(operation: "read", path: path, reason: "larger than the limit of \(limit) bytes")
        }
        do {
            return try Syscall.pread(fd, count: Int(info.st_size), offset: 0, what: path)
        } catch {
            throw PendingFile.fileError("read", path, error)
        }
    }

    /// Opens `path` read-only if it is a regular file: O_NONBLOCK, so a FIFO
    /// cannot block the open, then fstat; anything else is refused.
    /// Returns the descriptor (the caller closes it).
    public static func openRegular(_ path: String, what operation: String) throws(FileError) -> CInt {
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .system(operation, path) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = FileError.system(operation, path)
            _ = Glibc.close(fd)
            throw error
        }
        let kind = FileKind.kind(mode: info.st_mode)
        guard kind == .regular else {
            _ = Glibc.close(fd)
            throw FileError(operation: operation, path: path, reason: "it is \(kind), not a regular file")
        }
        // Regular files ignore O_NONBLOCK; cleared so nothing depends on it.
        _ = fcntl(fd, F_SETFL, 0)
        return fd
    }

    /// fsync of a directory: makes the names created or renamed in it durable.
    public static func syncDirectory(_ directory: String) throws(FileError) {
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system("open directory", directory) }
        defer { _ = Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw .system("fsync directory", directory) }
    }

    /// The directory ("." for a bare name) and the last component of `path`.
    public static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }

    /// 16 lowercase hex digits from the system's random source.
    public static func randomHex() -> String {
        let value = UInt64.random(in: 0...UInt64.max)
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    public static func isHex(_ text: Substring) -> Bool {
        text.count == 16 && text.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    static func injected(_ operation: String, _ path: String) -> FileError {
        FileError(operation: operation, path: path, reason: "injected failure")
    }
}
