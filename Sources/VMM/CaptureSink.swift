// VMM: a serial sink that keeps the guest's output in memory and can be read
// from any thread while or after the machine runs (tests, embedding).
import Devices
import Synchronization

public final class CaptureSink: ByteSink, Sendable {
    private let storage = Mutex<[UInt8]>([])
    public init() {}
    public func write(_ byte: UInt8) { storage.withLock { $0.append(byte) } }
    public func flush() {}
    public var bytes: [UInt8] { storage.withLock { $0 } }
    /// The output decoded as UTF-8 (invalid sequences become U+FFFD).
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}
