// ControlAPI: the client side of the control API (`deflect ctl`): HTTP/1.1
// over the Unix socket (`UnixSocketHTTP`), JSON decoded into the same
// models the server encodes, and errors that say in one line what failed.
import FoundationEssentials
import NIOCore
import NIOHTTP1
import ReadableErrors
#if canImport(Glibc)
import Glibc
#endif

/// Why a control request failed, as `deflect ctl` prints it.
public enum ControlClientError: Error, Equatable, CustomStringConvertible {
    /// Nothing exists at the socket path.
    case noSocket(path: String)
    /// The socket exists but nobody accepts on it (the VM is gone).
    case refused(path: String)
    /// Another failure to reach or talk to the server.
    case connection(path: String, reason: String)
    /// The API answered with an error.
    case api(status: Int, body: ErrorBody)
    /// The answer is not what the API documents.
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .noSocket(let path):
            "no API socket at \(path) (is the VM running with --api-socket \(path)?)"
        case .refused(let path):
            "nothing is serving the API socket \(path) (the VM has stopped)"
        case .connection(let path, let reason):
            "cannot talk to the API socket \(path): \(reason)"
        case .api(_, let body):
            body.error
        case .malformedResponse(let what):
            "the API answered something unexpected: \(what)"
        }
    }
}

/// A client of one VM's control API.
public struct ControlClient: Sendable {
    public let socketPath: String
    /// Time allowed for a whole request (not for `events`, which streams).
    public var timeout: Duration
    /// Time allowed to connect (also for `events`).
    public var connectTimeout: Duration

    public init(socketPath: String, timeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(5)) {
        self.socketPath = socketPath
        self.timeout = timeout
        self.connectTimeout = connectTimeout
    }

    // MARK: Routes

    public func info() async throws(ControlClientError) -> VMInfo {
        try decode(try await send(.GET, "/vm"))
    }

