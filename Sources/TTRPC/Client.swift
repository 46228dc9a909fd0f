// TTRPC: a blocking client over SwiftNIO — what the shim needs to forward
// events to containerd, and what tests use to drive a server. Calls from
// several threads share the connection: each waits for the response on its
// own stream id.
import Foundation
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

public final class TTRPCClient: Sendable {
    private let channel: Channel
    private let responses: TTRPCResponseRouter
    private let timeout: TimeAmount?
    /// Client stream ids are odd and increase (ttrpc's rule).
    private let nextStream = Mutex<UInt32>(1)

    /// `timeoutSeconds` > 0 bounds the connect and each call: a server that
    /// stops answering fails the call instead of holding the caller.
    public init(path: String, timeoutSeconds: Int = 0) throws {
        let responses = TTRPCResponseRouter()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addTTRPCHandlers(responses) }
            }
        if timeoutSeconds > 0 { bootstrap = bootstrap.connectTimeout(.seconds(Int64(timeoutSeconds))) }
        channel = try bootstrap.connect(unixDomainSocketPath: path).wait()
        self.responses = responses
        timeout = timeoutSeconds > 0 ? .seconds(Int64(timeoutSeconds)) : nil
    }

    deinit { channel.close(promise: nil) }

    /// Sends one request and waits for its response; a non-OK status is thrown as TTRPCError.
    public func call(service: String, method: String, payload: [UInt8], timeoutNanoseconds: Int64 = 0) throws -> [UInt8] {
        var request = Ttrpc_Request()
        request.service = service
        request.method = method
        request.payload = Data(payload)
        request.timeoutNano = timeoutNanoseconds
        let id = nextStream.withLock { stream in
            defer { stream &+= 2 }
            return stream
        }
        let frame = TTRPCFrame(streamID: id, type: .request, payload: try request.serializedBytes())
        let answer = channel.eventLoop.makePromise(of: TTRPCFrame.self)
        responses.expect(id, answer)
        channel.writeAndFlush(frame).whenFailure { [responses] in responses.fail(id, $0) }
        if let timeout {
            let expiry = channel.eventLoop.scheduleTask(in: timeout) { [responses] in
                responses.fail(id, TTRPCError(.deadlineExceeded, "\(service)/\(method): no answer within \(timeout.nanoseconds / 1_000_000_000) s"))
            }
            answer.futureResult.whenComplete { _ in expiry.cancel() }
        }
        let response = try Ttrpc_Response(serializedBytes: answer.futureResult.wait().payload)
        if response.hasStatus, response.status.code != 0 {
            let code = TTRPCStatusCode(rawValue: response.status.code) ?? .unknown
            throw TTRPCError(code, response.status.message)
        }
        return Array(response.payload)
    }

    /// A typed call.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, _ request: Request, as _: Response.Type = Response.self
    ) throws -> Response {
        try Response(serializedBytes: call(service: service, method: method, payload: try request.serializedBytes()))
    }
}

/// The calls waiting for a response, by stream id. Whoever removes a call's
/// promise (its response, a failed write, its deadline, the connection's end)
/// completes it, so each promise completes exactly once.
private final class TTRPCResponseRouter: ChannelInboundHandler, Sendable {
    typealias InboundIn = TTRPCFrame

    private struct Waiting {
        var calls: [UInt32: EventLoopPromise<TTRPCFrame>] = [:]
        var closed = false
    }

    private let waiting = Mutex(Waiting())

    func expect(_ id: UInt32, _ promise: EventLoopPromise<TTRPCFrame>) {
        let open = waiting.withLock { waiting in
            if !waiting.closed { waiting.calls[id] = promise }
            return !waiting.closed
        }
        if !open { promise.fail(Self.serverClosed) }
    }

    func fail(_ id: UInt32, _ error: Error) {
        waiting.withLock { $0.calls.removeValue(forKey: id) }?.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.type == .response else { return }
        waiting.withLock { $0.calls.removeValue(forKey: frame.streamID) }?.succeed(frame)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let calls = waiting.withLock { waiting in
            waiting.closed = true
            defer { waiting.calls = [:] }
            return Array(waiting.calls.values)
        }
        for call in calls { call.fail(Self.serverClosed) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private static let serverClosed = TTRPCError(.unavailable, "the ttrpc server closed the connection")
}
