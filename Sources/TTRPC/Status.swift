// TTRPC: errors as google.rpc.Status — the gRPC status codes ttrpc carries
// in a response (containerd maps them back to its errdefs).

/// gRPC status codes (google.rpc.Code) that a ttrpc handler answers with.
public enum TTRPCStatusCode: Int32, Sendable {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
}

/// An error a handler returns to the caller: a code and one message.
public struct TTRPCError: Error, Equatable, CustomStringConvertible, Sendable {
    public var code: TTRPCStatusCode
    public var message: String

    public init(_ code: TTRPCStatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code) (\(code.rawValue)): \(message)" }
}
