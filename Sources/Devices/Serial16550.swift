// Serial16550.swift — a 16550A-compatible UART as a pure state machine: the
// eight registers at offsets 0–7, the divisor latch, a bounded receive queue
// fed by the host, the interrupt identification logic and the loopback mode.
//
// Transmission is instantaneous: a THR write goes straight to the sink, so
// the transmitter is always empty (LSR.THRE|TEMT) when the guest looks.
// Snapshots (`State`, at the end of this file) therefore hold no TX FIFO, and
// no LSR: the line status is derived from the receive queue. Line
// parameters (divisor, LCR) are stored for the guest to read back but never
// slow anything down. Behaviour follows what Linux's 8250 driver probes
// (autoconfig, the THRE startup test, the loopback MSR test) and QEMU's model.

/// A 16550A UART. Register it on a `PortBus` with count 8 (e.g. COM1 at 0x3F8).
public final class Serial16550: PortDevice {
    public let name = "serial16550"

    // Register offsets.
    private enum Offset {
        static let data: UInt16 = 0            // RBR (read) / THR (write); DLL when DLAB
        static let interruptEnable: UInt16 = 1 // IER; DLM when DLAB
        static let interruptID: UInt16 = 2     // IIR (read) / FCR (write)
        static let lineControl: UInt16 = 3     // LCR
        static let modemControl: UInt16 = 4    // MCR
        static let lineStatus: UInt16 = 5      // LSR
        static let modemStatus: UInt16 = 6     // MSR
        static let scratch: UInt16 = 7         // SCR
    }

    // Bits the model uses, named as in the 16550 data sheet.
    private enum IER {
        static let receivedData: UInt8 = 0x01
        static let thrEmpty: UInt8 = 0x02
        static let modemStatus: UInt8 = 0x08
        /// Bits 4–7 are zero on a 16550; Linux's autoconfig checks that.
        static let writable: UInt8 = 0x0F
    }
    private enum IIR {
        static let noInterrupt: UInt8 = 0x01
        static let modemStatus: UInt8 = 0x00
        static let thrEmpty: UInt8 = 0x02
        static let receivedData: UInt8 = 0x04
        static let fifoEnabled: UInt8 = 0xC0
    }
    private enum FCR {
        static let enable: UInt8 = 0x01
    }
    private enum LCR {
        static let dlab: UInt8 = 0x80
    }
    private enum MCR {
        static let dtr: UInt8 = 0x01
        static let rts: UInt8 = 0x02
        static let out1: UInt8 = 0x04
        static let out2: UInt8 = 0x08
        static let loopback: UInt8 = 0x10
        static let writable: UInt8 = 0x1F
    }
    private enum LSR {
        static let dataReady: UInt8 = 0x01
        static let thrEmpty: UInt8 = 0x20
        static let transmitterEmpty: UInt8 = 0x40
    }
    private enum MSR {
        static let deltaCTS: UInt8 = 0x01
        static let deltaDSR: UInt8 = 0x02
        static let trailingEdgeRI: UInt8 = 0x04
        static let deltaDCD: UInt8 = 0x08
        static let cts: UInt8 = 0x10
        static let dsr: UInt8 = 0x20
        static let ri: UInt8 = 0x40
        static let dcd: UInt8 = 0x80
        /// Outside loopback the "other end" is a terminal that is always there.
        static let connected: UInt8 = dcd | dsr | cts
    }

    /// Default receive queue size: room for a pasted script without letting a
    /// flooding host grow memory without bound.
    public static let defaultInputCapacity = 64 * 1024

    private let output: any ByteSink
    private let interrupt: any InterruptLine

    // Guest-visible registers. Reset values are those firmware leaves behind
    // (as in QEMU / vm-superio): 9600 baud, 8N1, OUT2 set.
    private var divisorLow: UInt8 = 0x0C
    private var divisorHigh: UInt8 = 0x00
    private var interruptEnable: UInt8 = 0
    private var fifoControl: UInt8 = 0
    private var lineControl: UInt8 = 0x03
    private var modemControl: UInt8 = MCR.out2
    private var scratch: UInt8 = 0

