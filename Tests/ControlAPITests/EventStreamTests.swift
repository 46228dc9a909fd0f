// ControlAPITests: the event fan-out (bounded buffers, drop counting, a
// producer that never waits) and `GET /events` as server-sent events.
@testable import ControlAPI
import Foundation
import Synchronization
import Testing

/// Polls `condition` every 10 ms for at most `limit`.
func eventually(within limit: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

@Suite("Control API events")
struct EventStreamTests {
    @Test func slowSubscriberLosesTheOldestLinesAndIsToldHowMany() async {
        let broadcaster = EventBroadcaster(capacity: 4)
        let subscription = broadcaster.subscribe()
        for i in 0..<10 { broadcaster.publish(#"{"n":\#(i)}"#) }
        #expect(broadcaster.droppedCount == 6)
        var lines: [String] = []
        for _ in 0..<5 {
            if case .line(let line) = await subscription.next(idleAfter: .seconds(1)) { lines.append(line) }
        }
        #expect(lines == [EventBroadcaster.dropNotice(count: 6), #"{"n":6}"#, #"{"n":7}"#, #"{"n":8}"#, #"{"n":9}"#])
        #expect(await subscription.next(idleAfter: .milliseconds(20)) == .idle)
        broadcaster.finish()
        #expect(await subscription.next(idleAfter: nil) == .finished)
    }

    @Test(.timeLimit(.minutes(1)))
    func producerNeverWaitsForAConsumerThatDoesNotRead() {
        // Nobody reads: a producer that waited for room would never finish.
        let broadcaster = EventBroadcaster(capacity: 256)
        let subscriptions = (0..<4).map { _ in broadcaster.subscribe() }
        for i in 0..<100_000 { broadcaster.publish(#"{"event":"msr","n":\#(i)}"#) }
        #expect(broadcaster.droppedCount == UInt64(4 * (100_000 - 256)))
        #expect(subscriptions.count == broadcaster.subscriberCount)
    }

    @Test func parkedConsumerWakesOnPublishAndSubscriptionEndsWhenDropped() async {
        let broadcaster = EventBroadcaster()
        let received = Mutex<[String]>([])
        let consumer = Task {
            for await line in broadcaster.subscribe() { received.withLock { $0.append(line) } }
        }
        #expect(await eventually { broadcaster.subscriberCount == 1 })
        for i in 0..<50 { broadcaster.publish("\(i)") }
        #expect(await eventually { received.withLock { $0.count } == 50 })
        #expect(received.withLock { $0 } == (0..<50).map(String.init))
        consumer.cancel()
        await consumer.value
        #expect(await eventually { broadcaster.subscriberCount == 0 })
    }

    @Test func eventsArriveInOrderOverServerSentEvents() async throws {
        let vm = FakeVM()
        var limits = ControlServerLimits()
        limits.eventKeepAlive = .milliseconds(200)
        try await withServer(vm, limits: limits) { _, path in
            let client = ControlClient(socketPath: path)
            let received = Mutex<[String]>([])
            let reader = Task {
                try await client.events { line in
                    received.withLock { $0.append(line) }
                    return received.withLock { $0.count } < 200
                }
            }
            #expect(await eventually { vm.broadcaster.subscriberCount == 1 })
            for i in 0..<200 { vm.broadcaster.publish(#"{"event":"msr","n":\#(i)}"#) }
            try await reader.value
            #expect(received.withLock { $0 } == (0..<200).map { #"{"event":"msr","n":\#($0)}"# })
            // The client went away: the server notices at its next write (an
            // event or a keep-alive) and frees the subscription.
            #expect(await eventually(within: .seconds(10)) {
                vm.broadcaster.publish(#"{"event":"after"}"#)
                return vm.broadcaster.subscriberCount == 0
            })
        }
    }

    @Test func sseFramingIsDataLinesAndABlankLine() async throws {
        #expect(ControlResponder.serverSentEvent(#"{"a":1}"#) == "data: {\"a\":1}\n\n")
        #expect(ControlResponder.serverSentEvent("x\ny") == "data: x\ndata: y\n\n")
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array(": comment\n\ndata: {\"a\"".utf8)) == [])
        #expect(parser.feed(Array(":1}\r\n\r\ndata: x\ndata: y\n\n".utf8)) == [#"{"a":1}"#, "x\ny"])
    }

    @Test func clientThatStopsReadingDoesNotBlockTheProducerOrOtherClients() async throws {
        let vm = FakeVM(eventCapacity: 64)
        var limits = ControlServerLimits()
        limits.eventKeepAlive = .milliseconds(200)
        try await withServer(vm, limits: limits) { server, path in
            let stalled = try await RawConnection(path: path, reading: false)
            await stalled.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(await eventually { vm.broadcaster.subscriberCount == 1 })
            let line = #"{"event":"msr","padding":""# + String(repeating: "x", count: 400) + #""}"#
            let start = ContinuousClock.now
            for _ in 0..<50_000 { vm.broadcaster.publish(line) }
            // Generous: a producer that waited for the client would not finish at all.
            #expect(ContinuousClock.now - start < .seconds(30), "publishing waited for the stalled client")
            #expect(vm.broadcaster.droppedCount > 0)
            #expect(try await request(path, .GET, "/stats").status == 200)
            await stalled.close()
            #expect(await eventually(within: .seconds(10)) { server.openEventStreams == 0 })
            #expect(await eventually { vm.broadcaster.subscriberCount == 0 })
        }
    }

    @Test func stopEndsOpenEventStreams() async throws {
        let vm = FakeVM()
        let directory = try TemporaryDirectory()
        let path = directory.path + "/api.sock"
        let server = ControlServer(control: vm, socketPath: path)
        try await server.start()
        let reader = Task { try await ControlClient(socketPath: path).events { _ in true } }
        #expect(await eventually { server.openEventStreams == 1 })
        await server.stop()
        _ = try? await reader.value
        #expect(vm.broadcaster.subscriberCount == 0)
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
