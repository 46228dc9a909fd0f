// KVM: non-blocking Unix stream sockets for device back ends (virtio-vsock's
// host side): a listener at a path, connections to a path, reads and writes
// that never wait, and no SIGPIPE when the peer has gone. Socket addresses
// are pointer work, hence here beside the C shim.
internal import CKVM
import Glibc

public final class UnixStream: @unchecked Sendable {
    /// What a read found.
    public enum ReadResult: Equatable, Sendable {
        case data([UInt8])
        case wouldBlock
        case closed
    }

    public let fd: CInt
    /// The path a listener bound (removed when it closes, or before).
    private let boundPath: String?
    /// Set once the path is removed: never unlink a path another socket took since.
    private var pathRemoved = false

    private init(fd: CInt, boundPath: String?) {
        self.fd = fd
        self.boundPath = boundPath
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        Syscall.close(fd)
        removeBoundPath()
    }

    /// Removes the listener's path (once; later connects find nothing).
    public func removeBoundPath() {
        guard let boundPath, !pathRemoved else { return }
        pathRemoved = true
        unlink(boundPath)
    }

    /// Listens at `path`; a path already there (another VM's socket, a
    /// stale file) is an error, not replaced.
    public static func listen(path: String) throws(SocketError) -> UnixStream {
        let result = ckvm_unix_socket(path, 16, 0)
        guard result >= 0 else { throw .failed(operation: "listen on \(path)", errno: -result) }
        return UnixStream(fd: result, boundPath: path)
    }

    /// Connects to the listener at `path`; nil when nobody listens there.
    public static func connect(path: String) -> UnixStream? {
        let result = ckvm_unix_socket(path, 0, 100)
        return result >= 0 ? UnixStream(fd: result, boundPath: nil) : nil
    }

    /// The next waiting connection, nil when none waits.
    public func accept() -> UnixStream? {
        let result = ckvm_socket_accept(fd, 0)
        return result >= 0 ? UnixStream(fd: result, boundPath: nil) : nil
    }

    /// At most `maximum` bytes that are there now.
    public func read(maximum: Int) -> ReadResult {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let count = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 { return .data(Array(buffer.prefix(count))) }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return .wouldBlock }
        return .closed
    }

    /// Writes what the socket takes now: the count (maybe 0), nil when the peer is gone.
    public func write(_ bytes: [UInt8]) -> Int? {
        guard !bytes.isEmpty else { return 0 }
        let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if count >= 0 { return count }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : nil
    }

    /// Nothing more will be written.
    public func shutdownWrite() { _ = Glibc.shutdown(fd, CInt(SHUT_WR)) }
}
