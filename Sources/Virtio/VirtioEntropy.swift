// VirtioEntropy.swift — the virtio-rng core (virtio 1.2 §5.4): one request
// queue whose writable buffers the device fills from an entropy source (the
// VMM's getrandom). No features, no configuration. A request is answered
// with at most `maximumBytesPerRequest`, so a driver asking for gigabytes
// costs the host a bounded amount per chain.

public final class VirtioEntropyDevice: VirtioDevice {
    /// Fills `count` bytes; nil when the source failed (the request is then
    /// answered with 0 bytes, as a device with nothing to give).
    public typealias Source = (_ count: Int) -> [UInt8]?

    public static let maximumBytesPerRequest = 64 * 1024

    public let deviceType = VirtioDeviceType.entropy
    public let pciClassCode: UInt32 = 0xFF_0000
    public let deviceFeatures: UInt64 = 0
    public let queueMaxSizes: [UInt16]
    public let configBytes: [UInt8] = []
    private let source: Source
    public private(set) var bytesGiven: UInt64 = 0

    public init(queueSize: UInt16 = 256, source: @escaping Source) {
        queueMaxSizes = [queueSize]
        self.source = source
    }

    public func activate(features: UInt64) {}
    public func reset() {}

    public func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        while let chain = try queue.popAvailable(memory: memory) {
            let count = Int(min(chain.writableLength, UInt64(Self.maximumBytesPerRequest)))
            var written = 0
            if count > 0, let bytes = source(count), bytes.count == count {
                written = try chain.writeBytes(bytes, memory: memory)
            }
            bytesGiven &+= UInt64(written)
            try queue.pushUsed(head: chain.head, length: UInt32(written), memory: memory)
        }
    }
}
