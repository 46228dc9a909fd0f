// ControlAPI: the API socket's file: checks before binding (a live socket is
// refused, a stale one replaced, anything else at the path is an error) and
// publishing a bound socket with mode 0600 and no window in which it is wider.
import FoundationEssentials
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Why the API socket cannot be set up. The CLI prints `description` as
/// `deflect: error: …`.
public enum ControlSocketError: Error, Equatable, CustomStringConvertible {
    /// Another process is serving on this socket (a connection succeeded).
    case inUse(path: String)
    /// The path exists and is not a socket (a regular file, a directory…).
    case notASocket(path: String, kind: String)
    /// The directory that would hold the socket does not exist.
    case directoryMissing(path: String)
    /// The directory that would hold the socket cannot be written.
    case directoryNotWritable(path: String)
    /// A Unix socket path holds at most 107 bytes.
    case pathTooLong(path: String)
    /// A file system call failed.
    case system(path: String, call: String, errno: Int32)
    /// The server could not bind or listen.
    case bindFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .inUse(let path):
            "API socket \(path) is in use by a running process"
        case .notASocket(let path, let kind):
            "API socket path \(path) exists and is \(kind), not a socket"
        case .directoryMissing(let path):
            "directory \(path) for the API socket does not exist"
        case .directoryNotWritable(let path):
            "directory \(path) for the API socket is not writable"
        case .pathTooLong(let path):
            "API socket path \(path) is too long (at most \(ControlSocket.maximumPathBytes) bytes with its temporary name)"
        case .system(let path, let call, let code):
            "API socket \(path): \(call) failed: \(String(cString: strerror(code)))"
        case .bindFailed(let path, let reason):
            "API socket \(path) cannot be served: \(reason)"
        }
    }
}

/// File-system steps around binding the API socket.
///
/// Binding creates the socket file with the process umask, so the server
/// binds inside a fresh directory of mode 0700 (nobody else can reach the
/// socket there), sets the socket to 0600, and only then links it to the
/// requested path. `link` fails if the path exists, so a socket that another
/// process put there in the meantime is never replaced.
enum ControlSocket {
    /// `sizeof(sun_path) - 1`.
    static let maximumPathBytes = 107

    /// Checks `path` and removes a stale socket found there.
    static func prepare(path: String, eventLoopGroup: any EventLoopGroup) async throws(ControlSocketError) {
        let directory = parentDirectory(of: path)
        guard path.utf8.count <= maximumPathBytes,
              temporaryPath(in: directory).socket.utf8.count <= maximumPathBytes else {
            throw .pathTooLong(path: path)
        }
        var status = stat()
        if lstat(path, &status) == 0 {
            guard (status.st_mode & S_IFMT) == S_IFSOCK else {
                throw .notASocket(path: path, kind: kindName(status.st_mode))
            }
            if try await isServing(path: path, eventLoopGroup: eventLoopGroup) {
                throw .inUse(path: path)
            }
            // Nobody accepts on it: the socket of a process that died.
            guard unlink(path) == 0 || errno == ENOENT else { throw .system(path: path, call: "unlink", errno: errno) }
        } else if errno != ENOENT {
            throw .system(path: path, call: "lstat", errno: errno)
        }
        var directoryStatus = stat()
        guard stat(directory, &directoryStatus) == 0, (directoryStatus.st_mode & S_IFMT) == S_IFDIR else {
            throw .directoryMissing(path: directory)
        }
        guard access(directory, W_OK | X_OK) == 0 else { throw .directoryNotWritable(path: directory) }
    }

    /// A private directory next to `path` to bind in, and the socket path inside it.
    static func makeBindDirectory(for path: String) throws(ControlSocketError) -> (directory: String, socket: String) {
        let candidate = temporaryPath(in: parentDirectory(of: path))
        // mkdir applies the umask to 0700, which can only narrow it.
        guard mkdir(candidate.directory, 0o700) == 0 else {
            throw errno == EACCES || errno == EROFS || errno == EPERM
                ? .directoryNotWritable(path: parentDirectory(of: path))
                : .system(path: path, call: "mkdir", errno: errno)
        }
        return candidate
    }

    /// Makes the bound socket private and visible at `path`, then removes the
    /// private directory.
    static func publish(boundSocket: String, directory: String, at path: String) throws(ControlSocketError) {
        defer {
            unlink(boundSocket)
            rmdir(directory)
        }
        guard chmod(boundSocket, 0o600) == 0 else { throw .system(path: path, call: "chmod", errno: errno) }
        guard link(boundSocket, path) == 0 else {
            throw errno == EEXIST ? .inUse(path: path) : .system(path: path, call: "link", errno: errno)
        }
    }

    /// Removes what `makeBindDirectory` created, when binding failed.
    static func discardBindDirectory(_ bind: (directory: String, socket: String)) {
        unlink(bind.socket)
        rmdir(bind.directory)
    }

    /// Whether a process accepts connections on the socket at `path`.
    static func isServing(path: String, eventLoopGroup: any EventLoopGroup) async throws(ControlSocketError) -> Bool {
        do {
            let channel = try await ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(.seconds(2))
                .connect(unixDomainSocketPath: path).get()
            try? await channel.close()
            return true
        } catch let error as IOError where error.errnoCode == ECONNREFUSED {
            return false
        } catch let error as IOError {
            throw .system(path: path, call: "connect", errno: error.errnoCode)
        } catch {
            // A timeout: something holds the socket but does not accept; refuse
            // rather than take the path from it.
            return true
        }
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    private static func temporaryPath(in directory: String) -> (directory: String, socket: String) {
        // Fixed width, so the length checked in `prepare` is the length used.
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let name = ".deflect-api-" + String(repeating: "0", count: 8 - random.count) + random
        let tmp = directory == "/" ? "/" + name : directory + "/" + name
        return (tmp, tmp + "/s")
    }

    private static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        case S_IFIFO: "a FIFO"
        case S_IFCHR, S_IFBLK: "a device"
        default: "an unknown file type"
        }
    }
}