    /// Modem-status inputs (MSR bits 4–7) as last seen, and the latched
    /// change bits (MSR bits 0–3) not yet read by the guest.
    private var modemInputs: UInt8 = MSR.connected
    private var modemDeltas: UInt8 = 0

    /// THR-empty interrupt condition. Unlike the others it is an event, not
    /// a level: set when THR empties or its enable bit goes 0→1, cleared by
    /// reading IIR while it is the reported source, or by writing THR.
    private var thrEmptyPending = false

    /// Host → guest bytes. Stands for both the host side of the line and the
    /// UART's receive FIFO; see `write(FCR)` for why FIFO resets keep it.
    private var input: ByteRing

    /// Bytes dropped because the receive queue was full (host input or
    /// loopback). Never reset: a diagnostic counter.
    public private(set) var droppedInputBytes: Int = 0

    /// Current level of the interrupt line, as last passed to `setLevel`.
    public private(set) var interruptLevel = false

    public init(
        output: any ByteSink,
        interrupt: any InterruptLine = NoInterruptLine(),
        inputCapacity: Int = Serial16550.defaultInputCapacity
    ) {
        self.output = output
        self.interrupt = interrupt
        self.input = ByteRing(capacity: inputCapacity)
    }

    // MARK: - Host side

    /// Queues bytes for the guest to read. Bytes that do not fit are dropped
    /// and counted in `droppedInputBytes`.
    public func enqueueInput(_ bytes: [UInt8]) {
        for byte in bytes {
            receive(byte)
        }
        updateInterruptLine()
    }

    /// Bytes waiting for the guest to read.
    public var pendingInputCount: Int { input.count }

    /// The programmed baud-rate divisor (DLM:DLL).
    public var divisor: UInt16 { UInt16(divisorHigh) << 8 | UInt16(divisorLow) }

    // MARK: - Guest side

    /// Byte register: wider accesses act on the addressed byte and return it
    /// zero-extended (what Linux and firmware do anyway is byte access).
    public func read(offset: UInt16, size: Int) -> UInt32 {
        UInt32(readRegister(offset))
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        writeRegister(offset, UInt8(truncatingIfNeeded: value))
        return .none
    }

    private var dlab: Bool { lineControl & LCR.dlab != 0 }
    private var loopback: Bool { modemControl & MCR.loopback != 0 }

    private func readRegister(_ offset: UInt16) -> UInt8 {
        switch offset {
        case Offset.data:
            if dlab { return divisorLow }
            // Reading an empty RBR returns 0 rather than stale data.
            let byte = input.popFirst() ?? 0
            updateInterruptLine()
            return byte
        case Offset.interruptEnable:
            return dlab ? divisorHigh : interruptEnable
        case Offset.interruptID:
            let id = pendingInterruptID
            // Reading IIR acknowledges a THR-empty interrupt it reports.
            if id == IIR.thrEmpty {
                thrEmptyPending = false
                updateInterruptLine()
            }
            return id | (fifoControl & FCR.enable != 0 ? IIR.fifoEnabled : 0)
        case Offset.lineControl:
            return lineControl
        case Offset.modemControl:
            return modemControl
        case Offset.lineStatus:
            // No errors, breaks or overruns are modelled: host input that
            // does not fit is counted in droppedInputBytes instead.
            var status = LSR.thrEmpty | LSR.transmitterEmpty
            if !input.isEmpty { status |= LSR.dataReady }
            return status
        case Offset.modemStatus:
            // Reading MSR clears the change bits (and the interrupt they cause).
            let status = modemInputs | modemDeltas
            if modemDeltas != 0 {
                modemDeltas = 0
                updateInterruptLine()
            }
            return status
        case Offset.scratch:
            return scratch
        default:
            // Only reachable if registered with count > 8: open bus.
            return 0xFF
        }
    }

