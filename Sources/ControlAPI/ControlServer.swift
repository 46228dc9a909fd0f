// ControlAPI: the control API server: HTTP/1.1 on a Unix socket, serving a
// `VMControl`. Owns the server task, the socket file and the event streams
// it has open; `deflect run --api-socket PATH` is to start one beside the VM.
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Serves the control API of one VM on a Unix socket.
///
/// ```swift
/// let server = ControlServer(control: machineControl, socketPath: "/run/deflect/vm1.sock")
/// try await server.start()   // the socket exists, mode 0600, and answers
/// …
/// await server.stop()        // the socket file is gone
/// ```
public final class ControlServer: Sendable {
    public let socketPath: String
    public let limits: ControlServerLimits
    private let control: any VMControl
    private let streams = EventStreamRegistry()
    private let connections: ConnectionTable
    private let running = Mutex<Running?>(nil)

    private struct Running {
        var task: Task<Void, Never>
        var group: ServiceGroup
        /// The socket file's identity, so `stop` removes only our own socket.
        var device: UInt64
        var inode: UInt64
    }

    public init(control: any VMControl, socketPath: String, limits: ControlServerLimits = ControlServerLimits()) {
        self.control = control
        self.socketPath = socketPath
        self.limits = limits
        connections = ConnectionTable(maximum: limits.maximumConnections)
    }

    /// Binds the socket and starts answering; returns once the socket is
    /// visible at `socketPath` with mode 0600.
    public func start() async throws(ControlSocketError) {
        guard running.withLock({ $0 == nil }) else { throw .bindFailed(path: socketPath, reason: "this server is already serving it") }
        let group = MultiThreadedEventLoopGroup.singleton
        try await ControlSocket.prepare(path: socketPath, eventLoopGroup: group)
        let bind = try ControlSocket.makeBindDirectory(for: socketPath)
        let (readiness, ready) = AsyncStream.makeStream(of: Result<Void, ControlSocketError>.self, bufferingPolicy: .bufferingOldest(1))
        let path = socketPath
        let limits = self.limits
        // The VMM's stdout and stderr belong to the guest and to Deflect's own
        // messages: the server logs nothing.
        let silent = Logger(label: "deflect.api", factory: { _ in SwiftLogNoOpLogHandler() })
        let connections = self.connections
        let deadlines = ConnectionGuard.Deadlines(firstRequestHead: TimeAmount(limits.requestHeadTimeout),
                                                  nextRequestHead: TimeAmount(limits.idleTimeout))
        let app = Application(
            responder: ControlResponder(control: control, limits: limits, streams: streams),
            // Every connection is accepted (the listen backlog never fills);
            // ConnectionGuard admits it or sheds one, and owns the deadlines.
            server: .http1(configuration: .init(
                additionalChannelHandlers: [ConnectionGuard(maximumBodyBytes: max(limits.connectionCutoffBytes, limits.maximumPolicyBodyBytes),
                                                            table: connections, deadlines: deadlines)],
                idleTimeout: nil
            )),
            configuration: .init(address: .unixDomainSocket(path: bind.socket), serverName: "deflect"),
            onServerRunning: { _ in
                do throws(ControlSocketError) {
                    try ControlSocket.publish(boundSocket: bind.socket, directory: bind.directory, at: path)
                    ready.yield(.success(()))
                } catch {
                    ready.yield(.failure(error))
                }
            },
            eventLoopGroupProvider: .shared(group),
            logger: silent
        )
        // A service group of our own, so that `stop` can shut the server down
        // gracefully (stop accepting, finish what is in flight) and no signal
        // handlers are installed: signals belong to `deflect run`.
        let services = ServiceGroup(configuration: .init(services: [.init(service: app)], logger: silent))
        let task = Task {
            do {
                try await services.run()
            } catch {
                ready.yield(.failure(.bindFailed(path: path, reason: TransportErrorText.reason(error))))
            }
            ControlSocket.discardBindDirectory(bind)
            ready.finish()
        }
        var outcome: Result<Void, ControlSocketError> = .failure(.bindFailed(path: path, reason: "the server ended before it listened"))
        for await first in readiness {
            outcome = first
            break
        }
        do throws(ControlSocketError) {
            try outcome.get()
        } catch {
            await services.triggerGracefulShutdown()
            await task.value
            throw error
        }
        var status = stat()
        let identity = lstat(path, &status) == 0 ? (UInt64(status.st_dev), UInt64(status.st_ino)) : (0, 0)
        streams.reopen()
        running.withLock { $0 = Running(task: task, group: services, device: identity.0, inode: identity.1) }
    }

    /// Stops answering, ends open event streams and removes the socket file
    /// (if it is still the one this server created).
    public func stop() async {
        guard let current = running.withLock({ state -> Running? in defer { state = nil }; return state }) else { return }
        streams.closeAll()
        await current.group.triggerGracefulShutdown()
        // In-flight requests finish; one that does not within the grace
        // period (a body still trickling in) is cancelled.
        let grace = Task {
            try? await Task.sleep(for: .seconds(2))
            if !Task.isCancelled { current.task.cancel() }
        }
        await current.task.value
        grace.cancel()
        var status = stat()
        if lstat(socketPath, &status) == 0, UInt64(status.st_dev) == current.device, UInt64(status.st_ino) == current.inode {
            unlink(socketPath)
        }
    }

    /// How many connections the server holds now.
    public var openConnections: Int { connections.count }

    /// How many `GET /events` streams are open now.
    public var openEventStreams: Int { streams.count }
}

/// The event subscriptions the server has open, so that `stop` can end them
/// (an SSE response never ends by itself). Once closed, a stream that starts
/// is ended at once, so that none outlives the shutdown.
final class EventStreamRegistry: Sendable {
    private let open = Mutex<(next: Int, closed: Bool, subscriptions: [Int: EventSubscription])>((0, false, [:]))

    func register(_ subscription: EventSubscription) -> Int {
        let registration: Int? = open.withLock { state in
            guard !state.closed else { return nil }
            state.next += 1
            state.subscriptions[state.next] = subscription
            return state.next
        }
        guard let registration else {
            subscription.cancel()
            return 0
        }
        return registration
    }

    func reopen() {
        open.withLock { $0.closed = false }
    }

    func remove(_ registration: Int) {
        let removed = open.withLock { $0.subscriptions.removeValue(forKey: registration) }
        removed?.cancel()
    }

    func closeAll() {
        let all = open.withLock { state in
            state.closed = true
            defer { state.subscriptions = [:] }
            return Array(state.subscriptions.values)
        }
        for subscription in all { subscription.cancel() }
    }

    var count: Int { open.withLock { $0.subscriptions.count } }
}
