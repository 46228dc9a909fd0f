// VMM: virtio-vsock's host side on Unix sockets, in Firecracker's hybrid
// vsock convention: host programs connect to PATH and write `CONNECT PORT\n`
// (the device answers `OK HOSTPORT\n` once the guest accepts); a guest that
// connects to host port P reaches the program listening on `PATH_P`. A live
// migration hands PATH over (HostEndpoint): the listener closes and PATH is
// removed before the receiver listens there, and comes back if the
// migration fails; open streams stay (the receiver's guest gets a
// TRANSPORT_RESET for them).
import KVM
import Virtio

final class UnixVsockBackend: VsockBackend, HostEndpoint {
    let path: String
    /// nil while handed over to a migration's receiver.
    private var listener: UnixStream?
    private var streams: [Int: UnixStream] = [:]
    private var nextID = 1

    /// Listens on `path`; an error is one line naming the option.
    init(path: String) throws(MachineError) {
        self.path = path
        listener = try Self.listen(path)
    }

    private static func listen(_ path: String) throws(MachineError) -> UnixStream {
        do throws(SocketError) {
            return try UnixStream.listen(path: path)
        } catch {
            throw .device("--vsock socket=\(path): \(error)")
        }
    }

    /// Removes PATH now (the run is over; the listener closes when freed).
    func removeSocketPath() { listener?.removeBoundPath() }

    /// Every descriptor the device's thread waits on: the listener and each stream.
    var hostDescriptors: [CInt] { (listener.map { [$0.fd] } ?? []) + streams.values.map(\.fd) }

    private func register(_ stream: UnixStream) -> VsockStream {
        let id = nextID
        nextID += 1
        streams[id] = stream
        return VsockStream(id: id)
    }

    func connect(port: UInt32) -> VsockStream? {
        UnixStream.connect(path: "\(path)_\(port)").map(register)
    }

    func accept() -> VsockStream? { listener?.accept().map(register) }

    func read(_ stream: VsockStream, count: Int) -> VsockRead {
        guard let socket = streams[stream.id] else { return .closed }
        switch socket.read(maximum: max(1, count)) {
        case let .data(bytes): return .data(bytes)
        case .wouldBlock: return .wouldBlock
        case .closed: return .closed
        }
    }

    func write(_ stream: VsockStream, _ bytes: [UInt8]) -> Int? { streams[stream.id]?.write(bytes) }

    func shutdownWrite(_ stream: VsockStream) { streams[stream.id]?.shutdownWrite() }

    func close(_ stream: VsockStream) { streams[stream.id] = nil }

    func release() {
        listener?.removeBoundPath()
        listener = nil
    }

    func reacquire() throws(MachineError) {
        guard listener == nil else { return }
        listener = try Self.listen(path)
    }
}
