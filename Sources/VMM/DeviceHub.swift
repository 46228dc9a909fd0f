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

    /// Builds the standard device set: COM1 UART, debug-exit port, i8042, POST port.
    public init(serialOutput: sending any ByteSink) throws(MachineError) {
        let serial = Serial16550(output: serialOutput)
        var bus = PortBus()
        do throws(PortBusError) {
            try bus.register(serial, base: Ports.com1, count: 8)
            try bus.register(DebugExitPort(), base: Ports.debugExit, count: 1)
            try bus.register(I8042Controller(), base: Ports.i8042, count: 5)
            try bus.register(PostCodePort(), base: Ports.postCode, count: 1)
            try bus.register(GuestSyncPort(), base: Ports.guestSync, count: 1)
        } catch {
            throw .host("device wiring: \(error)")
        }
        state = Mutex(State(bus: bus, serial: serial, serialSink: serialOutput))
    }

    /// A port read; nil when nobody owns the port.
    func read(port: UInt16, size: Int) -> UInt32? {
        state.withLock { $0.bus.read(port: port, size: size) }
    }

    /// A port write; nil when nobody owns the port.
    func write(port: UInt16, size: Int, value: UInt32) -> DeviceEffect? {
        state.withLock { $0.bus.write(port: port, size: size, value: value) }
    }

    /// Feeds host input (stdin) to the UART's receive FIFO.
    public func serialInput(_ bytes: [UInt8]) {
        state.withLock { $0.serial.enqueueInput(bytes) }
    }

    /// Makes all buffered guest output visible.
    public func flushOutput() {
        state.withLock { $0.serialSink.flush() }
    }
}
