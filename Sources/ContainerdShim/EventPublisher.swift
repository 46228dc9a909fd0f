// ContainerdShim: task events forwarded to containerd
// (containerd.services.events.ttrpc.v1.Events/Forward on TTRPC_ADDRESS), in
// order, off the request threads; a containerd that is gone (or stopped and
// silent) loses the event with a logged line and never blocks the task.
import Foundation
import ReadableErrors
import SwiftProtobuf
import Synchronization
import TTRPC

public final class EventPublisher: Sendable {
    private let address: String?
    private let namespace: String
    private let queue = DispatchQueue(label: "deflect.shim.events")
    private let client = Mutex<TTRPCClient?>(nil)

    /// `address` is containerd's ttrpc socket (nil: events are dropped).
    public init(address: String?, namespace: String) {
        self.address = address.map { $0.hasPrefix("unix://") ? String($0.dropFirst(7)) : $0 }
        self.namespace = namespace
    }

    public func publish(topic: String, _ event: some SwiftProtobuf.Message) {
        guard let address, let payload = try? event.serializedBytes() as [UInt8] else { return }
        var envelope = Containerd_Task_V2_Envelope()
        envelope.timestamp = Google_Protobuf_Timestamp(date: Date())
        envelope.namespace = namespace
        envelope.topic = topic
        // containerd names event types by their protobuf names in containerd.events.
        let name = type(of: event).protoMessageName
        envelope.event.typeURL = "containerd.events." + (name.split(separator: ".").last.map(String.init) ?? name)
        envelope.event.value = Data(payload)
        var request = Containerd_Task_V2_ForwardRequest()
        request.envelope = envelope
        let forward = request
        queue.async { [self] in
            client.withLock { client in
                do {
                    if client == nil { client = try TTRPCClient(path: address, timeoutSeconds: Self.timeoutSeconds) }
                    _ = try client?.call(service: "containerd.services.events.ttrpc.v1.Events", method: "Forward",
                                         forward, as: Google_Protobuf_Empty.self)
                } catch {
                    client = nil
                    Self.log("deflect shim: event \(topic) not forwarded: \(ReadableError.reason(error))\n")
                }
            }
        }
    }

    /// A line on the shim's stderr (containerd's log FIFO), through write(2):
    /// Foundation's FileHandle.write traps when the write fails, and it fails
    /// (EPIPE) exactly when containerd — the FIFO's reader — has gone.
    static func log(_ line: String) {
        var bytes = Array(line.utf8)
        _ = write(STDERR_FILENO, &bytes, bytes.count)
    }

    /// How long one forward may wait for containerd before the event is dropped.
    static let timeoutSeconds = 2

    /// Waits until every event published so far was sent (or dropped), at
    /// most `limit` seconds: a shim shutting down never waits on containerd.
    /// Whether everything was sent or dropped by then.
    @discardableResult
    public func flush(limit: Double = 5) -> Bool {
        let done = DispatchSemaphore(value: 0)
        queue.async { done.signal() }
        return done.wait(timeout: .now() + limit) == .success
    }
}