    private func writeRegister(_ offset: UInt16, _ value: UInt8) {
        switch offset {
        case Offset.data:
            if dlab {
                divisorLow = value
            } else {
                transmit(value)
            }
        case Offset.interruptEnable:
            if dlab {
                divisorHigh = value
            } else {
                let newValue = value & IER.writable
                // Enabling the THR-empty interrupt while THR is empty (always,
                // here) makes it pending at once; Linux's startup THRE test
                // relies on that. Disabling drops it, as QEMU does.
                if (interruptEnable ^ newValue) & IER.thrEmpty != 0 {
                    thrEmptyPending = newValue & IER.thrEmpty != 0
                }
                interruptEnable = newValue
                updateInterruptLine()
            }
        case Offset.interruptID:
            // FCR. Only the enable bit is guest-visible (IIR bits 6–7). The
            // clear-FIFO bits do not discard queued input: the queue also
            // stands for the host side of the line, and dropping bytes the
            // user already typed or piped helps no one. Trigger levels are
            // moot because RX interrupts fire as soon as a byte is there.
            fifoControl = value
        case Offset.lineControl:
            lineControl = value
        case Offset.modemControl:
            modemControl = value & MCR.writable
            updateModemInputs()
        case Offset.lineStatus, Offset.modemStatus:
            // Read-only status registers: writes are ignored, as on hardware.
            break
        case Offset.scratch:
            scratch = value
        default:
            break
        }
    }

    /// Sends one byte: to the sink, or back to the receiver in loopback mode.
    private func transmit(_ byte: UInt8) {
        // Writing THR clears a pending THR-empty interrupt; the byte then
        // leaves at once and THR is empty again, so it becomes pending anew.
        // Updating the line in between gives edge-triggered PIC inputs a fresh
        // edge per byte, as with QEMU's UART.
        thrEmptyPending = false
        updateInterruptLine()
        if loopback {
            receive(byte)
        } else {
            output.write(byte)
        }
        thrEmptyPending = true
        updateInterruptLine()
    }

    private func receive(_ byte: UInt8) {
        if !input.append(byte) {
            droppedInputBytes += 1
        }
    }

    /// In loopback mode the modem inputs are wired to the modem outputs
    /// (DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD); otherwise a terminal is always
    /// connected. Changes latch the MSR delta bits as on the 16550.
    private func updateModemInputs() {
        let inputs = Self.modemInputs(for: modemControl)
        let changed = inputs ^ modemInputs
        if changed & MSR.cts != 0 { modemDeltas |= MSR.deltaCTS }
        if changed & MSR.dsr != 0 { modemDeltas |= MSR.deltaDSR }
        // RI reports only its trailing (1 → 0) edge.
        if changed & MSR.ri != 0 && inputs & MSR.ri == 0 { modemDeltas |= MSR.trailingEdgeRI }
        if changed & MSR.dcd != 0 { modemDeltas |= MSR.deltaDCD }
        modemInputs = inputs
        updateInterruptLine()
    }

    /// MSR bits 4–7 for a given MCR (see `updateModemInputs`).
    private static func modemInputs(for modemControl: UInt8) -> UInt8 {
        guard modemControl & MCR.loopback != 0 else { return MSR.connected }
        var inputs: UInt8 = 0
        if modemControl & MCR.dtr != 0 { inputs |= MSR.dsr }
        if modemControl & MCR.rts != 0 { inputs |= MSR.cts }
        if modemControl & MCR.out1 != 0 { inputs |= MSR.ri }
        if modemControl & MCR.out2 != 0 { inputs |= MSR.dcd }
        return inputs
    }

    // MARK: - Interrupts

    /// The highest-priority enabled pending interrupt, as IIR bits 0–3.
    /// Receiver line status (priority 1) never occurs: no errors are modelled.
    private var pendingInterruptID: UInt8 {
        if interruptEnable & IER.receivedData != 0 && !input.isEmpty {
            return IIR.receivedData
        }
        if interruptEnable & IER.thrEmpty != 0 && thrEmptyPending {
            return IIR.thrEmpty
        }
        if interruptEnable & IER.modemStatus != 0 && modemDeltas != 0 {
            return IIR.modemStatus
        }
        return IIR.noInterrupt
    }

    /// Drives the line from the interrupt state. Not gated by MCR.OUT2 (which
    /// on a PC routes the UART IRQ): QEMU and Firecracker do not gate either,
    /// so guests tested there work here.
    private func updateInterruptLine() {
        let level = pendingInterruptID != IIR.noInterrupt
        if level != interruptLevel {
            interruptLevel = level
            interrupt.setLevel(level)
        }
    }
}

// MARK: - Snapshot state

