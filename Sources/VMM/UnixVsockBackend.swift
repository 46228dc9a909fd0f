// VMM: virtio-vsock's host side on Unix sockets, in Firecracker's hybrid
// vsock convention: host programs connect to PATH and write `CONNECT PORT\n`
// (the device answers `OK HOSTPORT\n` once the guest accepts); a guest that
// connects to host port P reaches the program listening on `PATH_P`.
import KVM
import Virtio

final class UnixVsockBackend: VsockBackend {
    let path: String
    private let listener: UnixStream
    private var streams: [Int: UnixStream] = [:]
    private var nextID = 1

    /// Listens on `path`; an error is one line naming the option.
    init(path: String) throws(MachineError) {
        self.path = path
        do throws(SocketError) {
            listener = try UnixStream.listen(path: path)
        } catch {
            throw .device("--vsock socket=\(path): \(error)")
        }
    }

    /// Removes PATH now (the run is over; the listener closes when freed).
    func removeSocketPath() { listener.removeBoundPath() }

    /// Every descriptor the device's thread waits on: the listener and each stream.
    var descriptors: [CInt] { [listener.fd] + streams.values.map(\.fd) }

    private func register(_ stream: UnixStream) -> VsockStream {
        let id = nextID
        nextID += 1
        streams[id] = stream
        return VsockStream(id: id)
    }

    func connect(port: UInt32) -> VsockStream? {
        UnixStream.connect(path: "\(path)_\(port)").map(register)
    }

    func accept() -> VsockStream? { listener.accept().map(register) }

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
}
