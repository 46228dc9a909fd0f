// RTCCMOS.swift — the MC146818 real-time clock and its CMOS memory behind
// ports 0x70 (index, bit 7 = NMI disable) and 0x71 (data), as a pure state
// machine over an injected wall clock (Unix seconds).
//
// What guests see:
//   - time registers 0x00/02/04/06/07/08/09 and century 0x32 computed from the
//     clock at every read, BCD or binary (register B bit 2), 24 h or 12 h with
//     bit 7 = PM (register B bit 1);
//   - register A's UIP flag (bit 7) rises on the first register-A read that
//     sees a new second and falls on the next read: loops that wait for an
//     update edge end right at a second boundary, deterministically, without
//     a sub-second clock;
//   - register C's UF flag (bit 4) is set when the second changed since the
//     last C read; AF (bit 5) when a second that matched the alarm registers
//     1/3/5 passed since then (a byte with bits 7–6 set, >= 0xC0, matches any
//     value, as in QEMU's check_alarm); C clears on read; IRQF (bit 7) when a
//     flag and its enable (UIE, AIE) are both on. The periodic flag is never
//     set and no IRQ 8 is raised: the alarm is seen by polling C, or wakes the
//     machine from S3 (`advanceAlarm`, with AIE on, as QEMU's
//     rtc_update_timer requests a wake-up);
//   - register D reads 0x80 (valid RAM and time);
//   - guest time writes move an offset over the host clock (immediately, or
//     when register B's SET bit is cleared again, as the chip commits them);
//   - CMOS bytes 0x0E–0x7F are plain memory, preset with QEMU's memory-size
//     and CPU-count bytes (hw/i386/pc.c pc_cmos_init, rtc_set_cpus_count);
//     the machine writes the shutdown status 0x0F on S3 (`setCMOS`);
//   - `systemReset` does what QEMU's rtc_reset does on a system reset.

/// MC146818 RTC + CMOS. Register at base `RTCCMOS.basePort` (0x70), count 2.
///
/// Multi-byte accesses are split into byte accesses to consecutive ports, as
/// QEMU's memory core does for this 1-byte device (`outw 0x70` writes the
/// index then the data); bytes past port 0x71 read 0xFF and writes are dropped.
public final class RTCCMOS: PortDevice, AnomalyReporting {
    public let name = "rtc-cmos"

    public static let basePort: UInt16 = 0x70
    public static let portCount: UInt16 = 2

    /// RAM up to this address is reported as below 4 GiB; the rest as above
    /// 4 GiB, where Deflect maps it as QEMU does (Loader's PlatformMemoryLayout).
    public static let lowMemoryLimit: UInt64 = 0xC000_0000

    /// CMOS register indexes.
    public enum Register {
        public static let seconds: UInt8 = 0x00
        public static let secondsAlarm: UInt8 = 0x01
        public static let minutes: UInt8 = 0x02
        public static let minutesAlarm: UInt8 = 0x03
        public static let hours: UInt8 = 0x04
        public static let hoursAlarm: UInt8 = 0x05
        public static let weekday: UInt8 = 0x06
        public static let dayOfMonth: UInt8 = 0x07
        public static let month: UInt8 = 0x08
        public static let year: UInt8 = 0x09
        public static let a: UInt8 = 0x0A
        public static let b: UInt8 = 0x0B
        public static let c: UInt8 = 0x0C
        public static let d: UInt8 = 0x0D
        /// Shutdown status byte: 0xFE while suspended to RAM (QEMU's
        /// pc_cmos_set_s3_resume), cleared by the firmware on resume.
        public static let shutdownStatus: UInt8 = 0x0F
        public static let century: UInt8 = 0x32
    }

