// I8042Controller.swift — the minimal PC keyboard controller at ports
// 0x60–0x64: enough for a guest to reset the machine (command 0xFE, or the
// output-port reset line) and for a polling driver to read and write the
// controller command byte without hanging. Also owns port 0x61 (system
// control port B) because it sits inside that range. No keyboard, no IRQ 1.

/// Register on a `PortBus` at base 0x60, count 5.
///
/// Offsets: 0 = data (0x60), 1 = port B (0x61), 2–3 = unused (0x62–0x63),
/// 4 = status (read) / command (write) (0x64).
public final class I8042Controller: PortDevice {
    public let name = "i8042"

    private enum Offset {
        static let data: UInt16 = 0
        static let portB: UInt16 = 1
        static let command: UInt16 = 4
    }

    private enum Command {
        static let readCommandByte: UInt8 = 0x20
        static let writeCommandByte: UInt8 = 0x60
        static let readOutputPort: UInt8 = 0xD0
        static let writeOutputPort: UInt8 = 0xD1
        /// 0xF0–0xFF pulse the output-port lines whose bit is clear in the
        /// low nibble; bit 0 is the CPU reset line. 0xFE is what Linux's
        /// `reboot=k` and most firmware send.
        static let pulseOutputPort: ClosedRange<UInt8> = 0xF0...0xFF
    }

    private enum Status {
        /// Output buffer full: a byte waits at port 0x60.
        static let outputFull: UInt8 = 0x01
    }

    /// Which byte the next data-port write is for, after a command that
    /// takes a parameter.
    private enum PendingWrite {
        case none
        case commandByte
        case outputPort
    }

    /// Port B bits 4 (refresh toggle) and 5 (timer 2 output): read-only
    /// status that real hardware changes over time. Toggling both on every
    /// read lets delay and PIT-calibration loops that wait for a change end.
    private static let portBToggleBits: UInt8 = 0x30
    /// Port B bits 0–3 (timer 2 gate, speaker, parity/channel check enables)
    /// are the guest-writable ones.
    private static let portBWritable: UInt8 = 0x0F

    /// The controller command byte: interrupts on (bit 0), system flag
    /// (bit 2), translation (bit 6), as firmware leaves it.
    public private(set) var commandByte: UInt8 = 0x45
    private var outputPort: UInt8 = 0x01 // bit 0: reset line not asserted
    private var outputBuffer: UInt8 = 0
    private var outputBufferFull = false
    private var pendingWrite = PendingWrite.none
    private var portB: UInt8 = 0
    private var portBToggle: UInt8 = 0

    public init() {}

    public func read(offset: UInt16, size: Int) -> UInt32 {
        switch offset {
        case Offset.data:
            // Stale data stays readable after OBF clears, as on hardware.
            outputBufferFull = false
            return UInt32(outputBuffer)
        case Offset.portB:
            portBToggle ^= Self.portBToggleBits
            return UInt32(portB | portBToggle)
        case Offset.command:
            // Input buffer always empty (commands take effect at once).
            return UInt32(outputBufferFull ? Status.outputFull : 0)
        default:
            return 0xFF
        }
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        let byte = UInt8(truncatingIfNeeded: value)
        switch offset {
        case Offset.data:
            let target = pendingWrite
            pendingWrite = .none
            switch target {
            case .commandByte:
                commandByte = byte
            case .outputPort:
                outputPort = byte
                // Bit 0 low asserts the CPU reset line.
                if byte & 0x01 == 0 { return .resetRequested }
            case .none:
                // Bytes for the (absent) keyboard are dropped.
                break
            }
            return .none
        case Offset.portB:
            portB = byte & Self.portBWritable
            return .none
        case Offset.command:
            return command(byte)
        default:
            return .none
        }
    }

    private func command(_ byte: UInt8) -> DeviceEffect {
        // A new command abandons a parameter that never came.
        pendingWrite = .none
        switch byte {
        case Command.readCommandByte:
            respond(commandByte)
        case Command.writeCommandByte:
            pendingWrite = .commandByte
        case Command.readOutputPort:
            respond(outputPort)
        case Command.writeOutputPort:
            pendingWrite = .outputPort
        case Command.pulseOutputPort:
            if byte & 0x01 == 0 { return .resetRequested }
        default:
            // Unknown commands get no response; a driver waiting for one
            // times out, which is how a missing feature looks on hardware.
            break
        }
        return .none
    }

    private func respond(_ byte: UInt8) {
        outputBuffer = byte
        outputBufferFull = true
    }
}

// MARK: - Snapshot state

extension I8042Controller: StatefulDevice {
    public struct State: Codable, Sendable, Equatable {
        /// Which byte the next data-port write is for.
        public enum PendingWrite: String, Codable, Sendable {
            case none, commandByte, outputPort
        }
        public var commandByte: UInt8
        public var outputPort: UInt8
        public var outputBuffer: UInt8
        public var outputBufferFull: Bool
        public var pendingWrite: PendingWrite
        /// Port B's guest-writable bits 0–3, and the toggling bits 4–5.
        public var portB: UInt8
        public var portBToggle: UInt8
    }

    public func exportState() -> State {
        let pending: State.PendingWrite = switch pendingWrite {
        case .none: .none
        case .commandByte: .commandByte
        case .outputPort: .outputPort
        }
        return State(commandByte: commandByte, outputPort: outputPort, outputBuffer: outputBuffer,
                     outputBufferFull: outputBufferFull, pendingWrite: pending, portB: portB, portBToggle: portBToggle)
    }

    /// Refuses port B bits outside the writable and toggling ones.
    public func importState(_ state: State) throws(DeviceStateError) {
        try DeviceStateError.checkBits(state.portB, allowed: Self.portBWritable, device: name, field: "portB")
        guard state.portBToggle == 0 || state.portBToggle == Self.portBToggleBits else {
            throw DeviceStateError(device: name, field: "portBToggle", "0x\(String(state.portBToggle, radix: 16)) is neither 0 nor 0x30")
        }
        commandByte = state.commandByte
        outputPort = state.outputPort
        outputBuffer = state.outputBuffer
        outputBufferFull = state.outputBufferFull
        pendingWrite = switch state.pendingWrite {
        case .none: .none
        case .commandByte: .commandByte
        case .outputPort: .outputPort
        }
        portB = state.portB
        portBToggle = state.portBToggle
    }

    public static func erase(_ state: State) -> DeviceState { .i8042(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .i8042(typed) = state { return typed }
        return nil
    }
}
