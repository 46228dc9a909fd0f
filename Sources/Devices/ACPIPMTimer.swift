// ACPIPMTimer.swift — the ACPI power-management I/O block a FADT points at:
// the PM timer (a free-running 24-bit counter at 3.579545 MHz, the clock
// kernels calibrate the TSC and APIC timer against) and the minimal PM1a
// event and control registers an OS touches when it takes over ACPI.
//
// Layout (QEMU's q35 uses the same base, 0x600):
//   0x600  PM1a_STS (16 bit, write 1 to clear)   0x602  PM1a_EN (16 bit)
//   0x604  PM1a_CNT (16 bit)                     0x606  reserved (reads 0)
//   0x608  PM_TMR   (32-bit read; 24 significant bits, TMR_VAL_EXT clear)
//
// The FADT has SMI_CMD = 0 (no SMM mode switch), which per the ACPI spec
// means the platform is always in ACPI mode: SCI_EN reads 1 from reset, so an
// OS's "enable ACPI" step finds it done. No SCI is ever raised.

/// Port assignments of the ACPI PM block; `ACPITableSet` writes these into the FADT.
public enum ACPIPMPorts {
    public static let pm1aEventBlock: UInt16 = 0x600
    public static let pm1EventLength: UInt8 = 4
    public static let pm1aControlBlock: UInt16 = 0x604
    public static let pm1ControlLength: UInt8 = 2
    public static let timer: UInt16 = 0x608
    public static let timerLength: UInt8 = 4
    /// The PM1 event and control registers as one `ACPIPM1Registers` device.
    public static let pm1RegistersCount: UInt16 = 8
}

/// The ACPI PM timer. Register at `ACPIPMPorts.timer` (0x608), count 4.
///
/// The counter is `floor(ns × 3_579_545 / 10^9) mod 2^24`, where `ns` comes
/// from the injected monotonic clock (nanoseconds since the machine started is
/// the natural choice). Guests read it with a 4-byte `in`; 1- and 2-byte
/// reads, or reads at offsets 1–3, return the bytes of the 32-bit value at
/// that position (like a little-endian register) and are recorded as
/// anomalies. Writes are ignored and recorded.
public final class ACPIPMTimer: PortDevice, AnomalyReporting {
    public let name = "acpi-pm-timer"

    /// Ticks per second.
    public static let frequency: UInt64 = 3_579_545
    /// 24-bit counter, as QEMU provides: FADT flag TMR_VAL_EXT is clear.
    public static let counterBits = 24
    public static let counterMask: UInt32 = (1 << 24) - 1

    public private(set) var anomalies = DeviceAnomalyLog()
    private let clock: @Sendable () -> UInt64
    /// Added (wrapping) to the clock's ticks. Zero until a snapshot is
    /// imported, which sets it so the counter continues from the saved value.
    private var tickBase: UInt64 = 0

    /// `clock`: monotonic nanoseconds.
    public init(clock: @escaping @Sendable () -> UInt64) {
        self.clock = clock
    }

    /// Ticks since the clock's zero (plus the base a restore set), not
    /// wrapped to 24 bits.
    public func ticks() -> UInt64 {
        Self.ticks(atNanoseconds: clock()) &+ tickBase
    }

    /// The product needs up to 86 bits, so it is formed at full width; the
    /// quotient is at most `ns`.

    public static func ticks(atNanoseconds ns: UInt64) -> UInt64 {
        let product = ns.multipliedFullWidth(by: frequency)
        // product.high < frequency < 10^9, so the quotient fits: no trap.
        return UInt64(1_000_000_000).dividingFullWidth(product).quotient
    }

    /// What a 4-byte read returns now.
    public var counter: UInt32 {
        UInt32(truncatingIfNeeded: ticks()) & Self.counterMask
    }

    public func drainAnomalies() -> (anomalies: [DeviceAnomaly], dropped: Int) {
        anomalies.drain()
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        let value = counter
        if size == 4 && offset == 0 { return value }
        anomalies.record(DeviceAnomaly(device: name, kind: .unsupportedAccess, offset: offset,
                                       size: size, isWrite: false, value: 0))
        let shift = 8 * UInt32(min(offset, 4))
        return (value >> shift) & accessMask(size: size)
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        anomalies.record(DeviceAnomaly(device: name, kind: .writeIgnored, offset: offset,
                                       size: size, isWrite: true, value: value & accessMask(size: size)))
        return .none
    }
}

extension ACPIPMTimer: StatefulDevice {
    /// The unwrapped tick count at export. Importing rebases the counter on
    /// the importing machine's clock so that it continues from this value:
    /// it never goes backwards across a restore, whatever the new clock reads.
    /// The time a snapshot spends on disk does not count (like a paused VM).
    public struct State: Codable, Sendable, Equatable {
        public var ticks: UInt64
    }

    public func exportState() -> State { State(ticks: ticks()) }

    /// Every tick count is a possible state: nothing to refuse.
    public func importState(_ state: State) throws(DeviceStateError) {
        tickBase = state.ticks &- Self.ticks(atNanoseconds: clock())
    }

