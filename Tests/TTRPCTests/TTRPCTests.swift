// ttrpc framing against golden bytes, refused frames, and a server and
// client talking over a real Unix socket.
import Foundation
import Testing
@testable import TTRPC

@Suite struct TTRPCFrameTests {
    @Test func encodesTheTenByteHeaderBigEndian() throws {
        let frame = TTRPCFrame(streamID: 0x0102_0304, type: .request, flags: 0, payload: [0xAA, 0xBB, 0xCC])
        #expect(try frame.encoded() == [0, 0, 0, 3, 1, 2, 3, 4, 1, 0, 0xAA, 0xBB, 0xCC])
        let response = TTRPCFrame(streamID: 1, type: .response, flags: 0x5, payload: [])
        #expect(try response.encoded() == [0, 0, 0, 0, 0, 0, 0, 1, 2, 5])
    }

    @Test func decodesWhatItEncodes() throws {
        let frame = TTRPCFrame(streamID: 7, type: .response, flags: 1, payload: Array(repeating: 9, count: 300))
        #expect(try TTRPCFrame.decode(frame.encoded()) == frame)
    }

    @Test func aGoClientsRequestDecodes() throws {
        // Request{service "s", method "m", payload 0x01}, stream 3, as ttrpc's Go client writes it.
        let bytes: [UInt8] = [0, 0, 0, 9, 0, 0, 0, 3, 1, 0, 0x0A, 1, 0x73, 0x12, 1, 0x6D, 0x1A, 1, 0x01]
        let frame = try TTRPCFrame.decode(bytes)
        #expect(frame.streamID == 3 && frame.type == .request)
        let request = try Ttrpc_Request(serializedBytes: frame.payload)
        #expect(request.service == "s" && request.method == "m" && request.payload == Data([1]))
    }

    @Test func refusesOversizeFramesBeforeReadingThem() {
        let header: [UInt8] = [0, 0x40, 0, 1, 0, 0, 0, 1, 1, 0]   // 4 MiB + 1
        #expect(throws: TTRPCFrameError.oversize(length: 4 << 20 + 1)) { try TTRPCFrame.decodeHeader(header) }
        let big = TTRPCFrame(streamID: 1, type: .request, payload: Array(repeating: 0, count: 4 << 20 + 1))
        #expect(throws: TTRPCFrameError.oversize(length: 4 << 20 + 1)) { try big.encoded() }
        // Exactly 4 MiB is allowed.
        #expect(throws: Never.self) { try TTRPCFrame.decodeHeader([0, 0x40, 0, 0, 0, 0, 0, 1, 1, 0]) }
    }

    @Test func refusesTruncatedFramesAndUnknownTypes() {
        #expect(throws: TTRPCFrameError.truncated(have: 9, need: 10)) { try TTRPCFrame.decode([0, 0, 0, 0, 0, 0, 0, 1, 1]) }
        #expect(throws: TTRPCFrameError.truncated(have: 12, need: 13)) { try TTRPCFrame.decode([0, 0, 0, 3, 0, 0, 0, 1, 1, 0, 1, 2]) }
        #expect(throws: TTRPCFrameError.unknownMessageType(3)) { try TTRPCFrame.decode([0, 0, 0, 0, 0, 0, 0, 1, 3, 0]) }
    }
}

@Suite struct TTRPCServerTests {
    /// A server of `registry` on a fresh socket; the caller stops it and removes the path.
    private func startedServer(_ registry: TTRPCServiceRegistry) throws -> (TTRPCServer, String) {
        let path = "/tmp/ttrpc-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let server = TTRPCServer(listener: try UnixSocket.listen(path: path), registry: registry)
        try server.start()
        return (server, path)
    }

