// ControlAPI: a per-connection channel handler that cuts off oversized
// requests and honours `Connection: close` on the server's own answers, so a
// client sending 1 GiB is disconnected at the limit instead of being read
// (and drained) to the end.
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Sits between the HTTP codec and the server's request handling.
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

    private let maximumBodyBytes: Int
    private var bodyBytes = 0
    private var discardingBody = false
    private var responseComplete = false
    private var closeAfterResponse = false

    init(maximumBodyBytes: Int) {
        self.maximumBodyBytes = maximumBodyBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
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
            context.fireChannelRead(data)
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
            } else {
                context.write(data, promise: promise)
            }
        }
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}
