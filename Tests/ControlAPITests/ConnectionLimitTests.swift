// ControlAPITests: what never reaches a route (CONNECT, a method HTTP does
// not define, a request that does not parse) answered with the API's JSON
// error and a Content-Length; and clients that try to hold the server (a
// flood of idle connections, slow-loris heads, more connections than the
// limit) without keeping the operator from it.
@testable import ControlAPI
import Foundation
import NIOCore
import Testing

/// One answer read off a raw connection.
struct RawAnswer {
    var status: Int
    var headers: [String: String]
    var body: String

    /// The API's error body, decoded.
    func errorBody() throws -> ErrorBody { try ControlJSON.decoder().decode(ErrorBody.self, from: Data(body.utf8)) }
}

extension RawConnection {
    /// Starts `GET /events` on this connection and waits for its first line:
    /// a request the server is answering for as long as the stream lasts.
    func startEventStream(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        await send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try await read(until: ": deflect events", within: .seconds(5)).hasPrefix("HTTP/1.1 200"), sourceLocation: sourceLocation)
    }

    /// The first complete answer: head, then as many body bytes as its
    /// Content-Length says (nil when no complete answer came within `limit`).
    func readAnswer(within limit: Duration) async throws -> RawAnswer? {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            let text = try await read(until: "\r\n\r\n", within: deadline - ContinuousClock.now)
            if let answer = RawAnswer(parsing: text) { return answer }
            if isClosed { return RawAnswer(parsing: text) }
            try await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

extension RawAnswer {
    /// Parses `text` when it holds a head and the whole body its length declares.
    init?(parsing text: String) {
        guard let end = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<end.lowerBound].components(separatedBy: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.1 "),
              let status = Int(statusLine.dropFirst(9).prefix(3)) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Array(text[end.upperBound...].utf8)
        guard let length = headers["content-length"].flatMap(Int.init), body.count >= length else { return nil }
        self.init(status: status, headers: headers, body: String(decoding: body.prefix(length), as: UTF8.self))
    }
}

@Suite("Control API: requests no route answers", .serialized)
struct UnroutedRequestTests {
    /// Sends `request` on a fresh connection; the answer must be the API's
    /// JSON error with `status` and a Content-Length that matches the body.
    private func expectJSONError(_ request: String, status: Int, socket: String,
                                 sourceLocation: SourceLocation = #_sourceLocation) async throws -> RawAnswer? {
        let client = try await RawConnection(path: socket)
        defer { Task { await client.close() } }
        await client.send(request)
        guard let answer = try await client.readAnswer(within: .seconds(5)) else {
            Issue.record("no complete answer (with Content-Length) to \(request.debugDescription)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(answer.status == status, "\(request.debugDescription): \(answer)", sourceLocation: sourceLocation)
        #expect(answer.headers["content-type"] == "application/json", "\(answer.headers)", sourceLocation: sourceLocation)
        let body = try answer.errorBody()
        #expect(body.status == status, sourceLocation: sourceLocation)
        #expect(!body.error.isEmpty && !body.error.contains("\n"), sourceLocation: sourceLocation)
        return answer
    }

    @Test func connectIsAJSON501WithItsLength() async throws {
        try await withServer { _, socket in
            for request in ["CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                            "CONNECT /vm HTTP/1.1\r\nHost: x\r\n\r\n",
                            "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"] {
                let answer = try await expectJSONError(request, status: 501, socket: socket)
                #expect(answer?.headers["connection"] == "close")
                #expect(try answer?.errorBody().error.contains("CONNECT") == true)
            }
            #expect(try await request(socket, .GET, "/vm").status == 200)
        }
    }

    @Test func aMethodHTTPDoesNotDefineIsAJSON501() async throws {
        try await withServer { _, socket in
            for method in ["FOO", "BREW", "GETT", "get"] {
                let answer = try await expectJSONError("\(method) /vm HTTP/1.1\r\nHost: x\r\n\r\n", status: 501, socket: socket)
                #expect(try answer?.errorBody().error == "method \(method) is not implemented by this API (it answers GET and PUT)")
                #expect(answer?.headers["connection"] == "close")
            }
            #expect(try await request(socket, .GET, "/vm").status == 200)
        }
    }

    @Test func methodsHTTPKnowsAreRoutedToJSON404Or405() async throws {
        try await withServer { _, socket in
            let cases: [(String, Int, String?)] = [
                ("OPTIONS /vm", 405, "GET"), ("OPTIONS /policy", 405, "PUT"), ("OPTIONS *", 404, nil),
                ("TRACE /vm", 405, "GET"), ("PROPFIND /vm", 405, "GET"), ("DELETE /nope", 404, nil),
                ("GET /nope", 404, nil), ("PATCH /", 404, nil),
            ]
            for (line, status, allow) in cases {
                let answer = try await expectJSONError("\(line) HTTP/1.1\r\nHost: x\r\n\r\n", status: status, socket: socket)
                if let allow { #expect(answer?.headers["allow"] == allow, "\(line)") }
            }
        }
    }

    @Test func requestsThatDoNotParseAreAJSON400() async throws {
        try await withServer { _, socket in
            for request in ["this is not http\r\n\r\n",
                            "GET /vm HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
                            "GET /vm HTTP/7.0\r\nHost: x\r\n\r\n",
                            "GET /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"] {
                let answer = try await expectJSONError(request, status: 400, socket: socket)
                #expect(answer?.headers["connection"] == "close")
            }
            #expect(try await request(socket, .GET, "/vm").status == 200)
        }
    }
}

@Suite("Control API: connection floods and slow clients", .serialized)
struct ConnectionFloodTests {
    /// 500 connections that send nothing and 20 that send a request head a
    /// byte every 100 ms, then an operator's `GET /vm`: answered at once,
    /// with the default limits (64 connections, 5 s for a head).
    @Test func idleAndSlowLorisClientsDoNotKeepTheOperatorOut() async throws {
        try await withServer { server, socket in
            var idle: [RawConnection] = []
            for _ in 0..<500 { idle.append(try await RawConnection(path: socket)) }
            let slow = try await (0..<20).asyncMap { _ in try await RawConnection(path: socket) }
            let trickle = Task {
                let head = Array("GET /vm HTTP/1.1\r\nHost: x\r\nX-Padding: \(String(repeating: "a", count: 200))\r\n\r\n".utf8)
                for byte in head {
                    for connection in slow { await connection.send(ByteBuffer(bytes: [byte])) }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            defer { trickle.cancel() }
            try await Task.sleep(for: .milliseconds(300))
            for attempt in 0..<3 {
                let start = ContinuousClock.now
                let answer = try await request(socket, .GET, "/vm")
                let elapsed = ContinuousClock.now - start
                #expect(answer.status == 200)
                #expect(elapsed < .seconds(2), "GET /vm \(attempt) took \(elapsed) under the flood")
            }
            #expect(server.openConnections <= server.limits.maximumConnections)
            // The flood was shed as it came: most of it is closed already.
            let closed = idle.filter(\.isClosed).count
            #expect(closed >= 500 - server.limits.maximumConnections, "\(closed) of 500 idle connections closed")
            for connection in idle + slow { await connection.close() }
        }
    }

    /// A client that sends nothing, and one whose head trickles in without
    /// ever ending, are closed at the head deadline (not the 30 s idle
    /// timeout), while the trickle still goes on.
    @Test func aHeadThatDoesNotArriveInTimeEndsTheConnection() async throws {
        var limits = ControlServerLimits()
        limits.requestHeadTimeout = .seconds(1)
        try await withServer(limits: limits) { _, socket in
            let start = ContinuousClock.now
            let silent = try await RawConnection(path: socket)
            let trickler = try await RawConnection(path: socket)
            await trickler.send("GET /vm HTTP/1.1\r\n")
            var sent = 0
            while !trickler.isClosed, ContinuousClock.now - start < .seconds(8) {
                await trickler.send("X-\(sent): y\r\n")
                sent += 1
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(trickler.isClosed)
            #expect(ContinuousClock.now - start < .seconds(3), "the trickling client was held \(ContinuousClock.now - start)")
            #expect(try await silent.readToEnd(within: .seconds(2)) == "")
            // A client that asks at once is unaffected.
            #expect(try await request(socket, .GET, "/vm").status == 200)
        }
    }

    /// Past the limit the connection that has waited longest for a request
    /// goes; connections in a request (event streams here) stay; when every
    /// one is in a request, the newest is answered 503 and closed.
    @Test func overTheLimitTheLongestWaitingGoesAndBusyOnesStay() async throws {
        var limits = ControlServerLimits()
        limits.maximumConnections = 3
        try await withServer(limits: limits) { server, socket in
            let events = try await RawConnection(path: socket)
            try await events.startEventStream()
            let oldest = try await RawConnection(path: socket)
            try await Task.sleep(for: .milliseconds(50))
            let younger = try await RawConnection(path: socket)
            #expect(await eventually { server.openConnections == 3 })

            // A fourth: the oldest waiting connection makes room for it.
            let answer = try await request(socket, .GET, "/vm")
            #expect(answer.status == 200)
            #expect(try await oldest.readToEnd(within: .seconds(2)) == "")
            #expect(!younger.isClosed && !events.isClosed)

            // Every connection in a request: the newest is refused.
            try await younger.startEventStream()
            let third = try await RawConnection(path: socket)
            try await third.startEventStream()
            let refused = try await RawConnection(path: socket)
            let shed = try #require(try await refused.readAnswer(within: .seconds(5)))
            #expect(shed.status == 503)
            #expect(try shed.errorBody().error.contains("at most 3 connections"))
            #expect(try await refused.readToEnd(within: .seconds(2)) != nil)
            #expect(!events.isClosed && !younger.isClosed && !third.isClosed)
            for connection in [events, younger, third] { await connection.close() }
        }
    }
}

extension ConnectionFloodTests {
    /// A connection still trickling its request body in is not yet being
    /// answered: over the limit it makes room like an idle one, while the
    /// event stream (a request being answered) stays.
    @Test func aSlowUploadMakesRoomForTheOperator() async throws {
        var limits = ControlServerLimits()
        limits.maximumConnections = 2
        try await withServer(limits: limits) { server, socket in
            let events = try await RawConnection(path: socket)
            try await events.startEventStream()
            let upload = try await RawConnection(path: socket)
            await upload.send("PUT /policy HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n# a")
            #expect(await eventually { server.openConnections == 2 })
            let start = ContinuousClock.now
            #expect(try await request(socket, .GET, "/vm").status == 200)
            #expect(ContinuousClock.now - start < .seconds(2), "the operator waited \(ContinuousClock.now - start)")
            #expect(try await upload.readToEnd(within: .seconds(2)) == "")
            #expect(!events.isClosed)
            await events.close()
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