    /// Register bits.
    public enum Bits {
        public static let aUpdateInProgress: UInt8 = 0x80
        /// Divider bits 4–6 = 010: the 32.768 kHz time base runs.
        public static let aDividerMask: UInt8 = 0x70
        public static let aDividerNormal: UInt8 = 0x20
        public static let bSet: UInt8 = 0x80
        public static let bPeriodicInterruptEnable: UInt8 = 0x40
        public static let bAlarmInterruptEnable: UInt8 = 0x20
        public static let bUpdateInterruptEnable: UInt8 = 0x10
        public static let bSquareWaveEnable: UInt8 = 0x08
        public static let bBinary: UInt8 = 0x04
        public static let b24Hour: UInt8 = 0x02
        public static let cIRQF: UInt8 = 0x80
        public static let cAlarm: UInt8 = 0x20
        public static let cUpdateEnded: UInt8 = 0x10
        /// An alarm byte with both top bits set matches every value.
        public static let alarmDontCare: UInt8 = 0xC0
        public static let dValidRAM: UInt8 = 0x80
        public static let hourPM: UInt8 = 0x80
    }

    /// Guest accesses that got a fallback answer.
    public private(set) var anomalies = DeviceAnomalyLog()
    /// Bit 7 of the last index write: NMIs masked (only remembered).
    public private(set) var nmiDisabled = false
    /// The selected CMOS index (0–0x7F).
    public private(set) var index: UInt8 = 0

    private let wallClock: @Sendable () -> Int64
    /// Guest-set time minus host time, in seconds.
    private var offset: Int64 = 0
    private var memory = [UInt8](repeating: 0, count: 128)
    /// Register A without UIP (bit 7 is computed), B as written.
    private var registerA: UInt8 = 0x26
    private var registerB: UInt8 = Bits.b24Hour
    /// The second the last register-A / register-C read saw.
    private var secondSeenByA: Int64
    private var secondSeenByC: Int64
    /// While B.SET is on, time writes collect here and are committed on clear.
    private var staged: CalendarTime?
    /// The last second checked against the alarm registers.
    private var alarmCheckedUpTo: Int64
    /// AF latched by an alarm match, until register C is read.
    private var latchedAlarm = false

    /// `memorySize`: guest RAM in bytes (below the hole, then from 4 GiB). `cpuCount`: boot
    /// vCPUs (byte 0x5F = count − 1; 0 when above 256, as QEMU does).
    /// `wallClock`: Unix seconds (UTC); the RTC runs in UTC like QEMU's default.
    public init(memorySize: UInt64, cpuCount: Int, wallClock: @escaping @Sendable () -> Int64) {
        self.wallClock = wallClock
        let now = CalendarTime.clampedSeconds(wallClock())
        secondSeenByA = now
        secondSeenByC = now
        alarmCheckedUpTo = now
        Self.presetMemory(&memory, memorySize: memorySize, cpuCount: cpuCount)
    }

    public func drainAnomalies() -> (anomalies: [DeviceAnomaly], dropped: Int) {
        anomalies.drain()
    }

    /// The byte at a CMOS index as the guest would read it, without side
    /// effects on register C or UIP (for diagnostics and tests).
    public func peek(_ register: UInt8) -> UInt8 {
        let reg = register & 0x7F
        switch reg {
        case Register.a: return registerA
        case Register.b: return registerB
        case Register.c: return 0
        case Register.d: return Bits.dValidRAM
        default:
            if let value = timeRegisterValue(reg) { return value }
            return memory[Int(reg)]
        }
    }

    // MARK: - Machine-side controls

    /// Whether register B's AIE bit is on (an alarm then requests a wake-up).
    public var alarmInterruptEnabled: Bool { registerB & Bits.bAlarmInterruptEnable != 0 }

