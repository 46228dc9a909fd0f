// TTRPC: a blocking client, one call at a time — what the shim needs to
// forward events to containerd, and what tests use to drive a server.
import Foundation
import SwiftProtobuf
import Synchronization

public final class TTRPCClient: Sendable {
    private let connection: TTRPCConnection
    /// Client stream ids are odd and increase (ttrpc's rule).
    private let nextStream = Mutex<UInt32>(1)

    /// `timeoutSeconds` > 0 bounds the connect and each read and write: a
    /// server that stops answering fails the call instead of holding the caller.
    public init(path: String, timeoutSeconds: Int = 0) throws {
        connection = TTRPCConnection(fd: try UnixSocket.connect(path: path, timeoutSeconds: timeoutSeconds))
    }

    deinit { connection.close() }

    /// Sends one request and waits for its response; a non-OK status is thrown as TTRPCError.
    public func call(service: String, method: String, payload: [UInt8], timeoutNanoseconds: Int64 = 0) throws -> [UInt8] {
        try nextStream.withLock { stream in
            var request = Ttrpc_Request()
            request.service = service
            request.method = method
            request.payload = Data(payload)
            request.timeoutNano = timeoutNanoseconds
            let id = stream
            stream &+= 2
            try connection.writeFrame(TTRPCFrame(streamID: id, type: .request, payload: try request.serializedBytes()))
            while true {
                guard let frame = try connection.readFrame() else {
                    throw TTRPCError(.unavailable, "the ttrpc server closed the connection")
                }
                guard frame.type == .response, frame.streamID == id else { continue }
                let response = try Ttrpc_Response(serializedBytes: frame.payload)
                if response.hasStatus, response.status.code != 0 {
                    let code = TTRPCStatusCode(rawValue: response.status.code) ?? .unknown
                    throw TTRPCError(code, response.status.message)
                }
                return Array(response.payload)
            }
        }
    }

    /// A typed call.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String, _ request: Request, as _: Response.Type = Response.self
    ) throws -> Response {
        try Response(serializedBytes: call(service: service, method: method, payload: try request.serializedBytes()))
    }
}