    public static func erase(_ state: State) -> DeviceState { .acpiPMTimer(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .acpiPMTimer(typed) = state { return typed }
        return nil
    }
}

/// PM1a event (status + enable) and control registers. Register at
/// `ACPIPMPorts.pm1aEventBlock` (0x600), count 8; offsets 0 = PM1_STS,
/// 2 = PM1_EN, 4 = PM1_CNT, 6 = reserved.
///
/// Accesses of any width and alignment work byte-lane by byte-lane on the
/// 16-bit registers (a 4-byte read at 0 returns STS | EN << 16).
///
/// PM1_CNT with SLP_EN decodes SLP_TYP as QEMU's `acpi_pm1_cnt_write`
/// (hw/acpi/core.c) and the DSDT's `\_S3`/`\_S5` do: 0 is soft-off (S5,
/// `.powerOff`), 1 is suspend to RAM (S3, `.suspendToRAM`); other sleep types
/// are not emulated (recorded). `wake(byRTC:)` is the register side of QEMU's
/// wake-up: a system reset of the block, then WAK_STS (and RTC_STS).
public final class ACPIPM1Registers: PortDevice, AnomalyReporting {
    public let name = "acpi-pm1"

    /// PM1 status / enable bits.
    public enum Event {
        public static let timer: UInt16 = 1 << 0        // TMR_STS / TMR_EN
        public static let globalLock: UInt16 = 1 << 5   // GBL_STS / GBL_EN
        public static let powerButton: UInt16 = 1 << 8  // PWRBTN_STS / _EN
        public static let rtcAlarm: UInt16 = 1 << 10    // RTC_STS / RTC_EN
        public static let wake: UInt16 = 1 << 15        // WAK_STS
        public static let enableWritable: UInt16 = timer | globalLock | powerButton | rtcAlarm
    }

    /// PM1 control bits.
    public enum Control {
        public static let sciEnable: UInt16 = 1 << 0
        public static let busMasterReload: UInt16 = 1 << 1
        public static let globalRelease: UInt16 = 1 << 2
        public static let sleepTypeShift: UInt16 = 10
        public static let sleepTypeMask: UInt16 = 0x7 << 10
        public static let sleepEnable: UInt16 = 1 << 13
        /// SLP_TYP value our DSDT gives `\_S5`.
        public static let softOffType: UInt8 = 0
        /// SLP_TYP value our DSDT gives `\_S3` (QEMU's encoding).
        public static let suspendToRAMType: UInt8 = 1
        /// BM_RLD and SLP_TYP keep what is written; GBL_RLS and SLP_EN are
        /// write-only strobes; SCI_EN is fixed at 1 (see the file header).
        public static let storedBits: UInt16 = busMasterReload | sleepTypeMask
    }

    public private(set) var anomalies = DeviceAnomalyLog()
    /// The last sleep type requested with SLP_EN, if any.
    public private(set) var lastSleepRequest: UInt8?

    private let timer: ACPIPMTimer?
    private var enable: UInt16 = 0
    private var control: UInt16 = Control.sciEnable
    /// TMR_STS starts set: QEMU's PM-timer reset leaves its overflow time at
    /// 0, so PM1_STS reads 0x0001 at boot (QEMU 7.2 with SeaBIOS) until cleared.
    private var statusLatched: UInt16 = Event.timer
    /// TMR_STS is set when counter bit 23 toggles: the value of
    /// `ticks >> 23` when the guest last cleared it.
    private var timerEpoch: UInt64

    /// `timer`: the PM timer whose bit-23 toggles set TMR_STS (nil: never set).
    public init(timer: ACPIPMTimer?) {
        self.timer = timer
        timerEpoch = (timer?.ticks() ?? 0) >> 23
    }

    public func drainAnomalies() -> (anomalies: [DeviceAnomaly], dropped: Int) {
        anomalies.drain()
    }

    /// PM1_STS as the guest reads it.
    public var status: UInt16 {
        var value = statusLatched
        if let timer, timer.ticks() >> 23 != timerEpoch { value |= Event.timer }
        return value
    }

    public func read(offset: UInt16, size: Int) -> UInt32 {
        var result: UInt32 = 0
        for lane in 0..<Self.laneCount(size) {
            let byteOffset = Int(offset) + lane
            let register = registerValue(byteOffset / 2)
            let byte = byteOffset % 2 == 0 ? register : register >> 8
            result |= UInt32(UInt8(truncatingIfNeeded: byte)) << (8 * UInt32(lane))
        }
        return result
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        // Gather the bytes per register first so a 16-bit SLP_TYP|SLP_EN
        // write acts once, with both bytes.
        var writes: [Int: (value: UInt16, mask: UInt16)] = [:]
        for lane in 0..<Self.laneCount(size) {
            let byteOffset = Int(offset) + lane
            let byte = UInt16(UInt8(truncatingIfNeeded: value >> (8 * UInt32(lane))))
            let shift: UInt16 = byteOffset % 2 == 0 ? 0 : 8
            let previous = writes[byteOffset / 2] ?? (value: 0, mask: 0)
            writes[byteOffset / 2] = (value: previous.value | byte << shift, mask: previous.mask | 0xFF << shift)
        }
        var effect = DeviceEffect.none
        for register in writes.keys.sorted() {
            guard let write = writes[register] else { continue }
            let registerEffect = writeRegister(register, value: write.value, mask: write.mask,
                                               offset: offset, size: size, raw: value)
            if registerEffect != .none { effect = registerEffect }
        }
        return effect
    }