    /// Checks the seconds that passed since the last check against the alarm
    /// registers; true when one matched (AF is then latched for register C).
    /// The machine calls it to poll for an RTC wake while suspended.
    @discardableResult
    public func advanceAlarm() -> Bool {
        let now = currentSeconds()
        defer { alarmCheckedUpTo = now }
        guard clockRunning, now > alarmCheckedUpTo else { return false }
        // A day covers every alarm value: longer gaps need no more checks.
        let first = max(alarmCheckedUpTo + 1, now - 86_399)
        guard (first...now).contains(where: alarmMatches) else { return false }
        latchedAlarm = true
        return true
    }

    /// Writes a CMOS memory byte (0x0E–0x7F) as the firmware would.
    public func setCMOS(_ register: UInt8, _ value: UInt8) {
        let reg = register & 0x7F
        guard reg >= Register.shutdownStatus, !Self.isTimeRegister(reg) else { return }
        memory[Int(reg)] = value
    }

    /// QEMU's rtc_reset on a system reset: the periodic, alarm and
    /// square-wave enables and the pending flags of register C are cleared.
    public func systemReset() {
        registerB &= ~(Bits.bPeriodicInterruptEnable | Bits.bAlarmInterruptEnable | Bits.bSquareWaveEnable)
        latchedAlarm = false
        let now = currentSeconds()
        secondSeenByC = now
        alarmCheckedUpTo = now
    }

    /// Whether the time at `second` matches the alarm registers, compared in
    /// the encoding (BCD/binary, 12/24 h) the registers are in now.
    private func alarmMatches(_ second: Int64) -> Bool {
        let time = CalendarTime(unixSeconds: second)
        func matches(_ alarm: UInt8, _ current: UInt8) -> Bool {
            alarm & Bits.alarmDontCare == Bits.alarmDontCare || alarm == current
        }
        return matches(memory[Int(Register.secondsAlarm)], encode(time.second))
            && matches(memory[Int(Register.minutesAlarm)], encode(time.minute))
            && matches(memory[Int(Register.hoursAlarm)], encodeHour(time.hour))
    }

    // MARK: - PortDevice

    public func read(offset: UInt16, size: Int) -> UInt32 {
        var result: UInt32 = 0
        for lane in 0..<Self.laneCount(size) {
            let port = Int(offset) + lane
            let byte: UInt8 = port < Int(Self.portCount) ? readByte(port: port) : 0xFF
            result |= UInt32(byte) << (8 * UInt32(lane))
        }
        return result
    }

    public func write(offset: UInt16, size: Int, value: UInt32) -> DeviceEffect {
        for lane in 0..<Self.laneCount(size) {
            let port = Int(offset) + lane
            guard port < Int(Self.portCount) else { break }
            writeByte(port: port, UInt8(truncatingIfNeeded: value >> (8 * UInt32(lane))), size: size)
        }
        return .none
    }

    // MARK: - Byte accesses

    private func readByte(port: Int) -> UInt8 {
        // The index port is write-only; QEMU answers 0xFF.
        guard port == 1 else { return 0xFF }
        switch index {
        case Register.a:
            return registerA | (updateEdgeSeen() ? Bits.aUpdateInProgress : 0)
        case Register.b:
            return registerB
        case Register.c:
            return readAndClearC()
        case Register.d:
            return Bits.dValidRAM
        default:
            if let value = timeRegisterValue(index) { return value }
            return memory[Int(index)]
        }
    }

    private func writeByte(port: Int, _ value: UInt8, size: Int) {
        guard port == 1 else {
            index = value & 0x7F
            nmiDisabled = value & 0x80 != 0
            return
        }
        switch index {
        case Register.a:
            // UIP is read-only.
            registerA = value & ~Bits.aUpdateInProgress
        case Register.b:
            writeB(value)
        case Register.c, Register.d:
            record(.writeIgnored, port: port, size: size, isWrite: true, value: value)
        default:
            if Self.isTimeRegister(index) {
                writeTime(register: index, value: value, size: size)
            } else {
                memory[Int(index)] = value
            }
        }
    }

    // MARK: - Time

