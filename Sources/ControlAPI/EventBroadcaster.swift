// ControlAPI: fan-out of the VMM's event lines to `GET /events` subscribers.
// The producer (the VMM's event log, on a vCPU thread) must never wait for a
// client, so each subscriber has a bounded buffer: when it is full the oldest
// line is dropped and counted, and the subscriber is told how many it missed.
import Synchronization

/// Delivers each published event line to every current subscriber.
///
/// `publish` takes one lock, appends to each subscriber's ring buffer and
/// never blocks on a consumer; a subscriber that falls `capacity` lines behind
/// loses its oldest lines and then reads one
/// `{"event":"events-dropped","count":N}` line where the gap is.
public final class EventBroadcaster: Sendable {
    /// Lines buffered per subscriber before the oldest are dropped.
    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    /// Sends `line` (one JSON object, no newline) to every subscriber.
    public func publish(_ line: String) {
        let ready = state.withLock { state in
            state.published &+= 1
            state.append(line, capacity: capacity)
            return state.takeReadyWaiters()
        }
        for (continuation, next) in ready { continuation.resume(returning: next) }
    }

    /// Ends every subscription (the VM stopped): consumers read what is
    /// buffered, then the end.
    public func finish() {
        let ready = state.withLock { state in
            state.finished = true
            return state.takeReadyWaiters()
        }
        for (continuation, next) in ready { continuation.resume(returning: next) }
    }

    /// How many subscriptions are open now.
    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Lines dropped so far, over all subscribers.
    public var droppedCount: UInt64 { state.withLock { $0.dropped } }

    /// Lines published so far.
    public var publishedCount: UInt64 { state.withLock { $0.published } }

    /// A new subscription that sees every line published from now on.
    public func subscribe() -> EventSubscription {
        let id = state.withLock { state in
            state.nextID &+= 1
            state.subscribers[state.nextID] = Subscriber()
            return state.nextID
        }
        return EventSubscription(token: SubscriptionToken(broadcaster: self, id: id))
    }

    // MARK: Consumer side (EventSubscription)

    /// The next line for subscriber `id`; parks until one arrives, the
    /// broadcaster finishes, the task is cancelled or `idleAfter` passes.
    func next(_ id: Int, idleAfter: Duration?) async -> EventSubscription.Next {
        // A line already buffered needs no waiting (and no idle timer).
        let ready = state.withLock { state -> EventSubscription.Next? in
            guard state.subscribers[id] != nil else { return .finished }
            return state.takeNext(id).map { .line($0) }
        }
        if let ready { return ready }
        let ticket = state.withLock { state -> Int in state.nextTicket &+= 1; return state.nextTicket }
        let timer: Task<Void, Never>? = idleAfter.map { delay in
            Task { [weak self] in
                try? await Task.sleep(for: delay)
                guard !Task.isCancelled else { return }
                self?.wake(id, ticket: ticket, with: .idle)
            }
        }
        defer { timer?.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<EventSubscription.Next, Never>) in
                let immediate: EventSubscription.Next? = state.withLock { state in
                    guard state.subscribers[id] != nil, !Task.isCancelled else { return .finished }
                    if let line = state.takeNext(id) { return .line(line) }
                    if state.finished { return .finished }
                    state.subscribers[id]?.waiter = Waiter(ticket: ticket, continuation: continuation)
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            self.wake(id, ticket: ticket, with: .finished)
        }
    }

    /// Resumes subscriber `id`'s parked consumer with `value`, if it is still
    /// parked on `ticket` (a later `next` call has a new ticket).
    private func wake(_ id: Int, ticket: Int, with value: EventSubscription.Next) {
        let continuation = state.withLock { state -> CheckedContinuation<EventSubscription.Next, Never>? in
            guard let waiter = state.subscribers[id]?.waiter, waiter.ticket == ticket else { return nil }
            state.subscribers[id]?.waiter = nil
            return waiter.continuation
        }
        continuation?.resume(returning: value)
    }

    func unsubscribe(_ id: Int) {
        let waiter = state.withLock { $0.subscribers.removeValue(forKey: id)?.waiter }
        waiter?.continuation.resume(returning: .finished)
    }

    // MARK: State

    private struct Waiter {
        var ticket: Int
        var continuation: CheckedContinuation<EventSubscription.Next, Never>
    }

