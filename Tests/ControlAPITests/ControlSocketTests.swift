// ControlAPITests: the API socket file (mode 0600, stale replaced, live
// refused, bad paths as one-line errors) and clients that misbehave (idle,
// slow, oversized, many at once).
@testable import ControlAPI
import Foundation
import NIOCore
import NIOPosix
import Testing

@Suite("Control API socket and bad clients", .serialized)
struct ControlSocketTests {
    @Test func socketIsCreatedWithMode0600EvenWithAnOpenUmask() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/api.sock"
        let previous = umask(0)
        defer { umask(previous) }
        let server = ControlServer(control: FakeVM(), socketPath: path)
        try await server.start()
        var status = stat()
        #expect(lstat(path, &status) == 0)
        #expect(status.st_mode & S_IFMT == S_IFSOCK)
        #expect(status.st_mode & 0o7777 == 0o600)
        // Nothing of the private bind directory is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["api.sock"])
        await server.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func staleSocketOfADeadProcessIsReplaced() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/api.sock"
        try await makeStaleSocket(at: path)

        let server = ControlServer(control: FakeVM(), socketPath: path)
        try await server.start()
        let answer = try await request(path, .GET, "/vm")
        #expect(answer.status == 200)
        await server.stop()
    }

    @Test func liveSocketIsRefusedAndKeepsServing() async throws {
        try await withServer { _, path in
            let second = ControlServer(control: FakeVM(), socketPath: path)
            await #expect(throws: ControlSocketError.inUse(path: path)) { try await second.start() }
            #expect(ControlSocketError.inUse(path: path).description == "API socket \(path) is in use by a running process")
            let answer = try await request(path, .GET, "/vm")
            #expect(answer.status == 200)
        }
    }

    @Test func regularFileDirectoryAndMissingDirectoryAreOneLineErrors() async throws {
        let directory = try TemporaryDirectory()
        let file = directory.path + "/not-a-socket"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: file))
        await #expect(throws: ControlSocketError.notASocket(path: file, kind: "a regular file")) {
            try await ControlServer(control: FakeVM(), socketPath: file).start()
        }
        #expect(FileManager.default.contents(atPath: file) == Data("keep me".utf8))

        await #expect(throws: ControlSocketError.notASocket(path: directory.path, kind: "a directory")) {
            try await ControlServer(control: FakeVM(), socketPath: directory.path).start()
        }
        let missing = directory.path + "/no/such/dir/api.sock"
        await #expect(throws: ControlSocketError.directoryMissing(path: directory.path + "/no/such/dir")) {
            try await ControlServer(control: FakeVM(), socketPath: missing).start()
        }
        let long = directory.path + "/" + String(repeating: "x", count: 120)
        await #expect(throws: ControlSocketError.pathTooLong(path: long)) {
            try await ControlServer(control: FakeVM(), socketPath: long).start()
        }
        for error: ControlSocketError in [.notASocket(path: file, kind: "a regular file"), .directoryMissing(path: missing)] {
            #expect(!error.description.contains("\n"))
        }
    }

    @Test(.enabled(if: geteuid() != 0, "root writes any directory: the permission check cannot be seen as root"))
    func directoryWithoutWritePermissionIsAnError() async throws {
        let directory = try TemporaryDirectory()
        chmod(directory.path, 0o500)
        await #expect(throws: ControlSocketError.directoryNotWritable(path: directory.path)) {
            try await ControlServer(control: FakeVM(), socketPath: directory.path + "/api.sock").start()
        }
    }

    @Test func idleClientIsClosedAndDoesNotBlockOthers() async throws {
        var limits = ControlServerLimits()
        limits.idleTimeout = .seconds(2)
        try await withServer(limits: limits) { _, path in
            let start = ContinuousClock.now
            let idle = try await RawConnection(path: path)
            // Half a request head that never ends, on a second connection.
            let partial = try await RawConnection(path: path)
            await partial.send("GET /vm HTTP/1.1\r\nHost: x\r\n")
            let answer = try await request(path, .GET, "/vm")
            #expect(answer.status == 200)
            // Served while both still held their connections…
            let heldMeanwhile = !idle.isClosed && !partial.isClosed
            // (unless the machine was so slow that the idle timeout passed first).
            #expect(heldMeanwhile || ContinuousClock.now - start >= .seconds(2))
            // …and then the server closed them.
            #expect(try await idle.readToEnd(within: .seconds(10)) == "")
            #expect(try await partial.readToEnd(within: .seconds(10)) == "")
        }
    }

    @Test func slowBodyIsAnsweredWith408() async throws {
        var limits = ControlServerLimits()
        limits.bodyTimeout = .milliseconds(300)
        try await withServer(limits: limits) { _, path in
            let slow = try await RawConnection(path: path)
            await slow.send("PUT /policy HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc")
            let answer = try #require(try await slow.readToEnd(within: .seconds(5)))
            #expect(answer.hasPrefix("HTTP/1.1 408"))
            #expect(answer.contains(#""status":408"#))
        }
    }

    @Test func declaredHugeBodyIsRefusedBeforeReading() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, path in
            let client = try await RawConnection(path: path)
            await client.send("PUT /policy HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1073741824\r\n\r\n")
            let answer = try #require(try await client.readToEnd(within: .seconds(5)))
            #expect(answer.hasPrefix("HTTP/1.1 413"))
            #expect(vm.recorded.withLock { $0.policies }.isEmpty)
        }
    }

    @Test func gigabyteUploadIsCutOffAtTheLimitWhileOthersAreServed() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, path in
            let client = try await RawConnection(path: path)
            // Chunked: no length to refuse up front; the server must stop reading.
            await client.send("PUT /policy HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            let chunk = ByteBuffer(string: "10000\r\n" + String(repeating: "#", count: 0x10000) + "\r\n")
            var sent = 0
            while sent < 1 << 30, await client.send(chunk) {
                sent += 0x10000
                if sent % (4 << 20) == 0 {
                    #expect(try await request(path, .GET, "/vm").status == 200)
                }
            }
            #expect(sent > 1 << 20, "cut off after \(sent) bytes, before the limit")
            #expect(sent < 64 << 20, "the server read \(sent) bytes before cutting the client off")
            let answer = try await client.read(until: "\r\n\r\n", within: .seconds(5))
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer)")
            #expect(vm.recorded.withLock { $0.policies }.isEmpty)
            #expect(try await request(path, .GET, "/stats").status == 200)
        }
    }

    @Test func bodyOnARouteWithoutOneIsCutOffToo() async throws {
        try await withServer { _, path in
            let client = try await RawConnection(path: path)
            await client.send("GET /vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            let chunk = ByteBuffer(string: "10000\r\n" + String(repeating: "#", count: 0x10000) + "\r\n")
            var sent = 0
            while sent < 1 << 30, await client.send(chunk) { sent += 0x10000 }
            #expect(sent > 1 << 20, "cut off after \(sent) bytes, before the limit")
            #expect(sent < 64 << 20, "the server read \(sent) bytes before cutting the client off")
            let answer = try await client.read(until: "\r\n\r\n", within: .seconds(5))
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        }
    }

    @Test func twentyClientsAtOnce() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, path in
            let client = ControlClient(socketPath: path)
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        switch i % 4 {
                        case 0: return try await client.stats() == FakeVM.stats(state: vm.state)
                        case 1: return try await client.msrs() == FakeVM.msrTable
                        case 2: return try await client.info().configuration.vcpus == 2
                        default: return try await client.metrics().contains("deflect_exits_total")
                        }
                    }
                }
                var all: [Bool] = []
                for try await result in group { all.append(result) }
                return all
            }
            #expect(results.count == 20)
            #expect(results.allSatisfy { $0 })
        }
    }

    @Test func malformedHTTPIsA400AndTheServerStaysUp() async throws {
        try await withServer { _, path in
            let client = try await RawConnection(path: path)
            await client.send("this is not http\r\n\r\n")
            let answer = try #require(try await client.readToEnd(within: .seconds(5)))
            #expect(answer.hasPrefix("HTTP/1.1 400"))
            #expect(try await request(path, .GET, "/vm").status == 200)
        }
    }
}