    private func currentSeconds() -> Int64 {
        let (sum, overflow) = wallClock().addingReportingOverflow(offset)
        return CalendarTime.clampedSeconds(overflow ? (offset < 0 ? Int64.min : Int64.max) : sum)
    }

    /// What the time registers show: the staged values while SET is on.
    private func displayedTime() -> CalendarTime {
        staged ?? CalendarTime(unixSeconds: currentSeconds())
    }

    private var clockRunning: Bool {
        registerB & Bits.bSet == 0 && registerA & Bits.aDividerMask == Bits.aDividerNormal
    }

    /// UIP for this register-A read: set once per new second (see header).
    private func updateEdgeSeen() -> Bool {
        let now = currentSeconds()
        guard clockRunning else {
            secondSeenByA = now
            return false
        }
        guard now != secondSeenByA else { return false }
        secondSeenByA = now
        return true
    }

    private func readAndClearC() -> UInt8 {
        let now = currentSeconds()
        var flags: UInt8 = 0
        if clockRunning && now != secondSeenByC { flags |= Bits.cUpdateEnded }
        secondSeenByC = now
        advanceAlarm()
        if latchedAlarm { flags |= Bits.cAlarm }
        latchedAlarm = false
        if flags & registerB & 0x70 != 0 { flags |= Bits.cIRQF }
        return flags
    }

    private func writeB(_ value: UInt8) {
        let wasSet = registerB & Bits.bSet != 0
        var newValue = value
        if value & Bits.bSet != 0 {
            // Setting SET clears UIE (MC146818 data sheet) and freezes the
            // visible time so the guest can rewrite it field by field.
            newValue &= ~Bits.bUpdateInterruptEnable
            if !wasSet { staged = CalendarTime(unixSeconds: currentSeconds()) }
        } else if wasSet {
            if let time = staged { commit(time) }
            staged = nil
            let now = currentSeconds()
            secondSeenByA = now
            secondSeenByC = now
        }
        registerB = newValue
    }

    private func commit(_ time: CalendarTime) {
        let (delta, overflow) = time.unixSeconds.subtractingReportingOverflow(wallClock())
        offset = overflow ? 0 : delta
        // A jump of the clock is not time passing: no alarm for skipped seconds.
        alarmCheckedUpTo = currentSeconds()
    }

    private static func isTimeRegister(_ reg: UInt8) -> Bool {
        switch reg {
        case Register.seconds, Register.minutes, Register.hours, Register.weekday,
             Register.dayOfMonth, Register.month, Register.year, Register.century:
            return true
        default:
            return false
        }
    }

    /// The encoded value of a time register, or nil for other indexes.
    private func timeRegisterValue(_ reg: UInt8) -> UInt8? {
        guard Self.isTimeRegister(reg) else { return nil }
        let time = displayedTime()
        switch reg {
        case Register.seconds: return encode(time.second)
        case Register.minutes: return encode(time.minute)
        case Register.hours: return encodeHour(time.hour)
        case Register.weekday: return encode(time.weekday + 1) // Sunday = 1
        case Register.dayOfMonth: return encode(time.day)
        case Register.month: return encode(time.month)
        case Register.year: return encode(Int(time.year % 100))
        default: return encode(Int(time.year / 100))
        }
    }

    private func writeTime(register reg: UInt8, value: UInt8, size: Int) {
        var time = displayedTime()
        let decoded: Int?
        switch reg {
        case Register.hours: decoded = decodeHour(value)
        default: decoded = decode(value)
        }
        guard let field = decoded else {
            record(.invalidTimeValue, port: 1, size: size, isWrite: true, value: value)
            return
        }
        var valid = true
        switch reg {
        case Register.seconds: valid = field < 60; time.second = field
        case Register.minutes: valid = field < 60; time.minute = field
        case Register.hours: valid = field < 24; time.hour = field
        case Register.dayOfMonth: valid = (1...31).contains(field); time.day = field
        case Register.month: valid = (1...12).contains(field); time.month = field
        case Register.year: time.year = time.year / 100 * 100 + Int64(field)
        case Register.century: time.year = Int64(field) * 100 + time.year % 100
        default: return // Weekday: derived from the date, writes have no effect.
        }
        guard valid else {
            record(.invalidTimeValue, port: 1, size: size, isWrite: true, value: value)
            return
        }
        if registerB & Bits.bSet != 0 {
            staged = time
        } else {
            commit(time)
        }
    }

