// TTRPC: the server — a registry of "service/method" handlers and a blocking
// accept loop: one thread per connection reads frames, one thread per
// request runs its handler (a Wait may block until the task exits), and the
// response goes back on the request's stream id.
import Foundation
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
    private let connections = Mutex<[Int32: TTRPCConnection]>([:])
    /// Requests whose response has not been written yet.
    private let inFlight = Mutex(0)
    /// Called (on a connection's thread) when a connection has closed.
    private let onDisconnect: (@Sendable () -> Void)?

    public init(listener: Int32, registry: TTRPCServiceRegistry, onDisconnect: (@Sendable () -> Void)? = nil) {
        self.listener = listener
        self.registry = registry
        self.onDisconnect = onDisconnect
    }

    /// Accepts connections on a thread of its own.
    public func start() {
        Thread.detachNewThread { [self] in
            while let fd = try? UnixSocket.accept(listener) {
                let connection = TTRPCConnection(fd: fd)
                connections.withLock { $0[fd] = connection }
                Thread.detachNewThread { [self] in serve(connection) }
            }
        }
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
        _ = Foundation.close(listener)
        for connection in connections.withLock({ Array($0.values) }) { connection.shutdownBoth() }
    }

    private func serve(_ connection: TTRPCConnection) {
        // Any frame error ends the connection: after a bad header the stream
        // cannot be resynchronised.
        while let frame = try? connection.readFrame() {
            guard frame.type == .request else { continue }
            inFlight.withLock { $0 += 1 }
            Thread.detachNewThread { [self] in
                try? connection.writeFrame(registry.respond(to: frame))
                inFlight.withLock { $0 -= 1 }
            }
        }
        connections.withLock { _ = $0.removeValue(forKey: connection.fd) }
        connection.close()
        onDisconnect?()
    }
}
