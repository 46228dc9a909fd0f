// GuestSyncPort.swift — port 0x500, Deflect's guest sync port: a guest writes
// a phase number there to say "I reached phase n". The machine pauses that
// vCPU while its embedder (a test swapping an MSR filter, say) acts, so a
// guest program can be driven through host-side changes step by step, like
// the GUEST_SYNC() of the kernel's KVM selftests.

/// Turns each write into a `.guestPhase` effect; reads return the last phase.
public final class GuestSyncPort: PortDevice {
    public let name = "guest-sync"

    /// The last phase the guest announced.
    public private(set) var lastPhase: UInt32 = 0

    public init() {}

    public func read(offset: UInt16, size: Int) -> UInt32 {
        lastPhase & accessMask(size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        lastPhase = value & accessMask(size: size)
        return .guestPhase(lastPhase)
    }
}

extension GuestSyncPort: StatefulDevice {
    public struct State: Codable, Sendable, Equatable {
        public var lastPhase: UInt32

        public init(lastPhase: UInt32) { self.lastPhase = lastPhase }
    }

    public func exportState() -> State { State(lastPhase: lastPhase) }

    /// Any 32-bit phase can have been announced.
    public func importState(_ state: State) throws(DeviceStateError) { lastPhase = state.lastPhase }

    public static func erase(_ state: State) -> DeviceState { .guestSync(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .guestSync(typed) = state { return typed }
        return nil
    }
}
