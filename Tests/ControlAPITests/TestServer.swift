// ControlAPITests: a control server on a socket in a fresh temporary
// directory, plus two ways to talk to it: plain HTTP requests (the client's
// own transport, `UnixSocketHTTP`) and raw connections (NIO) for the
// misbehaving clients.
@testable import ControlAPI
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

/// A directory under /tmp (short: Unix socket paths hold 107 bytes) removed afterwards.
struct TemporaryDirectory: ~Copyable {
    let path: String

    init() throws {
        path = "/tmp/dfl-api-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    deinit {
        chmod(path, 0o755)
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Starts a server for `vm` on `directory/api.sock`, runs `body`, stops it.
func withServer<T>(
    _ vm: FakeVM = FakeVM(),
    limits: ControlServerLimits = ControlServerLimits(),
    _ body: (ControlServer, String) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory()
    let path = directory.path + "/api.sock"
    let server = ControlServer(control: vm, socketPath: path, limits: limits)
    try await server.start()
    do {
        let result = try await body(server, path)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Leaves a socket file at `path` that nobody listens on, as a VMM that was
/// killed leaves it. (NIO removes the file when its listener closes, so the
/// socket is bound under another name and linked to `path` first.)
func makeStaleSocket(at path: String) async throws {
    let bound = path + ".bound"
    let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(unixDomainSocketPath: bound).get()
    guard link(bound, path) == 0 else { throw TestFailure("link \(bound) \(path): errno \(errno)") }
    try await listener.close()
    unlink(bound)
    var status = stat()
    guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK else { throw TestFailure("no stale socket at \(path)") }
}

/// One HTTP exchange's outcome.
struct HTTPAnswer {
    var status: Int
    var headers: [String: String]
    var body: Data

    var text: String { String(decoding: body, as: UTF8.self) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try ControlJSON.decoder().decode(type, from: body) }

    /// The error body every 4xx carries.
    func errorBody() throws -> ErrorBody { try decode(ErrorBody.self) }
}

/// Sends one request over the Unix socket.
func request(_ socket: String, _ method: HTTPMethod, _ path: String, body: Data? = nil,
             contentType: String? = nil) async throws -> HTTPAnswer {
    let answer = try await UnixSocketHTTP(socketPath: socket, connectTimeout: .seconds(5))
        .fetch(HTTPExchangeRequest(method: method, path: path, body: body, contentType: contentType),
               timeout: .seconds(20), limit: 16 << 20)
    return HTTPAnswer(status: answer.head.status, headers: answer.head.headers, body: answer.body)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A raw byte connection to a Unix socket, for clients that misbehave:
/// what it receives is collected by a channel handler and polled.
final class RawConnection: Sendable {
    let channel: any Channel
    private let received: ReceivedBytes

    /// `reading: false` never reads from the socket: a client whose
    /// receive buffer fills and stays full.
    init(path: String, reading: Bool = true) async throws {
        let received = ReceivedBytes()
        self.received = received
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.autoRead, value: reading)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(received)) }
            }
            .connect(unixDomainSocketPath: path).get()
    }

    /// Writes `bytes`; false if the peer has closed the connection.
    @discardableResult
    func send(_ bytes: ByteBuffer) async -> Bool {
        do {
            try await channel.writeAndFlush(bytes)
            return true
        } catch {
            return false
        }
    }

    @discardableResult
    func send(_ text: String) async -> Bool { await send(ByteBuffer(string: text)) }

    /// Everything the peer sent once it closed the connection; nil if it is
    /// still open after `limit`.
    func readToEnd(within limit: Duration) async throws -> String? {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let text = received.state.withLock({ $0.closed ? $0.text : nil }) { return text }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// What arrived once it contains `marker` (or all of it after `limit`).
    func read(until marker: String, within limit: Duration) async throws -> String {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let (text, closed) = received.state.withLock { ($0.text, $0.closed) }
            if text.contains(marker) || closed { return text }
            try await Task.sleep(for: .milliseconds(10))
        }
        return received.state.withLock { $0.text }
    }

    /// Whether the peer has closed the connection.
    var isClosed: Bool { received.state.withLock { $0.closed } }

    func close() async {
        try? await channel.close()
    }
}

final class ReceivedBytes: Sendable {
    let state = Mutex<(text: String, closed: Bool)>(("", false))
}

private final class Collector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let received: ReceivedBytes

    init(_ received: ReceivedBytes) { self.received = received }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let text = String(buffer: unwrapInboundIn(data))
        received.state.withLock { $0.text += text }
    }

    func channelInactive(context: ChannelHandlerContext) {
        received.state.withLock { $0.closed = true }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset after the answer still ends the connection.
        context.close(promise: nil)
    }
}
