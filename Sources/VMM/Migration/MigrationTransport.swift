// VMM: the migration stream on a socket: connecting to and listening on a
// `MigrationAddress`, the pre-shared key file, and the socket as the byte
// stream the protocol's frames travel on (every read bounded by a timeout).
import FoundationEssentials
import Glibc
import KVM
import Migration

/// A connected socket as the protocol's byte stream.
public final class SocketStream: MigrationByteStream, @unchecked Sendable {
    // Used by one thread at a time (the migration's); `close` may come from another.
    public let socket: StreamSocket

    public init(_ socket: StreamSocket) { self.socket = socket }

    public func write(_ bytes: [UInt8]) throws(MigrationError) {
        do {
            try socket.write(bytes, what: "a migration frame")
        } catch {
            throw Self.migrationError(error, during: "sending")
        }
    }

    public func read(exactly count: Int, during what: String) throws(MigrationError) -> [UInt8] {
        let bytes: [UInt8]
        do {
            bytes = try socket.read(count: count, what: what)
        } catch {
            throw Self.migrationError(error, during: what)
        }
        guard bytes.count == count else { throw .connectionClosed(what) }
        return bytes
    }

    /// Unblocks a reader or writer on another thread (the peer vanished, give up).
    public func close() { socket.shutdown() }

    static func migrationError(_ error: SocketError, during what: String) -> MigrationError {
        switch error {
        case .timedOut: return .timedOut(what)
        case let .failed(_, code) where code == ECONNRESET || code == EPIPE: return .connectionClosed(what)
        case .failed: return .transport("\(error)")
        }
    }
}

public enum MigrationTransport {
    /// Seconds a peer may stay silent before a read gives up (both sides).
    public static let defaultIOTimeout: Double = 30

    /// Connects to `address` (the sender's side).
    public static func connect(to address: MigrationAddress, ioTimeout: Double = defaultIOTimeout) throws(MigrationError) -> SocketStream {
        do {
            let socket: StreamSocket
            switch address {
            case let .tcp(host, port): socket = try StreamSocket.connectTCP(host: host, port: port, timeoutSeconds: ioTimeout)
            case let .unix(path): socket = try StreamSocket.connectUnix(path: path, timeoutSeconds: ioTimeout)
            }
            try socket.setTimeout(seconds: ioTimeout)
            return SocketStream(socket)
        } catch {
            throw .transport("\(error)")
        }
    }

    /// Listens on `address` (the receiver's side). An address other hosts
    /// can reach needs `allowRemote` and a key: the caller checks both first.
    public static func listen(on address: MigrationAddress) throws(MigrationError) -> StreamSocket {
        do {
            switch address {
            case let .tcp(host, port): return try StreamSocket.listenTCP(host: host, port: port)
            case let .unix(path): return try StreamSocket.listenUnix(path: path)
            }
        } catch {
            throw .transport("\(error)")
        }
    }

    /// A key file's largest size: a key is a line of text or random bytes.
    public static let maximumKeyFileBytes = 4096

    /// The key in `path` (--psk-file): at least 16 bytes, one trailing newline ignored.
    public static func loadKey(_ path: String) throws(MachineError) -> MigrationKey {
        let bytes: [UInt8]
        do {
            bytes = try InputFiles.readRegularFile(path, limit: maximumKeyFileBytes)
        } catch {
            throw .migration("--psk-file \(path) \(error)")
        }
        do {
            return try MigrationKey(fileContents: bytes)
        } catch {
            throw .migration("--psk-file \(path): \(error)")
        }
    }
}
