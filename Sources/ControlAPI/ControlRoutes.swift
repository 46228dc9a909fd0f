// ControlAPI: the routes of the control API and how each request is answered.
// Routing is a small table (also read by the tests that compare the server
// with docs/api.yaml), so that an unknown path is a JSON 404 and a known path
// with another method a JSON 405 with `Allow`.
import FoundationEssentials
import Glibc
import HTTPTypes
import Hummingbird
import NIOCore
import ReadableErrors

/// One route the server answers.
public struct ControlRoute: Sendable, Hashable {
    public enum Name: Sendable, Hashable {
        case vm, vmState, vmShutdown, registers, cpuid, stats, metrics, msrs, policy, events, snapshot, migrate, migration
    }

    public let method: HTTPRequest.Method
    /// The path as in docs/api.yaml: `{i}` stands for one path segment.
    public let path: String
    public let name: Name

    /// Every route, as docs/api.yaml names them.
    public static let all: [ControlRoute] = [
        .init(method: .get, path: "/vm", name: .vm),
        .init(method: .put, path: "/vm/state", name: .vmState),
        .init(method: .put, path: "/vm/shutdown", name: .vmShutdown),
        .init(method: .get, path: "/vcpus/{i}/registers", name: .registers),
        .init(method: .get, path: "/cpuid", name: .cpuid),
        .init(method: .get, path: "/stats", name: .stats),
        .init(method: .get, path: "/metrics", name: .metrics),
        .init(method: .get, path: "/msrs", name: .msrs),
        .init(method: .put, path: "/policy", name: .policy),
        .init(method: .get, path: "/events", name: .events),
        .init(method: .put, path: "/snapshot", name: .snapshot),
        .init(method: .put, path: "/migrate", name: .migrate),
        .init(method: .get, path: "/migration", name: .migration),
    ]

    /// The path's segments, e.g. ["vcpus", "{i}", "registers"].
    var segments: [Substring] { path.split(separator: "/") }

    /// The value of the `{i}` segment if `segments` match this route's path.
    func match(_ requestSegments: [Substring]) -> (matched: Bool, parameter: Substring?) {
        let template = segments
        guard template.count == requestSegments.count else { return (false, nil) }
        var parameter: Substring?
        for (expected, actual) in zip(template, requestSegments) {
            if expected.hasPrefix("{") {
                parameter = actual
            } else if expected != actual {
                return (false, nil)
            }
        }
        return (true, parameter)
    }
}

/// Limits and intervals of the control API.
public struct ControlServerLimits: Sendable {
    /// Largest JSON request body (`PUT /vm/state`).
    public var maximumJSONBodyBytes: Int = 4 * 1024
    /// Largest policy text (`PUT /policy`).
    public var maximumPolicyBodyBytes: Int = 1 << 20
    /// A new connection whose first request head is not complete after
    /// this long is closed (a client that sends nothing, or its head a byte
    /// at a time).
    public var requestHeadTimeout: Duration = .seconds(5)
    /// A connection with no request in progress is closed after this long
    /// (the next request head must be complete by then).
    public var idleTimeout: Duration = .seconds(30)
    /// A body that goes beyond a route's limit is still read (and thrown
    /// away) up to this many bytes, so that an ordinary client that sent it
    /// reads its 413; past it the connection is closed.
    public var connectionCutoffBytes: Int = 2 << 20
    /// A request body must arrive completely within this time (else 408).
    public var bodyTimeout: Duration = .seconds(10)
    /// Connections held at once. One more closes the connection that has
    /// waited longest without a whole request; when every one has a request
    /// being answered, the newest is answered 503 and closed instead.
    public var maximumConnections: Int = 64
    /// `GET /events` sends an SSE comment after this long without an event,
    /// so that a client that went away is noticed and its subscription freed.
    public var eventKeepAlive: Duration = .seconds(15)

    public init() {}
}

