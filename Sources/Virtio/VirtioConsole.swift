// VirtioConsole.swift — the virtio-console core (virtio 1.2 §5.3) as a
// single-port console (the guest's hvc0): no MULTIPORT, queue 0 the
// receiveq (host → guest), queue 1 the transmitq (guest → host). Transmitted
// bytes go to an output closure (the VMM's serial output); input waits in a
// bounded buffer until the driver posts receive buffers, oldest bytes
// dropped (and counted) past the bound.

public final class VirtioConsoleDevice: VirtioDevice {
    public static let receiveQueue = 0
    public static let transmitQueue = 1
    /// Input kept while the driver posts no receive buffers.
    public static let inputLimit = 64 * 1024
    /// The most one transmit chain is read from (a larger chain is truncated).
    public static let maximumTransmitBytes = 64 * 1024

    public let deviceType = VirtioDeviceType.console
    public let pciClassCode: UInt32 = 0x07_8000
    public let deviceFeatures: UInt64 = 0
    public let queueMaxSizes: [UInt16]
    private let output: ([UInt8]) -> Void
    private var input: [UInt8] = []
    private var inputStart = 0
    public private(set) var droppedInputBytes: UInt64 = 0

    public init(queueSize: UInt16 = 256, output: @escaping ([UInt8]) -> Void) {
        queueMaxSizes = [queueSize, queueSize]
        self.output = output
    }

    /// struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr (all 0 but one port).
    public var configBytes: [UInt8] { [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0] }

    /// The driver's emergency write (emerg_wr, offset 8): one character out.
    public func writeConfig(offset: Int, bytes: [UInt8]) {
        if offset == 8, let character = bytes.first { output([character]) }
    }

    public func activate(features: UInt64) {}

    public func reset() {
        input.removeAll()
        inputStart = 0
    }

    /// Bytes for the guest (stdin); the VMM then notifies the receive queue.
    public func receive(_ bytes: [UInt8]) {
        input += bytes
        let pending = input.count - inputStart
        if pending > Self.inputLimit {
            let drop = pending - Self.inputLimit
            droppedInputBytes &+= UInt64(drop)
            inputStart += drop
        }
        if inputStart > Self.inputLimit {
            input.removeFirst(inputStart)
            inputStart = 0
        }
    }

    public var pendingInputBytes: Int { input.count - inputStart }

    public func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError) {
        switch index {
        case Self.transmitQueue:
            while let chain = try queue.popAvailable(memory: memory) {
                let count = Int(min(chain.readableLength, UInt64(Self.maximumTransmitBytes)))
                if count > 0 { output(try chain.readBytes(count: count, memory: memory)) }
                try queue.pushUsed(head: chain.head, length: 0, memory: memory)
            }
        case Self.receiveQueue:
            while pendingInputBytes > 0, let chain = try queue.popAvailable(memory: memory) {
                let count = Int(min(chain.writableLength, UInt64(pendingInputBytes)))
                let written = try chain.writeBytes(Array(input[inputStart..<(inputStart + count)]), memory: memory)
                inputStart += written
                try queue.pushUsed(head: chain.head, length: UInt32(written), memory: memory)
            }
            if inputStart == input.count {
                input.removeAll(keepingCapacity: true)
                inputStart = 0
            }
        default:
            break
        }
    }
}