extension Serial16550: StatefulDevice {
    /// Everything a guest can observe. LSR and IIR are not stored: both are
    /// computed from these fields (the transmitter is always empty, see the
    /// file header), as is the interrupt line's level.
    public struct State: Codable, Sendable, Equatable {
        public var divisorLow: UInt8
        public var divisorHigh: UInt8
        public var interruptEnable: UInt8
        public var fifoControl: UInt8
        public var lineControl: UInt8
        public var modemControl: UInt8
        public var scratch: UInt8
        /// MSR bits 4–7 as last seen and the unread change bits 0–3.
        public var modemInputs: UInt8
        public var modemDeltas: UInt8
        public var thrEmptyPending: Bool
        /// The receive queue, oldest byte first.
        public var receiveQueue: [UInt8]
        public var droppedInputBytes: Int
    }

    public func exportState() -> State {
        State(divisorLow: divisorLow, divisorHigh: divisorHigh, interruptEnable: interruptEnable,
              fifoControl: fifoControl, lineControl: lineControl, modemControl: modemControl, scratch: scratch,
              modemInputs: modemInputs, modemDeltas: modemDeltas, thrEmptyPending: thrEmptyPending,
              receiveQueue: input.contents, droppedInputBytes: droppedInputBytes)
    }

    /// Refuses bits the registers cannot hold, modem inputs that contradict
    /// MCR (loopback wiring or the always-connected terminal), and a receive
    /// queue longer than this UART's capacity.
    public func importState(_ state: State) throws(DeviceStateError) {
        try DeviceStateError.checkBits(state.interruptEnable, allowed: IER.writable, device: name, field: "interruptEnable")
        try DeviceStateError.checkBits(state.modemControl, allowed: MCR.writable, device: name, field: "modemControl")
        try DeviceStateError.checkBits(state.modemDeltas, allowed: 0x0F, device: name, field: "modemDeltas")
        let expectedInputs = Self.modemInputs(for: state.modemControl)
        guard state.modemInputs == expectedInputs else {
            throw DeviceStateError(device: name, field: "modemInputs",
                                   "0x\(String(state.modemInputs, radix: 16)) contradicts MCR (expected 0x\(String(expectedInputs, radix: 16)))")
        }
        guard state.receiveQueue.count <= input.capacity else {
            throw DeviceStateError(device: name, field: "receiveQueue",
                                   "\(state.receiveQueue.count) bytes, more than the capacity of \(input.capacity)")
        }
        guard state.droppedInputBytes >= 0 else {
            throw DeviceStateError(device: name, field: "droppedInputBytes", "is negative")
        }
        divisorLow = state.divisorLow
        divisorHigh = state.divisorHigh
        interruptEnable = state.interruptEnable
        fifoControl = state.fifoControl
        lineControl = state.lineControl
        modemControl = state.modemControl
        scratch = state.scratch
        modemInputs = state.modemInputs
        modemDeltas = state.modemDeltas
        thrEmptyPending = state.thrEmptyPending
        input = ByteRing(capacity: input.capacity, contents: state.receiveQueue)
        droppedInputBytes = state.droppedInputBytes
        updateInterruptLine()
    }

    public static func erase(_ state: State) -> DeviceState { .serial16550(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .serial16550(typed) = state { return typed }
        return nil
    }
}

/// Bounded FIFO of bytes. An array consumed from a moving head and compacted
/// when the consumed prefix dominates: amortised O(1), storage grows only as
/// input arrives (an idle UART costs nothing) and stays under 2 × capacity.
struct ByteRing {
    private var storage: [UInt8] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) {
        // At least one byte so a careless capacity cannot make input vanish.
        self.capacity = max(1, capacity)
    }

    /// The queued bytes, oldest first.
    var contents: [UInt8] { Array(storage[head...]) }

    /// A ring holding `bytes` (the caller checked they fit).
    init(capacity: Int, contents bytes: [UInt8]) {
        self.init(capacity: capacity)
        storage = bytes
    }

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }

    /// Appends `byte`; false (and no change) when full.
    mutating func append(_ byte: UInt8) -> Bool {
        guard count < capacity else { return false }
        storage.append(byte)
        return true
    }

    mutating func popFirst() -> UInt8? {
        guard head < storage.count else { return nil }
        let byte = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 4096 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return byte
    }
}
