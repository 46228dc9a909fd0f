// TTRPC: the server — a registry of "service/method" handlers, served over
// SwiftNIO on a listening Unix socket: the event loop reads frames, each
// request's handler runs on a thread of its own (a Wait blocks until the
// task exits, which must not hold the event loop or the connection's other
// calls), and the response goes back through the channel on the request's
// stream id.
import Foundation
import NIOCore
import NIOPosix
import SwiftProtobuf
import Synchronization

/// A handler: the request's protobuf bytes in, the response's bytes out.
public typealias TTRPCHandler = @Sendable ([UInt8]) throws -> [UInt8]

/// Handlers by service and method.
public final class TTRPCServiceRegistry: Sendable {
    private let handlers = Mutex<[String: TTRPCHandler]>([:])

    public init() {}

    public func register(service: String, method: String, _ handler: @escaping TTRPCHandler) {
        handlers.withLock { $0[service + "/" + method] = handler }
    }

    /// A typed handler: decodes `Request`, encodes `Response`; a payload that
    /// does not decode is INVALID_ARGUMENT.
    public func register<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, _ handler: @escaping @Sendable (Request) throws -> Response
    ) {
        register(service: service, method: method) { bytes in
            let request: Request
            do {
                request = try Request(serializedBytes: bytes)
            } catch {
                throw TTRPCError(.invalidArgument, "\(service)/\(method): the request does not decode as \(Request.protoMessageName): \(error)")
            }
            return try handler(request).serializedBytes()
        }
    }

    /// The response to one request: the handler's payload, or its error as a status.
    public func respond(to request: Ttrpc_Request) -> Ttrpc_Response {
        var response = Ttrpc_Response()
        guard let handler = handlers.withLock({ $0[request.service + "/" + request.method] }) else {
            response.status = .init(TTRPCError(.unimplemented, "\(request.service)/\(request.method) is not implemented"))
            return response
        }
        do {
            response.payload = Data(try handler(Array(request.payload)))
        } catch let error as TTRPCError {
            response.status = .init(error)
        } catch {
            response.status = .init(TTRPCError(.internal, "\(error)"))
        }
        return response
    }

    /// The response frame for one request frame (a request that does not
    /// decode is answered INVALID_ARGUMENT on its stream).
    public func respond(to frame: TTRPCFrame) -> TTRPCFrame {
        let response: Ttrpc_Response
        do {
            response = respond(to: try Ttrpc_Request(serializedBytes: frame.payload))
        } catch {
            var invalid = Ttrpc_Response()
            invalid.status = .init(TTRPCError(.invalidArgument, "the ttrpc request does not decode: \(error)"))
            response = invalid
        }
        let bytes: [UInt8] = (try? response.serializedBytes()) ?? []
        return TTRPCFrame(streamID: frame.streamID, type: .response, payload: bytes)
    }
}

extension Ttrpc_RPCStatus {
    public init(_ error: TTRPCError) {
        self.init()
        code = error.code.rawValue
        message = error.message
    }
}

/// Serves a registry on a listening socket until `stop()`.
public final class TTRPCServer: Sendable {
    public let registry: TTRPCServiceRegistry
    private let listener: Int32
    private let serverChannel = Mutex<Channel?>(nil)
    private let connections = Mutex<[ObjectIdentifier: Channel]>([:])
    /// Requests whose response has not been written yet.
    private let inFlight = Mutex(0)
    /// Called when a connection has closed.
    private let onDisconnect: (@Sendable () -> Void)?

    /// `listener` is a bound, listening Unix socket; the server owns it from `start()` on.
    public init(listener: Int32, registry: TTRPCServiceRegistry, onDisconnect: (@Sendable () -> Void)? = nil) {
        self.listener = listener
        self.registry = registry
        self.onDisconnect = onDisconnect
    }

    /// Starts accepting connections on NIO's event loops.
    public func start() throws {
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addTTRPCHandlers(TTRPCServerConnectionHandler(server: self))
                }
            }
            .withBoundSocket(listener)
            .wait()
        serverChannel.withLock { $0 = channel }
    }

    /// Waits (at most `limit` seconds) until every request received has
    /// been answered: a shim told to shut down while another call is still
    /// running (a Kill waiting for the VM to stop) answers that call first.
    public func waitUntilAnswered(limit: Double) {
        let deadline = Date().addingTimeInterval(limit)
        while inFlight.withLock({ $0 }) > 0, Date() < deadline { usleep(10_000) }
    }

    /// Closes the listener and every connection.
    public func stop() {
        let listening = serverChannel.withLock { channel in defer { channel = nil }; return channel }
        try? listening?.close().wait()
        for connection in connections.withLock({ Array($0.values) }) { try? connection.close().wait() }
    }

    fileprivate func opened(_ channel: Channel) {
        connections.withLock { $0[ObjectIdentifier(channel)] = channel }
    }

    fileprivate func closed(_ channel: Channel) {
        connections.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) }
        onDisconnect?()
    }

    /// Runs the request's handler off the event loop and writes its response back.
    fileprivate func dispatch(_ frame: TTRPCFrame, on channel: Channel) {
        inFlight.withLock { $0 += 1 }
        Thread.detachNewThread { [self] in
            channel.writeAndFlush(registry.respond(to: frame)).whenComplete { [self] _ in
                inFlight.withLock { $0 -= 1 }
            }
        }
    }
}

/// One connection's frames: requests are dispatched; any frame error closes
/// the connection.
private final class TTRPCServerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = TTRPCFrame

    private let server: TTRPCServer

    init(server: TTRPCServer) { self.server = server }

    func channelActive(context: ChannelHandlerContext) {
        server.opened(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.closed(context.channel)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.type == .request else { return }
        server.dispatch(frame, on: context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