    private var binaryMode: Bool { registerB & Bits.bBinary != 0 }

    private func encode(_ value: Int) -> UInt8 {
        let v = UInt8(clamping: value)
        return binaryMode ? v : ((v / 10) << 4) | (v % 10)
    }

    /// nil for a BCD byte with a nibble above 9 (or a value above 99).
    private func decode(_ value: UInt8) -> Int? {
        if binaryMode { return Int(value) }
        let high = value >> 4, low = value & 0x0F
        guard high <= 9, low <= 9 else { return nil }
        return Int(high) * 10 + Int(low)
    }

    private func encodeHour(_ hour: Int) -> UInt8 {
        if registerB & Bits.b24Hour != 0 { return encode(hour) }
        let twelve = hour % 12 == 0 ? 12 : hour % 12
        return encode(twelve) | (hour >= 12 ? Bits.hourPM : 0)
    }

    private func decodeHour(_ value: UInt8) -> Int? {
        if registerB & Bits.b24Hour != 0 { return decode(value) }
        guard let twelve = decode(value & ~Bits.hourPM), (1...12).contains(twelve) else { return nil }
        return twelve % 12 + (value & Bits.hourPM != 0 ? 12 : 0)
    }

    // MARK: - Helpers

    private func record(_ kind: DeviceAnomaly.Kind, port: Int, size: Int, isWrite: Bool, value: UInt8) {
        anomalies.record(DeviceAnomaly(device: name, kind: kind, offset: UInt16(port), size: size,
                                       isWrite: isWrite, value: UInt32(value)))
    }

    /// Port accesses are 1, 2 or 4 bytes; anything else counts as 4.
    private static func laneCount(_ size: Int) -> Int {
        size == 1 || size == 2 ? size : 4
    }

    /// QEMU's pc_cmos_init memory bytes plus the CPU count byte.
    private static func presetMemory(_ memory: inout [UInt8], memorySize: UInt64, cpuCount: Int) {
        let kib: UInt64 = 1 << 10, mib: UInt64 = 1 << 20
        let below4G = min(memorySize, lowMemoryLimit)
        let above4G = memorySize - below4G

        func put16(_ low: Int, _ value: UInt64) {
            memory[low] = UInt8(truncatingIfNeeded: value)
            memory[low + 1] = UInt8(truncatingIfNeeded: value >> 8)
        }
        // Base memory in KiB, at most 640.
        put16(0x15, min(below4G / kib, 640))
        // Extended memory above 1 MiB in KiB, capped at 65535 (two copies).
        let extended = below4G > mib ? min((below4G - mib) / kib, 65535) : 0
        put16(0x17, extended)
        put16(0x30, extended)
        // Memory above 16 MiB in 64 KiB units, capped at 65535.
        let above16M = below4G > 16 * mib ? min((below4G - 16 * mib) / (64 * kib), 65535) : 0
        put16(0x34, above16M)
        // Memory above 4 GiB in 64 KiB units, 24 bits.
        let high = above4G / (64 * kib)
        memory[0x5B] = UInt8(truncatingIfNeeded: high)
        memory[0x5C] = UInt8(truncatingIfNeeded: high >> 8)
        memory[0x5D] = UInt8(truncatingIfNeeded: high >> 16)
        // CPU count − 1; 0 when it does not fit (firmware must use fw_cfg).
        let cpus = max(cpuCount, 1)
        memory[0x5F] = cpus > 0x100 ? 0 : UInt8(cpus - 1)
        // Equipment byte: FPU present, no floppy drives, VGA.
        memory[0x14] = 0x02
    }
}

