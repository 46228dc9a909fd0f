// VsockBackend.swift — the host side of a virtio-vsock device in
// Firecracker's "hybrid vsock" convention: host programs connect to one
// Unix socket (PATH) and ask for a guest port with `CONNECT <port>\n`; a
// guest that connects to host port P reaches whoever listens on the Unix
// socket `PATH_P`. The protocol deals in abstract stream handles so the
// device core stays pure; the VMM implements it with non-blocking Unix
// sockets. An in-memory back end for tests plays both the sockets and the
// host programs.

/// One host-side byte stream (a connected Unix socket in the VMM).
public struct VsockStream: Hashable, Sendable, CustomStringConvertible {
    public let id: Int
    public init(id: Int) { self.id = id }
    public var description: String { "stream \(id)" }
}

/// What a non-blocking read found.
public enum VsockRead: Equatable, Sendable {
    case data([UInt8])
    /// Nothing there now; the stream is open.
    case wouldBlock
    /// End of stream, or the stream failed.
    case closed
}

public protocol VsockBackend: AnyObject {
    /// The guest connects to host port `port`: connect to `PATH_port`; nil
    /// when nobody listens there.
    func connect(port: UInt32) -> VsockStream?
    /// The next host program that connected to PATH, nil when none waits.
    func accept() -> VsockStream?
    /// At most `count` bytes that are there now.
    func read(_ stream: VsockStream, count: Int) -> VsockRead
    /// Writes what the stream takes now: the count written (maybe fewer than
    /// offered), nil when the stream is gone.
    func write(_ stream: VsockStream, _ bytes: [UInt8]) -> Int?
    /// Nothing more will be written (shutdown(SHUT_WR)).
    func shutdownWrite(_ stream: VsockStream)
    func close(_ stream: VsockStream)
}

/// Streams held in memory. The test plays the host programs: `hostConnect`
/// and `hostWrite`/`hostRead`/`hostClose` on the far end of each stream;
/// `listeningPorts` says where a guest connection succeeds.
public final class InMemoryVsockBackend: VsockBackend {
    private struct Pipe {
        var port: UInt32?
        var toDevice: [UInt8] = []
        var fromDevice: [UInt8] = []
        var closedByHost = false
        var writeShutByHost = false
        var closedByDevice = false
        var writeShutByDevice = false
    }

    public var listeningPorts: Set<UInt32>
    /// Bytes a stream holds for its host program before writes fall short.
    public var streamCapacity: Int
    private var pipes: [Int: Pipe] = [:]
    private var nextID = 1
    private var waitingClients: [VsockStream] = []

    public init(listeningPorts: Set<UInt32> = [], streamCapacity: Int = 1 << 20) {
        self.listeningPorts = listeningPorts
        self.streamCapacity = streamCapacity
    }

    private func newStream(port: UInt32?) -> VsockStream {
        let stream = VsockStream(id: nextID)
        nextID += 1
        pipes[stream.id] = Pipe(port: port)
        return stream
    }

    // MARK: - The host programs' side

    /// A host program connects to PATH.
    public func hostConnect() -> VsockStream {
        let stream = newStream(port: nil)
        waitingClients.append(stream)
        return stream
    }

    /// The stream a guest connection to `port` reached, the latest first.
    public func streams(toPort port: UInt32) -> [VsockStream] {
        pipes.filter { $0.value.port == port }.keys.sorted(by: >).map { VsockStream(id: $0) }
    }

    public func hostWrite(_ stream: VsockStream, _ bytes: [UInt8]) { pipes[stream.id]?.toDevice += bytes }

    /// Everything the device wrote so far (taken).
    public func hostRead(_ stream: VsockStream) -> [UInt8] {
        defer { pipes[stream.id]?.fromDevice = [] }
        return pipes[stream.id]?.fromDevice ?? []
    }

    public func hostClose(_ stream: VsockStream) { pipes[stream.id]?.closedByHost = true }
    /// The host program's shutdown(SHUT_WR): it still reads.
    public func hostShutdownWrite(_ stream: VsockStream) { pipes[stream.id]?.writeShutByHost = true }
    public func isClosedByDevice(_ stream: VsockStream) -> Bool { pipes[stream.id]?.closedByDevice ?? false }
    public func isWriteShutByDevice(_ stream: VsockStream) -> Bool { pipes[stream.id]?.writeShutByDevice ?? false }
    /// Streams the device has not closed.
    public var openStreamCount: Int { pipes.values.filter { !$0.closedByDevice }.count }

    // MARK: - VsockBackend

    public func connect(port: UInt32) -> VsockStream? {
        listeningPorts.contains(port) ? newStream(port: port) : nil
    }

    public func accept() -> VsockStream? { waitingClients.isEmpty ? nil : waitingClients.removeFirst() }

    public func read(_ stream: VsockStream, count: Int) -> VsockRead {
        guard let pipe = pipes[stream.id], !pipe.closedByDevice else { return .closed }
        guard pipe.toDevice.isEmpty else {
            let taken = Array(pipe.toDevice.prefix(max(0, count)))
            pipes[stream.id]?.toDevice.removeFirst(taken.count)
            return .data(taken)
        }
        return pipe.closedByHost || pipe.writeShutByHost ? .closed : .wouldBlock
    }

    public func write(_ stream: VsockStream, _ bytes: [UInt8]) -> Int? {
        guard let pipe = pipes[stream.id], !pipe.closedByHost, !pipe.closedByDevice, !pipe.writeShutByDevice else { return nil }
        let count = min(bytes.count, max(0, streamCapacity - pipe.fromDevice.count))
        pipes[stream.id]?.fromDevice += bytes.prefix(count)
        return count
    }

    public func shutdownWrite(_ stream: VsockStream) { pipes[stream.id]?.writeShutByDevice = true }
    public func close(_ stream: VsockStream) { pipes[stream.id]?.closedByDevice = true }
}
