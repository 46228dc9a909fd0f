// TTRPC: the socket system calls NIO does not make for us: creating the
// shim's listening AF_UNIX socket (the server adopts it) and the shim's
// readiness probe (a plain connect).
#if canImport(Glibc)
import Glibc
#endif

/// A failed socket call: which call, on what, and errno's text.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var path: String
    public var code: Int32

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

public enum UnixSocket {
    /// sun_path's size, less the terminating NUL.
    static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// A listening socket at `path` (a stale socket file there is replaced).
    public static func listen(path: String) throws(SocketError) -> Int32 {
        let fd = try stream(path)
        unlink(path)
        let bound = withAddress(path) { bind(fd, $0, $1) }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            let code = errno
            close(fd)
            throw SocketError(operation: "bind/listen", path: path, code: code)
        }
        return fd
    }

    /// A socket connected to `path`.
    public static func connect(path: String) throws(SocketError) -> Int32 {
        let fd = try stream(path)
        guard withAddress(path, { Glibc.connect(fd, $0, $1) }) == 0 else {
            let code = errno
            close(fd)
            throw SocketError(operation: "connect", path: path, code: code)
        }
        return fd
    }

    private static func stream(_ path: String) throws(SocketError) -> Int32 {
        guard path.utf8.count <= maximumPathLength else {
            throw SocketError(operation: "socket", path: path, code: ENAMETOOLONG)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", path: path, code: errno) }
        return fd
    }

    private static func withAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        // SAFETY: the path's length was checked against sun_path's size in stream(); the rest stays zero.
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
