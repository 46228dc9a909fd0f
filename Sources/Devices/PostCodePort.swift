// PostCodePort.swift — port 0x80, the POST diagnostic port. Firmware writes
// progress codes there and Linux writes to it as an I/O delay
// (`outb(0, 0x80)`), so it must exist and be cheap; it only remembers.

/// Keeps the last value written; reads return it (masked to the access size).
public final class PostCodePort: PortDevice {
    public let name = "post-code"

    /// Last value written, masked to the size of that write.
    public private(set) var lastValue: UInt32 = 0

    public init() {}

    public func read(offset: UInt16, size: Int) -> UInt32 {
        lastValue & accessMask(size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        lastValue = value & accessMask(size: size)
        return .none
    }
}

extension PostCodePort: StatefulDevice {
    public struct State: Codable, Sendable, Equatable {
        public var lastValue: UInt32

        public init(lastValue: UInt32) { self.lastValue = lastValue }
    }

    public func exportState() -> State { State(lastValue: lastValue) }

    /// Any 32-bit value can have been written.
    public func importState(_ state: State) throws(DeviceStateError) { lastValue = state.lastValue }

    public static func erase(_ state: State) -> DeviceState { .postCode(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .postCode(typed) = state { return typed }
        return nil
    }
}