/// Answers requests by calling a `VMControl`.
struct ControlResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let control: any VMControl
    let limits: ControlServerLimits
    let streams: EventStreamRegistry

    func respond(to request: Request, context: BasicRequestContext) async throws -> Response {
        do throws(ControlError) {
            return try await route(request)
        } catch {
            var response = Self.errorResponse(error)
            switch error {
            case .payloadTooLarge:
                // Draining what the client still sends is cheap up to the cutoff;
                // a client that declares more (or streams on) is disconnected.
                let declared = request.headers[.contentLength].flatMap(Int.init)
                if declared.map({ $0 > limits.connectionCutoffBytes }) ?? true {
                    response.headers[.connection] = "close"
                }
            case .requestTimeout:
                // The client is too slow to wait for the rest of its body.
                response.headers[.connection] = "close"
            default:
                break
            }
            return response
        }
    }

    private func route(_ request: Request) async throws(ControlError) -> Response {
        let segments = request.uri.path.split(separator: "/")
        var allowed: [String] = []
        for route in ControlRoute.all {
            let (matched, parameter) = route.match(segments)
            guard matched else { continue }
            guard route.method == request.method else {
                allowed.append(route.method.rawValue)
                continue
            }
            return try await answer(route.name, parameter: parameter, request: request)
        }
        if !allowed.isEmpty {
            throw .methodNotAllowed("\(request.method.rawValue) is not allowed on \(request.uri.path)", allowed: allowed)
        }
        throw .notFound("no route \(request.uri.path)")
    }

    private func answer(_ name: ControlRoute.Name, parameter: Substring?, request: Request) async throws(ControlError) -> Response {
        switch name {
        case .vm:
            return Self.json(await control.info())
        case .vmState:
            try Self.requireContentType(request, accepted: ["application/json"])
            let body = try await readBody(request, limit: limits.maximumJSONBodyBytes)
            let change: StateChangeRequest = try Self.decode(body)
            try await control.setState(change.state)
            return Self.json(await control.info())
        case .vmShutdown:
            try await control.shutdown()
            return Self.json(await control.info(), status: .accepted)
        case .registers:
            let text = parameter.map(String.init) ?? ""
            guard let index = Int(text) else { throw .badRequest("vCPU index \(text) is not a number") }
            let count = await control.info().configuration.vcpus
            guard index >= 0, index < count else {
                throw .notFound("no vCPU \(index): the VM has \(count) vCPU\(count == 1 ? "" : "s")")
            }
            return Self.json(try await control.registers(vcpu: index))
        case .cpuid:
            return Self.json(await control.cpuid())
        case .stats:
            return Self.json(await control.stats())
        case .metrics:
            let text = PrometheusExposition.text(info: await control.info(), stats: await control.stats())
            var response = Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: text)))
            response.headers[.contentType] = PrometheusExposition.contentType
            return response
        case .msrs:
            return Self.json(await control.msrs())
        case .policy:
            try Self.requireContentType(request, accepted: ["text/plain", "application/toml"])
            let body = try await readBody(request, limit: limits.maximumPolicyBodyBytes)
            guard let text = String(validating: body.readableBytesView, as: UTF8.self) else {
                throw .badRequest("the policy text is not valid UTF-8")
            }
            try await control.replacePolicy(text: text)
            return Response(status: .noContent)
        case .events:
            return eventStream()
        case .snapshot:
            try Self.requireContentType(request, accepted: ["application/json"])
            let body = try await readBody(request, limit: limits.maximumJSONBodyBytes)
            let snapshot: SnapshotRequest = try Self.decode(body)
            return Self.json(try await control.snapshot(snapshot))
        case .migrate:
            try Self.requireContentType(request, accepted: ["application/json"])
            let body = try await readBody(request, limit: limits.maximumJSONBodyBytes)
            let migration: MigrationRequest = try Self.decode(body)
            return Self.json(try await control.migrate(migration), status: .accepted)
        case .migration:
            return Self.json(await control.migration())
        }
    }

    // MARK: GET /events

    /// Server-sent events: one `data:` line per event JSON line, a comment
    /// line when the subscription starts and as a keep-alive.
    private func eventStream() -> Response {
        let subscription = control.events()
        let keepAlive = limits.eventKeepAlive
        let streams = self.streams
        let body = ResponseBody { writer in
            let registration = streams.register(subscription)
            defer { streams.remove(registration) }
            try await writer.write(ByteBuffer(string: ": deflect events\n\n"))
            streaming: while true {
                switch await subscription.next(idleAfter: keepAlive) {
                case .line(let line):
                    try await writer.write(ByteBuffer(string: Self.serverSentEvent(line)))
                case .idle:
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                case .finished:
                    break streaming
                }
            }
            try await writer.finish(nil)
        }
        var response = Response(status: .ok, body: body)
        response.headers[.contentType] = "text/event-stream"
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// One SSE event; a line break inside `line` becomes another `data:` line.
    static func serverSentEvent(_ line: String) -> String {
        line.split(separator: "\n", omittingEmptySubsequences: false).map { "data: \($0)\n" }.joined() + "\n"
    }

    // MARK: Bodies

    /// The request body, at most `limit` bytes, within the body timeout.
    private func readBody(_ request: Request, limit: Int) async throws(ControlError) -> ByteBuffer {
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > limit {
            throw .payloadTooLarge("the body has \(declared) bytes; this route accepts at most \(limit)")
        }
        let body = request.body
        let timeout = limits.bodyTimeout
        let outcome: Result<ByteBuffer, ControlError> = await withTaskGroup(of: Result<ByteBuffer, ControlError>?.self) { group in
            group.addTask {
                var collected = ByteBuffer()
                do {
                    for try await chunk in body {
                        guard collected.readableBytes + chunk.readableBytes <= limit else {
                            return .failure(.payloadTooLarge("the body is larger than the \(limit) bytes this route accepts"))
                        }
                        collected.writeImmutableBuffer(chunk)
                    }
                } catch {
                    return .failure(.badRequest("the body could not be read: \(error)"))
                }
                return .success(collected)
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : .failure(.requestTimeout("the body did not arrive within \(timeout)"))
            }
            var first: Result<ByteBuffer, ControlError>?
            while first == nil, let next = await group.next() { first = next }
            group.cancelAll()
            return first ?? .failure(.requestTimeout("the body did not arrive"))
        }
        return try outcome.get()
    }

    private static func requireContentType(_ request: Request, accepted: [String]) throws(ControlError) {
        guard let value = request.headers[.contentType] else { return }
        let type = value.split(separator: ";").first.map { ReadableError.trimmed($0).lowercased() } ?? ""
        guard accepted.contains(type) else {
            throw .unsupportedMediaType("content type \(type) is not accepted here; use \(accepted.joined(separator: " or "))")
        }
    }

    private static func decode<T: Decodable>(_ body: ByteBuffer) throws(ControlError) -> T {
        do {
            return try ControlJSON.decoder().decode(T.self, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            throw .badRequest("malformed JSON: \(ControlJSON.describe(error))")
        } catch {
            throw .badRequest("malformed JSON: \(error)")
        }
    }

    // MARK: Responses

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data: Data
        do {
            data = try ControlJSON.encoder().encode(value)
        } catch {
            return errorResponse(.internalError("the answer could not be encoded: \(error)"))
        }
        var buffer = ByteBuffer(bytes: data)
        buffer.writeString("\n")
        var response = Response(status: status, body: .init(byteBuffer: buffer))
        response.headers[.contentType] = "application/json"
        return response
    }

    static func errorResponse(_ error: ControlError) -> Response {
        var response = json(error.body, status: HTTPResponse.Status(code: error.status))
        if case .methodNotAllowed(_, let allowed) = error {
            response.headers[.allow] = allowed.joined(separator: ", ")
        }
        return response
    }
}

/// JSON as the control API writes and reads it: snake_case keys, sorted.
public enum ControlJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    /// A one-line description of a decoding error.
    public static func describe(_ error: DecodingError) -> String {
        func at(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "" : " at \(path.map(\.stringValue).joined(separator: "."))"
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing key \(key.stringValue)\(at(context.codingPath))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "wrong type\(at(context.codingPath))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "invalid value\(at(context.codingPath))"
        @unknown default:
            return "\(error)"
        }
    }
}
