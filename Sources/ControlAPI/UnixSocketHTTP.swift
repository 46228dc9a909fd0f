// ControlAPI: one HTTP/1.1 exchange over a Unix socket on NIOHTTP1: a
// connection of its own per request (`Connection: close`), a connect
// deadline, and a deadline for the whole exchange. What `ControlClient`
// sends through; small on purpose (no pool, no TLS, no redirects).
import FoundationEssentials
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Why an exchange failed, before any words are put on it.
enum HTTPExchangeError: Error {
    /// The connection could not be made (the error of `connect`).
    case connect(any Error)
    /// The server closed the connection before its answer's head.
    case hungUp
    /// The server closed the connection in the middle of the answer.
    case brokeOff
    /// The deadline passed first.
    case timedOut
    /// The calling task was cancelled.
    case cancelled
    /// The answer's body is longer than the caller accepts.
    case tooLarge(limit: Int)
    /// Writing the request or reading the answer failed otherwise.
    case transport(any Error)

    /// In a user's words: the errno's text for a socket error.
    var reason: String {
        switch self {
        case .connect(let error), .transport(let error):
            if case ChannelError.connectTimeout = error { return "connecting timed out" }
            if error is SocketAddressError { return "the path is too long for a Unix socket" }
            if error is HTTPParserError { return "the answer is not HTTP/1.1" }
            return TransportErrorText.reason(error)
        case .hungUp: return "the server closed the connection without answering"
        case .brokeOff: return "the server closed the connection in the middle of its answer"
        case .timedOut: return "no answer in time"
        case .cancelled: return "the request was cancelled"
        case .tooLarge(let limit): return "the answer is longer than \(limit >> 20) MiB"
        }
    }
}

/// The head of an answer.
struct HTTPAnswerHead: Sendable {
    var status: Int
    /// Names in lower case (HTTP's are case-insensitive); the last value of a repeated name.
    var headers: [String: String]
}

/// A request to send.
struct HTTPExchangeRequest: Sendable {
    var method: HTTPMethod
    var path: String
    var body: Data?
    var contentType: String?
}

/// Sends one request per connection to the Unix socket at `socketPath`.
struct UnixSocketHTTP: Sendable {
    let socketPath: String
    /// Time allowed for `connect` (a socket whose backlog is full keeps it waiting).
    let connectTimeout: Duration

    /// Sends `request` and collects the whole answer (at most `limit` body bytes).
    func fetch(_ request: HTTPExchangeRequest, timeout: Duration, limit: Int)
        async throws(HTTPExchangeError) -> (head: HTTPAnswerHead, body: Data) {
        var body = Data()
        let head = try await stream(request, timeout: timeout) { _, chunk throws(HTTPExchangeError) in
            guard body.count + chunk.readableBytes <= limit else { throw .tooLarge(limit: limit) }
            body.append(contentsOf: chunk.readableBytesView)
            return true
        }
        return (head, body)
    }

    /// Sends `request`, then hands each piece of the answer's body (with the
    /// answer's head) to `receive` as it arrives, until the answer ends or `receive` returns
    /// false. `timeout` (nil: none) bounds the whole exchange.
    @discardableResult
    func stream(_ request: HTTPExchangeRequest, timeout: Duration?,
                receive: (HTTPAnswerHead, ByteBuffer) async throws(HTTPExchangeError) -> Bool) async throws(HTTPExchangeError) -> HTTPAnswerHead {
        let connectLimit = timeout.map { min($0, connectTimeout) } ?? connectTimeout
        let deadline = timeout.map { NIODeadline.now() + TimeAmount($0) }
        let connection: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(TimeAmount(connectLimit))
                .connect(unixDomainSocketPath: socketPath) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw .connect(error)
        }
        // The deadline closes the connection: whatever waits on it ends.
        let expired = ExpiryFlag()
        let expiry = deadline.map { deadline in
            connection.channel.eventLoop.scheduleTask(deadline: deadline) { [channel = connection.channel] in
                expired.value.withLock { $0 = true }
                channel.close(promise: nil)
            }
        }
        defer { expiry?.cancel() }
        let outcome: Result<HTTPAnswerHead, HTTPExchangeError>
        do {
            outcome = try await connection.executeThenClose { inbound, outbound in
                let written = await Self.write(request, to: outbound)
                return await Self.read(inbound, writeError: written, receive: receive)
            }
        } catch {
            // Closing failed after the exchange: the connection is gone either way.
            outcome = .failure(.transport(error))
        }
        if case .failure = outcome {
            if expired.value.withLock({ $0 }) { throw .timedOut }
            if Task.isCancelled { throw .cancelled }
        }
        return try outcome.get()
    }

    /// Writes the request; the error, if writing failed. An answer may still
    /// have come (a server may answer early and close), so it is read anyway.
    private static func write(_ request: HTTPExchangeRequest,
                              to outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>) async -> (any Error)? {
        var headers = HTTPHeaders([("Host", "localhost"), ("Connection", "close")])
        if let contentType = request.contentType { headers.add(name: "Content-Type", value: contentType) }
        // Without a length, NIO would send a PUT's (empty) body chunked.
        if request.body != nil || request.method != .GET {
            headers.add(name: "Content-Length", value: String(request.body?.count ?? 0))
        }
        do {
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path, headers: headers)))
            if let body = request.body, !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            try await outbound.write(.end(nil))
            return nil
        } catch {
            return error
        }
    }

    private static func read(_ inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>, writeError: (any Error)?,
                             receive: (HTTPAnswerHead, ByteBuffer) async throws(HTTPExchangeError) -> Bool) async -> Result<HTTPAnswerHead, HTTPExchangeError> {
        var head: HTTPAnswerHead?
        do {
            for try await part in inbound {
                switch part {
                case .head(let response):
                    // An interim answer (100 Continue) is followed by the real one.
                    guard response.status.code >= 200 else { continue }
                    var headers: [String: String] = [:]
                    for (name, value) in response.headers { headers[name.lowercased()] = value }
                    head = HTTPAnswerHead(status: Int(response.status.code), headers: headers)
                case .body(let chunk):
                    guard let head else { continue }
                    guard try await receive(head, chunk) else { return .success(head) }
                case .end:
                    if let head { return .success(head) }
                }
            }
        } catch let error as HTTPExchangeError {
            return .failure(error)
        } catch HTTPParserError.invalidEOFState where head != nil {
            return .failure(.brokeOff)
        } catch {
            if let writeError, head == nil { return .failure(Self.failure(writing: writeError)) }
            return .failure(.transport(error))
        }
        if head != nil { return .failure(.brokeOff) }
        if let writeError { return .failure(Self.failure(writing: writeError)) }
        return .failure(.hungUp)
    }

    /// A write that failed because the server had closed the connection
    /// (not a socket error) is a server that hung up.
    private static func failure(writing error: any Error) -> HTTPExchangeError {
        error is IOError ? .transport(error) : .hungUp
    }
}

/// Set on the event loop when the deadline closed the connection.
private final class ExpiryFlag: Sendable {
    let value = Mutex(false)
}