    @Test func dispatchesByServiceAndMethodAndReportsStatuses() throws {
        let registry = TTRPCServiceRegistry()
        registry.register(service: "test.Echo", method: "Echo") { (request: Ttrpc_KeyValue) in
            var reply = Ttrpc_KeyValue()
            reply.key = request.value
            reply.value = request.key
            return reply
        }
        registry.register(service: "test.Echo", method: "Missing") { (_: Ttrpc_KeyValue) -> Ttrpc_KeyValue in
            throw TTRPCError(.notFound, "no such thing")
        }
        let (server, path) = try startedServer(registry)
        defer { server.stop(); unlink(path) }

        let client = try TTRPCClient(path: path)
        var request = Ttrpc_KeyValue()
        request.key = "k"
        request.value = "v"
        let reply = try client.call(service: "test.Echo", method: "Echo", request, as: Ttrpc_KeyValue.self)
        #expect(reply.key == "v" && reply.value == "k")
        #expect(throws: TTRPCError(.notFound, "no such thing")) {
            try client.call(service: "test.Echo", method: "Missing", request, as: Ttrpc_KeyValue.self)
        }
        #expect(throws: TTRPCError(.unimplemented, "test.Other/Call is not implemented")) {
            try client.call(service: "test.Other", method: "Call", request, as: Ttrpc_KeyValue.self)
        }
        let invalid = #expect(throws: TTRPCError.self) {
            try client.call(service: "test.Echo", method: "Echo", payload: [0xFF, 0xFF])
        }
        #expect(invalid?.code == .invalidArgument)
    }

    @Test func aSlowHandlerDoesNotBlockOthersOnTheConnection() throws {
        let registry = TTRPCServiceRegistry()
        registry.register(service: "t", method: "Slow") { _ in Thread.sleep(forTimeInterval: 2); return [] }
        registry.register(service: "t", method: "Fast") { _ in [42] }
        let (server, path) = try startedServer(registry)
        defer { server.stop(); unlink(path) }
        // One connection: the slow call first, then the fast one; the fast answer must come first.
        let client = try TTRPCClient(path: path)
        let slowDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? client.call(service: "t", method: "Slow", payload: [])
            slowDone.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        let started = Date()
        #expect(try client.call(service: "t", method: "Fast", payload: []) == [42])
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(slowDone.wait(timeout: .now()) == .timedOut)
        #expect(slowDone.wait(timeout: .now() + 5) == .success)
    }

    @Test func waitUntilAnsweredReturnsOnceARunningCallIsAnswered() throws {
        let registry = TTRPCServiceRegistry()
        registry.register(service: "t", method: "Kill") { _ in Thread.sleep(forTimeInterval: 0.5); return [7] }
        let (server, path) = try startedServer(registry)
        defer { server.stop(); unlink(path) }
        let client = try TTRPCClient(path: path)
        let answered = DispatchSemaphore(value: 0)
        let started = Date()
        Thread.detachNewThread {
            if (try? client.call(service: "t", method: "Kill", payload: [])) == [7] { answered.signal() }
        }
        Thread.sleep(forTimeInterval: 0.2)
        server.waitUntilAnswered(limit: 5)
        // It waited for the handler, and the response was written before it returned.
        #expect(Date().timeIntervalSince(started) >= 0.45)
        #expect(answered.wait(timeout: .now() + 1) == .success)
    }

    @Test func aClientWithATimeoutGivesUpOnASilentServer() throws {
        let registry = TTRPCServiceRegistry()
        registry.register(service: "t", method: "Silent") { _ in Thread.sleep(forTimeInterval: 3); return [] }
        let (server, path) = try startedServer(registry)
        defer { server.stop(); unlink(path) }
        let client = try TTRPCClient(path: path, timeoutSeconds: 1)
        let started = Date()
        let error = #expect(throws: TTRPCError.self) { try client.call(service: "t", method: "Silent", payload: []) }
        #expect(error?.code == .deadlineExceeded)
        #expect(Date().timeIntervalSince(started) < 2.5)
    }

    @Test func aFrameOfUnknownTypeEndsTheConnection() throws {
        let (server, path) = try startedServer(TTRPCServiceRegistry())
        defer { server.stop(); unlink(path) }
        let fd = try UnixSocket.connect(path: path)
        defer { close(fd) }
        var limit = timeval(tv_sec: 5, tv_usec: 0)   // a server that kept the connection fails the test, not hangs it
        #expect(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size)) == 0)
        var bad: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 1, 3, 0]
        #expect(write(fd, &bad, bad.count) == bad.count)
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0)   // closed by the server, nothing answered
    }
}