/// A broken-down UTC time, proleptic Gregorian (H. Hinnant's algorithms).
struct CalendarTime: Equatable {
    var year: Int64
    var month: Int   // 1–12
    var day: Int     // 1–31
    var hour: Int
    var minute: Int
    var second: Int

    /// 1970-01-01 00:00:00 … 9999-12-31 23:59:59: the range the RTC's four
    /// BCD year digits can show.
    static let secondsRange: ClosedRange<Int64> = 0...253_402_300_799

    static func clampedSeconds(_ seconds: Int64) -> Int64 {
        min(max(seconds, secondsRange.lowerBound), secondsRange.upperBound)
    }

    init(unixSeconds: Int64) {
        let seconds = Self.clampedSeconds(unixSeconds)
        let days = seconds / 86_400
        let rest = Int(seconds % 86_400)
        hour = rest / 3600
        minute = rest / 60 % 60
        second = rest % 60
        // civil_from_days; days >= 0 here, so plain division is floor division.
        let z = days + 719_468
        let era = z / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = Int(doy - (153 * mp + 2) / 5 + 1)
        month = Int(mp < 10 ? mp + 3 : mp - 9)
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// 0 = Sunday.
    var weekday: Int {
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        return Int(((days % 7) + 11) % 7) // 1970-01-01 was a Thursday (4).
    }

    /// Seconds since the epoch, clamped to `secondsRange`. Days past the end
    /// of a month roll into the next one (Feb 30 → Mar 2), as `mktime` does.
    var unixSeconds: Int64 {
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        let total = days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
        return Self.clampedSeconds(total)
    }

    /// Years here are 0…9999 (two BCD bytes), so nothing can overflow.
    static func daysFromCivil(year: Int64, month: Int, day: Int) -> Int64 {
        let y = year - (month <= 2 ? 1 : 0)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

// MARK: - Snapshot state

extension RTCCMOS: StatefulDevice {
    /// The RTC's state. Time is saved as `guestOffsetSeconds` (guest time
    /// minus the host wall clock), the counterpart of QEMU's `rtc_base`
    /// bookkeeping: a restored RTC shows the new host's wall clock plus that
    /// offset, so it continues from the wall clock (time passes while the
    /// snapshot sits on disk, as on a machine whose RTC battery kept it
    /// running) and a guest that set its clock keeps its own time.
    ///
    /// The other seconds are guest seconds (Unix time as the RTC shows it).
    /// Seconds that pass between capture and restore count as passed: the
    /// first register-A/C read after a restore sees an update, and an alarm
    /// that matched in between is latched (alarm checks look back a day at most).
    public struct State: Codable, Sendable, Equatable {
        /// A broken-down time being written while register B's SET bit is on.
        public struct StagedTime: Codable, Sendable, Equatable {
            public var year: Int64
            public var month: Int
            public var day: Int
            public var hour: Int
            public var minute: Int
            public var second: Int

            public init(year: Int64, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
                self.year = year
                self.month = month
                self.day = day
                self.hour = hour
                self.minute = minute
                self.second = second
            }
        }

        public var index: UInt8
        public var nmiDisabled: Bool
        /// All 128 CMOS bytes (the time and A–D slots are unused: those
        /// registers are computed or held below).
        public var cmos: [UInt8]
        public var registerA: UInt8
        public var registerB: UInt8
        public var guestOffsetSeconds: Int64
        public var secondSeenByA: Int64
        public var secondSeenByC: Int64
        public var alarmCheckedUpTo: Int64
        public var latchedAlarm: Bool
        /// Present exactly when register B's SET bit is on.
        public var staged: StagedTime?
    }

    public func exportState() -> State {
        State(index: index, nmiDisabled: nmiDisabled, cmos: memory, registerA: registerA, registerB: registerB,
              guestOffsetSeconds: offset, secondSeenByA: secondSeenByA, secondSeenByC: secondSeenByC,
              alarmCheckedUpTo: alarmCheckedUpTo, latchedAlarm: latchedAlarm,
              staged: staged.map { State.StagedTime(year: $0.year, month: $0.month, day: $0.day,
                                                    hour: $0.hour, minute: $0.minute, second: $0.second) })
    }

    /// Refuses a CMOS image that is not 128 bytes, an index above 0x7F, UIP
    /// stored in register A, seconds outside the years the RTC can show, and
    /// a staged time that is out of range or disagrees with register B's SET.
    public func importState(_ state: State) throws(DeviceStateError) {
        guard state.cmos.count == memory.count else {
            throw DeviceStateError(device: name, field: "cmos", "\(state.cmos.count) bytes, expected \(memory.count)")
        }
        guard state.index <= 0x7F else {
            throw DeviceStateError(device: name, field: "index", "0x\(String(state.index, radix: 16)) is above 0x7f")
        }
        try DeviceStateError.checkBits(state.registerA, allowed: ~Bits.aUpdateInProgress, device: name, field: "registerA")
        let span = CalendarTime.secondsRange.upperBound
        guard (-span...span).contains(state.guestOffsetSeconds) else {
            throw DeviceStateError(device: name, field: "guestOffsetSeconds", "\(state.guestOffsetSeconds) is beyond the RTC's range")
        }
        for (field, value) in [("secondSeenByA", state.secondSeenByA), ("secondSeenByC", state.secondSeenByC),
                               ("alarmCheckedUpTo", state.alarmCheckedUpTo)] {
            guard CalendarTime.secondsRange.contains(value) else {
                throw DeviceStateError(device: name, field: field, "\(value) is outside 1970–9999")
            }
        }
        let stagedTime = try Self.validated(state.staged, setBit: state.registerB & Bits.bSet != 0, device: name)
        index = state.index
        nmiDisabled = state.nmiDisabled
        memory = state.cmos
        registerA = state.registerA
        registerB = state.registerB
        offset = state.guestOffsetSeconds
        secondSeenByA = state.secondSeenByA
        secondSeenByC = state.secondSeenByC
        alarmCheckedUpTo = state.alarmCheckedUpTo
        latchedAlarm = state.latchedAlarm
        staged = stagedTime
    }

    private static func validated(_ staged: State.StagedTime?, setBit: Bool, device: String) throws(DeviceStateError) -> CalendarTime? {
        guard let staged else {
            if setBit { throw DeviceStateError(device: device, field: "staged", "missing while register B's SET bit is on") }
            return nil
        }
        guard setBit else { throw DeviceStateError(device: device, field: "staged", "present while register B's SET bit is off") }
        let fields: [(String, Int64, ClosedRange<Int64>)] = [
            ("staged.year", staged.year, 0...9999), ("staged.month", Int64(staged.month), 1...12),
            ("staged.day", Int64(staged.day), 1...31), ("staged.hour", Int64(staged.hour), 0...23),
            ("staged.minute", Int64(staged.minute), 0...59), ("staged.second", Int64(staged.second), 0...59),
        ]
        for (field, value, range) in fields where !range.contains(value) {
            throw DeviceStateError(device: device, field: field, "\(value) is outside \(range.lowerBound)–\(range.upperBound)")
        }
        var time = CalendarTime(unixSeconds: 0)
        (time.year, time.month, time.day) = (staged.year, staged.month, staged.day)
        (time.hour, time.minute, time.second) = (staged.hour, staged.minute, staged.second)
        return time
    }

    public static func erase(_ state: State) -> DeviceState { .rtcCMOS(state) }
    public static func unerase(_ state: DeviceState) -> State? {
        if case let .rtcCMOS(typed) = state { return typed }
        return nil
    }
}