    private struct Subscriber {
        var buffer = LineRing()
        /// Lines dropped since this subscriber last read the drop notice.
        var pendingDrops: UInt64 = 0
        var waiter: Waiter?
    }

    private struct State {
        var nextID = 0
        var nextTicket = 0
        var subscribers: [Int: Subscriber] = [:]
        var finished = false
        var dropped: UInt64 = 0
        var published: UInt64 = 0

        /// Appends to every subscriber's buffer; a full one loses its oldest
        /// line, counted. Mutates in place: a copied buffer would cost a copy
        /// of every line in it per event.
        mutating func append(_ line: String, capacity: Int) {
            for index in subscribers.values.indices {
                if subscribers.values[index].buffer.count >= capacity {
                    subscribers.values[index].buffer.removeFirst()
                    subscribers.values[index].pendingDrops &+= 1
                    dropped &+= 1
                }
                subscribers.values[index].buffer.append(line)
            }
        }

        /// Unparks every consumer that now has a line (or the end) to read.
        mutating func takeReadyWaiters() -> [(CheckedContinuation<EventSubscription.Next, Never>, EventSubscription.Next)] {
            var ready: [(CheckedContinuation<EventSubscription.Next, Never>, EventSubscription.Next)] = []
            for id in subscribers.keys {
                guard let waiter = subscribers[id]?.waiter else { continue }
                if let line = takeNext(id) {
                    subscribers[id]?.waiter = nil
                    ready.append((waiter.continuation, .line(line)))
                } else if finished {
                    subscribers[id]?.waiter = nil
                    ready.append((waiter.continuation, .finished))
                }
            }
            return ready
        }

        /// The drop notice if lines were lost, else the oldest buffered line.
        mutating func takeNext(_ id: Int) -> String? {
            guard let pendingDrops = subscribers[id]?.pendingDrops else { return nil }
            if pendingDrops > 0 {
                subscribers[id]?.pendingDrops = 0
                return EventBroadcaster.dropNotice(count: pendingDrops)
            }
            return subscribers[id]?.buffer.popFirst()
        }
    }

    /// The line a subscriber reads where it lost `count` lines.
    public static func dropNotice(count: UInt64) -> String {
        #"{"event":"events-dropped","count":\#(count)}"#
    }
}

/// A FIFO of lines with O(1) append and removal at the front.
private struct LineRing {
    private var storage: [String] = []
    private var head = 0

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }

    mutating func append(_ line: String) { storage.append(line) }

    mutating func removeFirst() { _ = popFirst() }

    mutating func popFirst() -> String? {
        guard head < storage.count else { return nil }
        let line = storage[head]
        head += 1
        // Compact once the consumed prefix dominates, so memory stays bounded.
        if head >= 64 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return line
    }
}

/// Removes the subscriber when the last copy of its subscription goes away
/// (the client disconnected and the server dropped its iterator).
final class SubscriptionToken: Sendable {
    let broadcaster: EventBroadcaster
    let id: Int

    init(broadcaster: EventBroadcaster, id: Int) {
        self.broadcaster = broadcaster
        self.id = id
    }

    deinit { broadcaster.unsubscribe(id) }
}

/// One client's view of the event log: an async sequence of JSON lines that
/// ends when the VM stops or the consuming task is cancelled.
public struct EventSubscription: AsyncSequence, Sendable {
    public typealias Element = String

    /// What waiting for the next line gave.
    public enum Next: Sendable, Equatable {
        case line(String)
        /// Nothing arrived within the idle interval (time for a keep-alive).
        case idle
        case finished
    }

    let token: SubscriptionToken

    /// The next line, `.idle` after `idleAfter` without one, or `.finished`.
    public func next(idleAfter: Duration?) async -> Next {
        await token.broadcaster.next(token.id, idleAfter: idleAfter)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let token: SubscriptionToken

        public mutating func next() async -> String? {
            while true {
                switch await token.broadcaster.next(token.id, idleAfter: nil) {
                case .line(let line): return line
                case .idle: continue
                case .finished: return nil
                }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(token: token) }
}

extension EventSubscription {
    /// Ends this subscription now: a consumer waiting in `next` gets `.finished`.
    public func cancel() {
        token.broadcaster.unsubscribe(token.id)
    }
}