    public func setState(_ state: RequestedState) async throws(ControlClientError) -> VMInfo {
        let body = Data(#"{"state":"\#(state.rawValue)"}"#.utf8)
        return try decode(try await send(.PUT, "/vm/state", body: body, contentType: "application/json"))
    }

    /// `PUT /snapshot`: the VM pauses, the snapshot is written, then the VM
    /// resumes, stays paused or stops as `request.then` says.
    public func snapshot(_ request: SnapshotRequest) async throws(ControlClientError) -> SnapshotReport {
        let body: Data
        do {
            body = try JSONEncoder().encode(request)
        } catch {
            throw .malformedResponse("the snapshot request could not be encoded: \(error)")
        }
        return try decode(try await send(.PUT, "/snapshot", body: body, contentType: "application/json"))
    }

    /// `PUT /migrate`: starts the migration; answers its first progress.
    public func migrate(_ request: MigrationRequest) async throws(ControlClientError) -> MigrationStatus {
        let body: Data
        do {
            body = try ControlJSON.encoder().encode(request)
        } catch {
            throw .malformedResponse("the migration request could not be encoded: \(error)")
        }
        return try decode(try await send(.PUT, "/migrate", body: body, contentType: "application/json"))
    }

    /// `GET /migration`: the outgoing migration's progress.
    public func migration() async throws(ControlClientError) -> MigrationStatus {
        try decode(try await send(.GET, "/migration"))
    }

    public func shutdown() async throws(ControlClientError) -> VMInfo {
        try decode(try await send(.PUT, "/vm/shutdown"))
    }

    public func registers(vcpu: Int) async throws(ControlClientError) -> VCPURegistersReport {
        try decode(try await send(.GET, "/vcpus/\(vcpu)/registers"))
    }

    /// `GET /cpuid` as the server wrote it.
    /// `GET /vm` as the server sent it.
    public func infoJSON() async throws(ControlClientError) -> Data {
        try await send(.GET, "/vm")
    }

    public func cpuidJSON() async throws(ControlClientError) -> Data {
        try await send(.GET, "/cpuid")
    }

    public func stats() async throws(ControlClientError) -> StatsReport {
        try decode(try await statsJSON())
    }

    /// The `GET /stats` answer as the server wrote it (for `--json`).
    public func statsJSON() async throws(ControlClientError) -> Data {
        try await send(.GET, "/stats")
    }

    public func msrs() async throws(ControlClientError) -> MSRTableReport {
        try decode(try await msrsJSON())
    }

    /// The `GET /msrs` answer as the server wrote it.
    public func msrsJSON() async throws(ControlClientError) -> Data {
        try await send(.GET, "/msrs")
    }

    /// The Prometheus text of `GET /metrics`.
    public func metrics() async throws(ControlClientError) -> String {
        String(decoding: try await send(.GET, "/metrics"), as: UTF8.self)
    }

    /// Replaces the MSR policy; a policy the VM refuses comes back as
    /// `.api(422, body)` with the diagnostics in `body`.
    public func replacePolicy(text: String) async throws(ControlClientError) {
        _ = try await send(.PUT, "/policy", body: Data(text.utf8), contentType: "application/toml")
    }

    /// Streams `GET /events`: calls `receive` with each event's JSON line
    /// until the VM stops, the connection ends, or `receive` returns false.
    public func events(_ receive: @Sendable (String) async -> Bool) async throws(ControlClientError) {
        var parser = ServerSentEventParser()
        // An error answer is a short JSON body: collected, then reported.
        var errorBody = Data()
        let head: HTTPAnswerHead
        do {
            head = try await transport.stream(HTTPExchangeRequest(method: .GET, path: "/events"), timeout: nil) { head, chunk in
                guard head.status == 200 else {
                    errorBody.append(contentsOf: chunk.readableBytesView)
                    return errorBody.count < Self.maximumErrorBytes
                }
                for event in parser.feed(chunk.readableBytesView) {
                    guard await receive(event) else { return false }
                }
                return true
            }
        } catch {
            if case .connect = error { throw classify(error) }
            throw .connection(path: socketPath, reason: "the event stream broke: \(error.reason)")
        }
        guard head.status == 200 else { throw errorFrom(status: head.status, body: errorBody) }
    }

    // MARK: Transport

    private var transport: UnixSocketHTTP { UnixSocketHTTP(socketPath: socketPath, connectTimeout: connectTimeout) }

    /// Largest answer accepted (the biggest, `GET /msrs` and `GET /stats`, are far smaller).
    static let maximumAnswerBytes = 64 << 20
    /// Largest error body read from an event stream that was refused.
    static let maximumErrorBytes = 64 << 10

    private func send(_ method: HTTPMethod, _ path: String, body: Data? = nil, contentType: String? = nil)
        async throws(ControlClientError) -> Data {
        let answer: (head: HTTPAnswerHead, body: Data)
        do {
            answer = try await transport.fetch(HTTPExchangeRequest(method: method, path: path, body: body, contentType: contentType),
                                               timeout: timeout, limit: Self.maximumAnswerBytes)
        } catch {
            throw classify(error)
        }
        guard (200..<300).contains(answer.head.status) else { throw errorFrom(status: answer.head.status, body: answer.body) }
        return answer.body
    }

    /// A failure in the words of the socket's state: nothing at the path,
    /// nobody accepting on it, or what went wrong while talking.
    private func classify(_ error: HTTPExchangeError) -> ControlClientError {
        guard case .connect(let cause) = error else { return .connection(path: socketPath, reason: error.reason) }
        var status = stat()
        if lstat(socketPath, &status) != 0, errno == ENOENT { return .noSocket(path: socketPath) }
        if let io = cause as? IOError, io.errnoCode == ECONNREFUSED { return .refused(path: socketPath) }
        return .connection(path: socketPath, reason: error.reason)
    }

    private func errorFrom(status: Int, body: Data) -> ControlClientError {
        if let decoded = try? ControlJSON.decoder().decode(ErrorBody.self, from: body) {
            return .api(status: status, body: decoded)
        }
        return .api(status: status, body: ErrorBody(error: "HTTP status \(status)", status: status, diagnostics: nil))
    }

    private func decode<T: Decodable>(_ data: Data) throws(ControlClientError) -> T {
        do {
            return try ControlJSON.decoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw .malformedResponse("\(T.self) could not be decoded: \(ControlJSON.describe(error))")
        } catch {
            throw .malformedResponse("\(T.self) could not be decoded: \(error)")
        }
    }
}

/// A failure to reach or talk to a socket in a user's words: the errno's
/// text for a socket error, never a type's dump.
enum TransportErrorText {
    static func reason(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return ReadableError.reason(error)
    }
}

/// Splits a `text/event-stream` body into events: the `data:` lines of an
/// event joined by newlines; comment lines (`:`) and other fields ignored.
struct ServerSentEventParser {
    private var pending: [UInt8] = []
    private var data: [String] = []

    mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var events: [String] = []
        for byte in bytes {
            guard byte == UInt8(ascii: "\n") else {
                pending.append(byte)
                continue
            }
            if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
            let line = String(decoding: pending, as: UTF8.self)
            pending.removeAll(keepingCapacity: true)
            if line.isEmpty {
                if !data.isEmpty { events.append(data.joined(separator: "\n")) }
                data.removeAll()
            } else if line.hasPrefix("data:") {
                var value = line.dropFirst(5)
                if value.first == " " { value = value.dropFirst() }
                data.append(String(value))
            }
        }
        return events
    }
}
