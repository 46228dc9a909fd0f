// KVM: blocking stream sockets (TCP and Unix) for live migration. They live
// in the KVM layer because building socket addresses and reading into
// buffers is pointer work, which Deflect keeps here and in the C shim; the
// migration protocol above them is pure Swift. Every read and write is
// bounded by a timeout, so a silent peer cannot hang either side.
internal import CKVM
import Glibc

/// A failed socket operation: what, and the OS's reason.
public enum SocketError: Error, Equatable, Sendable, CustomStringConvertible {
    case failed(operation: String, errno: CInt)
    /// Nothing arrived (or could be sent) within the timeout.
    case timedOut(operation: String)

    public var description: String {
        switch self {
        case let .failed(operation, code):
            code == EADDRNOTAVAIL ? "cannot \(operation): the address is not available or the host name does not resolve"
                : "cannot \(operation): \(String(cString: strerror(code)))"
        case let .timedOut(operation): "\(operation) timed out"
        }
    }
}

/// A connected or listening stream socket. Owns its descriptor.
public final class StreamSocket: @unchecked Sendable {
    // The descriptor never changes; reads and writes are each used by one thread.
    private let fd: CInt

    private init(fd: CInt) { self.fd = fd }

    deinit { Syscall.close(fd) }

    private static func checked(_ result: CInt, _ operation: String) throws(SocketError) -> StreamSocket {
        guard result >= 0 else {
            throw result == -ETIMEDOUT || result == -EAGAIN ? .timedOut(operation: operation) : .failed(operation: operation, errno: -result)
        }
        return StreamSocket(fd: result)
    }

    public static func listenTCP(host: String, port: UInt16) throws(SocketError) -> StreamSocket {
        try checked(ckvm_tcp_socket(host, port, 1, 0), "listen on tcp:\(host):\(port)")
    }

    public static func connectTCP(host: String, port: UInt16, timeoutSeconds: Double) throws(SocketError) -> StreamSocket {
        try checked(ckvm_tcp_socket(host, port, 0, milliseconds(timeoutSeconds)), "connect to tcp:\(host):\(port)")
    }

    public static func listenUnix(path: String) throws(SocketError) -> StreamSocket {
        try checked(ckvm_unix_socket(path, 1, 0), "listen on unix:\(path)")
    }

    public static func connectUnix(path: String, timeoutSeconds: Double) throws(SocketError) -> StreamSocket {
        try checked(ckvm_unix_socket(path, 0, milliseconds(timeoutSeconds)), "connect to unix:\(path)")
    }

    private static func milliseconds(_ seconds: Double) -> CInt {
        CInt(clamping: Int((seconds * 1000).rounded()))
    }

    /// The next connection; waits at most `timeoutSeconds` (nil: no limit).
    public func accept(timeoutSeconds: Double?) throws(SocketError) -> StreamSocket {
        try Self.checked(ckvm_socket_accept(fd, timeoutSeconds.map(Self.milliseconds) ?? -1), "accept a connection")
    }

    /// Bounds every later read and write by `seconds`.
    public func setTimeout(seconds: Double) throws(SocketError) {
        let result = ckvm_socket_set_timeout(fd, Self.milliseconds(seconds))
        guard result == 0 else { throw .failed(operation: "set the socket timeout", errno: -result) }
    }

    /// The local TCP port (what `tcp:HOST:0` was given), 0 for a Unix socket.
    public var localPort: UInt16 { UInt16(clamping: max(0, ckvm_socket_port(fd))) }

    public func write(_ bytes: [UInt8], what: String) throws(SocketError) {
        // SAFETY: the buffer is alive for the call and `count` is its size.
        let result = bytes.withUnsafeBytes { raw in ckvm_socket_write_full(fd, raw.baseAddress, raw.count) }
        guard result == 0 else {
            throw result == -Int(EAGAIN) ? .timedOut(operation: "sending \(what)") : .failed(operation: "send \(what)", errno: CInt(-result))
        }
    }

    /// Up to `count` bytes: fewer only when the peer closed the stream.
    public func read(count: Int, what: String) throws(SocketError) -> [UInt8] {
        var failure: Int = 0
        // SAFETY: the helper writes at most `count` bytes into the buffer and reports how many.
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let n = ckvm_socket_read_full(fd, buffer.baseAddress, count)
            if n < 0 { failure = n; initialized = 0 } else { initialized = n }
        }
        guard failure == 0 else {
            throw failure == -Int(EAGAIN) ? .timedOut(operation: "waiting for \(what)") : .failed(operation: "receive \(what)", errno: CInt(-failure))
        }
        return bytes
    }

    /// Ends both directions now (a blocked reader on another thread returns).
    public func shutdown() { _ = Glibc.shutdown(fd, CInt(SHUT_RDWR)) }
}

extension MemoryFile {
    /// Writes `bytes` into the file at `offset` (a memfd being filled by an
    /// incoming migration, before any mapping of it runs a guest).
    public func write(_ bytes: ArraySlice<UInt8>, at offset: UInt64) throws(KVMError) {
        guard isAnonymous else { throw .invalidArgument(request: "pwrite(memory file)", reason: "the file is read-only") }
        guard offset <= size, UInt64(bytes.count) <= size - offset else {
            throw .invalidArgument(request: "pwrite(memory file)", reason: "\(bytes.count) bytes at \(offset) pass the end (\(size))")
        }
        let result: Result<Void, KVMError> = bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return .success(()) }
            // SAFETY: `raw` is alive for the call; the range was checked against the file size.
            do throws(KVMError) {
                try Syscall.pwrite(fd, from: base, count: raw.count, offset: offset, what: "memory file")
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }
}

extension GuestMemory {
    /// Whether page `page` of the slot holds only zeros (memcmp against a
    /// zero page: a new receiver's memory is zero already, so such pages
    /// need not travel).
    public func isZeroPage(_ page: Int) -> Bool {
        guard page >= 0, page < pageCount else { return false }
        return Self.zeroPage.withUnsafeBytes { zero in
            guard let base = zero.baseAddress else { return false }
            // SAFETY: the page lies inside the mapping (checked above); `zero` is 4 KiB.
            return memcmp(host + page * Int(Self.pageSize), base, Int(Self.pageSize)) == 0
        }
    }

    private static let zeroPage = [UInt8](repeating: 0, count: Int(pageSize))
}
