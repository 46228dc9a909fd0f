// VMM: the machine's devices behind one lock. vCPU threads and the stdin pump
// reach the port bus only through here.
import Devices
import Synchronization

/// The port bus and the devices the machine wires onto it.
public final class DeviceHub: Sendable {
    /// Standard PC port assignments Deflect uses.
    public enum Ports {
        public static let com1: UInt16 = 0x3F8
        public static let debugExit: UInt16 = 0xF4
        public static let i8042: UInt16 = 0x60
        public static let postCode: UInt16 = 0x80
        public static let guestSync: UInt16 = 0x500
    }

    struct State {
        var bus: PortBus
        let serial: Serial16550
        let serialSink: any ByteSink
    }

    private let state: Mutex<State>

    /// A device the machine adds to the standard set (the PC platform's).
    public struct Extra {
        public var device: any PortDevice
        public var base: UInt16
        public var count: UInt16
        public init(_ device: any PortDevice, base: UInt16, count: UInt16) {
            self.device = device; self.base = base; self.count = count
        }
    }

    /// Builds the standard device set (COM1 UART, debug-exit port, i8042,
    /// POST port, guest sync port) plus `extras`; the UART's interrupt goes to `serialInterrupt`.
    public init(serialOutput: sending any ByteSink, serialInterrupt: sending any InterruptLine = NoInterruptLine(),
                extras: sending [Extra] = []) throws(MachineError) {
        let serial = Serial16550(output: serialOutput, interrupt: serialInterrupt)
        var bus = PortBus()
        do throws(PortBusError) {
            try bus.register(serial, base: Ports.com1, count: 8)
            try bus.register(DebugExitPort(), base: Ports.debugExit, count: 1)
            try bus.register(I8042Controller(), base: Ports.i8042, count: 5)
            try bus.register(PostCodePort(), base: Ports.postCode, count: 1)
            try bus.register(GuestSyncPort(), base: Ports.guestSync, count: 1)
            for extra in extras { try bus.register(extra.device, base: extra.base, count: extra.count) }
        } catch {
            throw .host("device wiring: \(error)")
        }
        state = Mutex(State(bus: bus, serial: serial, serialSink: serialOutput))
    }

    /// A port read; nil when nobody owns the port. `anomalies` gets what the
    /// device found odd about the access (reported as events by the caller).
    func read(port: UInt16, size: Int, anomalies: inout [DeviceAnomaly]) -> UInt32? {
        state.withLock { s in
            let value = s.bus.read(port: port, size: size)
            Self.drain(s.bus, port, into: &anomalies)
            return value
        }
    }

    /// A port write; nil when nobody owns the port.
    func write(port: UInt16, size: Int, value: UInt32, anomalies: inout [DeviceAnomaly]) -> DeviceEffect? {
        state.withLock { s in
            let effect = s.bus.write(port: port, size: size, value: value)
            Self.drain(s.bus, port, into: &anomalies)
            return effect
        }
    }

    private static func drain(_ bus: PortBus, _ port: UInt16, into anomalies: inout [DeviceAnomaly]) {
        guard let reporter = bus.owner(of: port) as? any AnomalyReporting else { return }
        let drained = reporter.drainAnomalies()
        anomalies += drained.anomalies
    }

    /// Runs `body` on the device of type `D` that owns `port`, under the
    /// device lock (the machine's own controls: sleep, wake); nil when the
    /// port has no such device.
    func withDevice<D: PortDevice, R: Sendable>(at port: UInt16, as type: D.Type, _ body: (D) -> R) -> R? {
        state.withLock { s -> R? in
            guard let device = s.bus.owner(of: port) as? D else { return nil }
            return body(device)
        }
    }

    /// Every stateful device's snapshot state, keyed by `PortBus.stateKey`
    /// (taken under the device lock, so the set is consistent).
    public func exportDeviceStates() -> [String: DeviceState] {
        state.withLock { $0.bus.exportDeviceStates() }
    }

    /// Restores states `exportDeviceStates` produced; all or nothing.
    public func importDeviceStates(_ states: [String: DeviceState]) throws(DeviceStateError) {
        try state.withLock { s throws(DeviceStateError) in try s.bus.importDeviceStates(states) }
    }

    /// Feeds host input (stdin) to the UART's receive FIFO.
    public func serialInput(_ bytes: [UInt8]) {
        state.withLock { $0.serial.enqueueInput(bytes) }
    }

    /// Bytes another console device (virtio-console) sends to the same
    /// output as the UART's.
    func writeConsoleOutput(_ bytes: [UInt8]) {
        state.withLock { state in
            for byte in bytes { state.serialSink.write(byte) }
        }
    }

    /// Makes all buffered guest output visible.
    public func flushOutput() {
        state.withLock { $0.serialSink.flush() }
    }
}
