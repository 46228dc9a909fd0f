// TTRPC: every socket system call of the ttrpc transport, in one place:
// blocking AF_UNIX stream sockets (listen, accept, connect, exact reads,
// whole writes) and the frame I/O over them.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

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

    /// A socket connected to `path`; `timeoutSeconds` > 0 bounds the connect
    /// (a listener whose backlog is full) and every later read and write.
    public static func connect(path: String, timeoutSeconds: Int = 0) throws(SocketError) -> Int32 {
        let fd = try stream(path)
        if timeoutSeconds > 0 {
            do {
                try setTimeout(fd, seconds: timeoutSeconds)
            } catch {
                close(fd)
                throw error
            }
        }
        guard withAddress(path, { Glibc.connect(fd, $0, $1) }) == 0 else {
            let code = errno
            close(fd)
            throw SocketError(operation: "connect", path: path, code: code)
        }
        return fd
    }

    /// Bounds every later read and write on `fd` to `seconds` (SO_RCVTIMEO,
    /// SO_SNDTIMEO): a peer that stops answering fails the call with EAGAIN.
    private static func setTimeout(_ fd: Int32, seconds: Int) throws(SocketError) {
        var limit = timeval(tv_sec: seconds, tv_usec: 0)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            guard setsockopt(fd, SOL_SOCKET, option, &limit, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw SocketError(operation: "setsockopt", path: "fd \(fd)", code: errno)
            }
        }
    }

    /// The next connection on a listening socket; retried on EINTR.
    public static func accept(_ fd: Int32) throws(SocketError) -> Int32 {
        while true {
            let client = Glibc.accept(fd, nil, nil)
            if client >= 0 {
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)   // a spawned VM must not inherit the connection
                return client
            }
            if errno != EINTR { throw SocketError(operation: "accept", path: "fd \(fd)", code: errno) }
        }
    }

    /// Exactly `count` bytes, or nil if the peer closed before the first byte.
    public static func read(_ fd: Int32, count: Int) throws(SocketError) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var have = 0
        while have < count {
            // SAFETY: the buffer holds `count` bytes; read writes at most count - have past `have`.
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + have, count - have) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SocketError(operation: "read", path: "fd \(fd)", code: errno)
            }
            if n == 0 {
                if have == 0 { return nil }
                throw SocketError(operation: "read", path: "fd \(fd) (closed after \(have) of \(count) bytes)", code: EPIPE)
            }
            have += n
        }
        return bytes
    }

    /// Writes all of `bytes` (MSG_NOSIGNAL: a vanished peer is an error, not SIGPIPE).
    public static func write(_ fd: Int32, _ bytes: [UInt8]) throws(SocketError) {
        var done = 0
        while done < bytes.count {
            // SAFETY: send reads at most count - done bytes past `done` inside the array.
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SocketError(operation: "write", path: "fd \(fd)", code: errno)
            }
            done += n
        }
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

/// Frames over one connected socket: reads from one thread, writes from any
/// (a response is written whole under a lock, so concurrent handlers never
/// interleave their frames).
public final class TTRPCConnection: Sendable {
    public let fd: Int32
    private let writeLock = Mutex(())

    public init(fd: Int32) { self.fd = fd }

    /// The next frame, or nil when the peer closed the connection between frames.
    public func readFrame() throws -> TTRPCFrame? {
        guard let head = try UnixSocket.read(fd, count: TTRPCFrame.headerSize) else { return nil }
        let header = try TTRPCFrame.decodeHeader(head)
        let payload = header.length == 0 ? [] : try UnixSocket.read(fd, count: header.length)
        guard let payload else { throw TTRPCFrameError.truncated(have: TTRPCFrame.headerSize, need: TTRPCFrame.headerSize + header.length) }
        return TTRPCFrame(streamID: header.streamID, type: header.type, flags: header.flags, payload: payload)
    }

    public func writeFrame(_ frame: TTRPCFrame) throws {
        let bytes = try frame.encoded()
        try writeLock.withLock { _ throws(SocketError) in try UnixSocket.write(fd, bytes) }
    }

    /// Stops both directions; a reader blocked in readFrame returns.
    public func shutdownBoth() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    public func close() { _ = Glibc.close(fd) }
}