    /// Whether the guest armed the RTC alarm as a wake source (PM1_EN.RTC_EN;
    /// QEMU's `qemu_system_wakeup_enable(QEMU_WAKEUP_REASON_RTC, ...)`).
    public var rtcWakeEnabled: Bool { enable & Event.rtcAlarm != 0 }

    /// The machine woke from S3: the block is reset as on QEMU's system reset
    /// (PM1_EN cleared, PM1_CNT back to SCI_EN, PM1_STS cleared — but QEMU's
    /// PM-timer reset leaves its overflow time at 0, so TMR_STS reads set
    /// until cleared), then WAK_STS is set, with RTC_STS when the RTC alarm
    /// was the wake source (QEMU's `acpi_notify_wakeup`). QEMU 7.2 under
    /// SeaBIOS reads PM1_STS 0x8401 after an RTC wake.
    public func wake(byRTC: Bool) {
        enable = 0
        control = Control.sciEnable
        statusLatched = Event.wake | Event.timer | (byRTC ? Event.rtcAlarm : 0)
    }

    private func registerValue(_ register: Int) -> UInt16 {
        switch register {
        case 0: return status
        case 1: return enable
        case 2: return control
        default: return 0
        }
    }

    private func writeRegister(_ register: Int, value: UInt16, mask: UInt16,
                               offset: UInt16, size: Int, raw: UInt32) -> DeviceEffect {
        switch register {
        case 0:
            // Write 1 to clear.
            let clear = value & mask
            statusLatched &= ~clear
            if clear & Event.timer != 0, let timer { timerEpoch = timer.ticks() >> 23 }
            return .none
        case 1:
            enable = (enable & ~mask) | (value & mask & Event.enableWritable)
            return .none
        case 2:
            let stored = Control.storedBits & mask
            control = (control & ~stored) | (value & stored) | Control.sciEnable
            guard mask & Control.sleepEnable != 0, value & Control.sleepEnable != 0 else { return .none }
            let type = UInt8((control & Control.sleepTypeMask) >> Control.sleepTypeShift)
            lastSleepRequest = type
            if type == Control.softOffType { return .powerOff }
            if type == Control.suspendToRAMType { return .suspendToRAM }
            anomalies.record(DeviceAnomaly(device: name, kind: .sleepNotSupported(slpTyp: type),
                                           offset: offset, size: size, isWrite: true, value: raw))
            return .none
        default:
            anomalies.record(DeviceAnomaly(device: name, kind: .writeIgnored, offset: offset,
                                           size: size, isWrite: true, value: raw))
            return .none
        }
    }

    /// Port accesses are 1, 2 or 4 bytes; anything else counts as 4. Bytes
    /// past the block read 0 and writes to them are ignored.
    private static func laneCount(_ size: Int) -> Int {
        size == 1 || size == 2 ? size : 4
    }
}

extension ACPIPM1Registers: StatefulDevice {
    /// PM1 registers. `timerEpoch` is in the PM timer's tick domain, which a
    /// restore continues (see `ACPIPMTimer.State`), so it is saved as is.
    public struct State: Codable, Sendable, Equatable {
        public var enable: UInt16
        public var control: UInt16
        /// PM1_STS bits latched (TMR_STS from the timer is added on reads).
        public var statusLatched: UInt16
        public var timerEpoch: UInt64
        public var lastSleepRequest: UInt8?
    }

    public func exportState() -> State {
        State(enable: enable, control: control, statusLatched: statusLatched,
              timerEpoch: timerEpoch, lastSleepRequest: lastSleepRequest)
    }

    /// Refuses bits the registers never hold (SCI_EN is always set) and a
    /// sleep type wider than SLP_TYP's three bits.
    public func importState(_ state: State) throws(DeviceStateError) {
        try DeviceStateError.checkBits(state.enable, allowed: Event.enableWritable, device: name, field: "enable")
        try DeviceStateError.checkBits(state.control, allowed: Control.storedBits | Control.sciEnable, device: name, field: "control")
        guard state.control & Control.sciEnable != 0 else {
            throw DeviceStateError(device: name, field: "control", "SCI_EN is clear (it always reads 1)")
        }
        try DeviceStateError.checkBits(state.statusLatched, allowed: Event.enableWritable | Event.wake,
                                       device: name, field: "statusLatched")
        if let type = state.lastSleepRequest, type > 7 {
            throw DeviceStateError(device: name, field: "lastSleepRequest", "\(type) does not fit SLP_TYP (0–7)")
        }
        enable = state.enable
        control = state.control
        statusLatched = state.statusLatched
        timerEpoch = state.timerEpoch
        lastSleepRequest = state.lastSleepRequest
    }

    public static func erase(_ state: State) -> DeviceState { .acpiPM1(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .acpiPM1(typed) = state { return typed }
        return nil
    }
}
