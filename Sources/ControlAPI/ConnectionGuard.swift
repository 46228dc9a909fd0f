// ControlAPI: a per-connection channel handler that keeps one client from
// holding the server: it admits the connection through the server's
// `ConnectionTable`, closes a connection whose request head does not arrive
// in time (however slowly its bytes trickle in), cuts off oversized
// requests, answers what never reaches a route (CONNECT, a method or request
// HTTP does not parse) with the API's JSON error, and honours
// `Connection: close` on the server's own answers.
import FoundationEssentials
import Glibc
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Sits between the HTTP codec and the server's request handling.
///
/// Opening: the connection is admitted by the `ConnectionTable` (or answered
/// 503 and closed) and must complete its request head within
/// `Deadlines.firstRequestHead`, later heads within `nextRequestHead` of the
/// previous answer's end.
///
/// Inbound: counts the body bytes of the current request; past
/// `maximumBodyBytes` (at least every route's own limit) it passes one more
/// chunk (so a route still reading sees that the body exceeds its limit and
/// answers 413), ends the body there and drops everything after it. Outbound: once the answer to such a request,
/// or any answer marked `Connection: close`, is written, the connection closes.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The limits a connection is held to.
    struct Deadlines {
        /// From the connection's start to its first complete request head.
        var firstRequestHead: TimeAmount
        /// From an answer's end to the next complete request head.
        var nextRequestHead: TimeAmount
    }

    private let maximumBodyBytes: Int
    private let table: ConnectionTable
    private let deadlines: Deadlines
    private var bodyBytes = 0
    private var discardingBody = false
    private var responseComplete = false
    private var closeAfterResponse = false
    /// Request heads received and not yet answered to the end.
    private var requestsInFlight = 0
    private var admission: Int?
    /// Set once this handler answered and is closing: nothing more is read.
    private var answeredHere = false
    private var headDeadline: Scheduled<Void>?
    private let socketWriter = SocketWriter()

    init(maximumBodyBytes: Int, table: ConnectionTable, deadlines: Deadlines) {
        self.maximumBodyBytes = maximumBodyBytes
        self.table = table
        self.deadlines = deadlines
    }

    // MARK: Admission and deadlines

    func handlerAdded(context: ChannelHandlerContext) {
        // The writer sits next to the socket, below the HTTP encoder, which
        // frames every answer to a CONNECT as bodyless and would drop the JSON.
        do {
            try context.pipeline.syncOperations.addHandler(socketWriter, position: .first)
        } catch {
            context.close(promise: nil)
            return
        }
        if context.channel.isActive { opened(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        headDeadline?.cancel()
        headDeadline = nil
        if let admission { table.remove(admission) }
        admission = nil
        context.fireChannelInactive()
    }

    private func opened(context: ChannelHandlerContext) {
        guard admission == nil, !answeredHere, context.channel.isActive else { return }
        switch table.admit(context.channel) {
        case .shed:
            answerAndClose(context: context, .unavailable(
                "the API serves at most \(table.maximum) connections at once and every one is in a request; try again"))
        case .admitted(let id, let evicted):
            admission = id
            evicted?.close(promise: nil)
            awaitRequestHead(context: context, within: deadlines.firstRequestHead)
        }
    }

    /// Closes the connection unless a complete request head arrives in time.
    private func awaitRequestHead(context: ChannelHandlerContext, within limit: TimeAmount) {
        headDeadline?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        headDeadline = context.eventLoop.scheduleTask(in: limit) { loopBound.value.close(promise: nil) }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answeredHere else { return }
        switch unwrapInboundIn(data) {
        case .head(let request):
            if request.method == .connect {
                // Not a route: this API tunnels nothing. The rest of the
                // stream is not HTTP any more, so the connection ends here.
                answerAndClose(context: context, .notImplemented("CONNECT is not implemented: this API tunnels nothing"))
                return
            }
            requestsInFlight += 1
            if requestsInFlight == 1 {
                headDeadline?.cancel()
                headDeadline = nil
            }
            bodyBytes = 0
            discardingBody = false
            responseComplete = false
            context.fireChannelRead(data)
        case .body(let chunk):
            guard !discardingBody else { return }
            bodyBytes += chunk.readableBytes
            context.fireChannelRead(data)
            if bodyBytes > maximumBodyBytes {
                discardingBody = true
                closeAfterResponse = true
                context.fireChannelRead(wrapInboundOut(.end(nil)))
                if responseComplete { context.close(promise: nil) }
            }
        case .end:
            if discardingBody { return }
            // Only a request received whole is in the server's hands: one
            // still uploading its body (slowly, maybe) can be made room from.
            if requestsInFlight > 0, let admission { table.requestStarted(admission) }
            context.fireChannelRead(data)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A request HTTP cannot parse, between requests: answered here in the
        // API's words. In the middle of an answer the server's own handling
        // ends the connection.
        if answeredHere { return }
        guard requestsInFlight == 0, let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if case .invalidMethod = parseError, let method = socketWriter.requestLineMethod() {
            answerAndClose(context: context, .notImplemented("method \(method) is not implemented by this API (it answers GET and PUT)"))
        } else {
            answerAndClose(context: context, .badRequest("malformed HTTP request (\(parseError))"))
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            if response.headerFields[.connection]?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            responseComplete = true
            if closeAfterResponse {
                context.writeAndFlush(data, promise: promise)
                context.close(promise: nil)
                return
            }
            context.write(data, promise: promise)
            if requestsInFlight > 0 {
                requestsInFlight -= 1
                if requestsInFlight == 0 {
                    if let admission { table.requestsFinished(admission) }
                    awaitRequestHead(context: context, within: deadlines.nextRequestHead)
                }
            }
        }
    }

    /// Writes `error` as a complete HTTP/1.1 answer straight to the socket,
    /// then closes the connection.
    private func answerAndClose(context: ChannelHandlerContext, _ error: ControlError) {
        answeredHere = true
        headDeadline?.cancel()
        headDeadline = nil
        socketWriter.writeAndClose(ConnectionGuard.rawAnswer(error))
    }

    /// `error` as the bytes of a complete answer: status line, JSON type,
    /// length and `Connection: close`, then the API's error body.
    static func rawAnswer(_ error: ControlError) -> ByteBuffer {
        var body = (try? ControlJSON.encoder().encode(error.body)) ?? Data(#"{"error":"internal error","status":500}"#.utf8)
        body.append(UInt8(ascii: "\n"))
        let status = HTTPResponse.Status(code: error.status)
        var buffer = ByteBuffer()
        buffer.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\n")
        buffer.writeString("Server: deflect\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n")
        buffer.writeBytes(body)
        return buffer
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}

/// Placed first in the pipeline (next to the socket) so that an answer can
/// be written without passing the HTTP encoder.
/// It also keeps the start of the bytes being decoded, so that a request
/// the parser refuses for its method can be told from one that is not HTTP.
final class SocketWriter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    /// The first bytes of the chunk being passed to the HTTP decoder.
    private var chunkStart: [UInt8] = []

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let chunk = unwrapInboundIn(data)
        chunkStart = chunk.getBytes(at: chunk.readerIndex, length: min(chunk.readableBytes, 64)) ?? []
        context.fireChannelRead(data)
        chunkStart = []
    }

    /// The method of the request line the current chunk starts with, when it
    /// has the shape of one ("WORD /target HTTP/1.1"): a method HTTP's parser
    /// does not know. Nil for bytes that are not a request line at all.
    func requestLineMethod() -> String? {
        let words = chunkStart.split(separator: UInt8(ascii: " "), maxSplits: 2, omittingEmptySubsequences: false)
        guard words.count == 3, (1...16).contains(words[0].count),
              words[0].allSatisfy({ (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }),
              words[1].first == UInt8(ascii: "/") || words[1].first == UInt8(ascii: "*"),
              words[2].starts(with: Array("HTTP/".utf8)) else { return nil }
        return String(decoding: words[0], as: UTF8.self)
    }

    func writeAndClose(_ bytes: ByteBuffer) {
        guard let context else { return }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(NIOAny(bytes)).whenComplete { _ in loopBound.value.close(promise: nil) }
    }
}

@available(*, unavailable)
extension SocketWriter: Sendable {}
