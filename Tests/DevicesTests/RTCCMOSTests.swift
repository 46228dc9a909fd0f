// RTCCMOSTests.swift — the MC146818 RTC and CMOS: time decode in BCD and
// binary, 12/24 h, the UIP edge and register C, guest time writes, the memory
// size and CPU bytes QEMU puts in CMOS, and odd port accesses.

import Testing
import Devices

@Suite struct RTCCMOSTests {
    /// 2024-02-29 13:45:07 UTC, a Thursday (RTC weekday 5).
    static let leapDayAfternoon: Int64 = 1_709_214_307

    func rtc(at seconds: Int64 = leapDayAfternoon, memory: UInt64 = 64 << 20, cpus: Int = 1)
        -> (RTCCMOS, ManualClock) {
        let clock = ManualClock(seconds)
        return (RTCCMOS(memorySize: memory, cpuCount: cpus, wallClock: clock.seconds), clock)
    }

    func cmos(_ rtc: RTCCMOS, _ index: UInt8) -> UInt8 {
        #expect(rtc.write(offset: 0, size: 1, value: UInt32(index)) == .none)
        return UInt8(truncatingIfNeeded: rtc.read(offset: 1, size: 1))
    }

    func setCMOS(_ rtc: RTCCMOS, _ index: UInt8, _ value: UInt8) {
        #expect(rtc.write(offset: 0, size: 1, value: UInt32(index)) == .none)
        #expect(rtc.write(offset: 1, size: 1, value: UInt32(value)) == .none)
    }

    func timeBytes(_ rtc: RTCCMOS) -> [UInt8] {
        [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map { cmos(rtc, $0) }
    }

    @Test func defaultsAreBCDAnd24Hour() {
        let (rtc, _) = rtc()
        #expect(rtc.name == "rtc-cmos")
        #expect(cmos(rtc, 0x0A) == 0x26)
        #expect(cmos(rtc, 0x0B) == 0x02)
        #expect(cmos(rtc, 0x0D) == 0x80)
        // sec, min, hour, weekday, day, month, year, century
        #expect(timeBytes(rtc) == [0x07, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20])
    }

    @Test func binaryMode() {
        let (rtc, _) = rtc()
        setCMOS(rtc, 0x0B, 0x06) // binary, 24 h
        #expect(timeBytes(rtc) == [7, 45, 13, 5, 29, 2, 24, 20])
    }

    @Test(arguments: [
        // (unix seconds, B, expected hour byte)
        (Int64(1_709_214_307), UInt8(0x00), UInt8(0x81)), // 13:45 BCD 12 h → 1 PM
        (1_709_214_307, 0x04, 0x81),                       // binary 12 h → 1 | PM
        (1_709_165_109, 0x00, 0x12),                       // 00:05 → 12 AM
        (1_709_165_109, 0x04, 12),
        (1_709_208_000, 0x00, 0x92),                       // 12:00 → 12 PM
        (1_709_196_307, 0x00, 0x08),                       // 08:45 → 8 AM
        (1_709_214_307, 0x02, 0x13),                       // 24 h BCD
        (1_709_214_307, 0x06, 13),                         // 24 h binary
    ])
    func hourFormats(seconds: Int64, registerB: UInt8, hour: UInt8) {
        let (rtc, _) = rtc(at: seconds)
        setCMOS(rtc, 0x0B, registerB)
        #expect(cmos(rtc, 0x04) == hour)
    }

    @Test func centuryBoundaryAndClockAdvance() {
        // 1999-12-31 23:59:59, a Friday.
        let (rtc, clock) = rtc(at: 946_684_799)
        #expect(timeBytes(rtc) == [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19])
        clock.advance(by: 1)
        #expect(timeBytes(rtc) == [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20])
        // The epoch, and clocks before it (clamped: the RTC cannot show them).
        clock.set(0)
        #expect(timeBytes(rtc) == [0, 0, 0, 0x05, 0x01, 0x01, 0x70, 0x19])
        clock.set(-5)
        #expect(timeBytes(rtc) == [0, 0, 0, 0x05, 0x01, 0x01, 0x70, 0x19])
        clock.set(.max)
        #expect(timeBytes(rtc) == [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x99])
    }

    @Test func registerCClearsOnRead() {
        let (rtc, clock) = rtc()
        #expect(cmos(rtc, 0x0C) == 0)
        clock.advance(by: 1)
        #expect(cmos(rtc, 0x0C) == 0x10) // UF
        #expect(cmos(rtc, 0x0C) == 0)    // cleared by the read
        setCMOS(rtc, 0x0B, 0x12)         // UIE on
        clock.advance(by: 3)
        #expect(cmos(rtc, 0x0C) == 0x90) // UF | IRQF
        #expect(cmos(rtc, 0x0C) == 0)
        // Register C and D are read-only.
        setCMOS(rtc, 0x0C, 0xFF)
        setCMOS(rtc, 0x0D, 0x00)
        #expect(cmos(rtc, 0x0D) == 0x80)
        #expect(rtc.drainAnomalies().anomalies.map(\.kind) == [.writeIgnored, .writeIgnored])
    }

    @Test func updateInProgressEdgeOncePerSecond() {
        let (rtc, clock) = rtc()
        #expect(cmos(rtc, 0x0A) == 0x26)
        #expect(cmos(rtc, 0x0A) == 0x26)
        clock.advance(by: 1)
        #expect(cmos(rtc, 0x0A) == 0xA6) // rising edge at the new second
        #expect(cmos(rtc, 0x0A) == 0x26) // falls on the next read
        #expect(cmos(rtc, 0x00) == 0x08) // and the new second is visible
        // SET stops updates: no UIP.
        setCMOS(rtc, 0x0B, 0x82)
        clock.advance(by: 1)
        #expect(cmos(rtc, 0x0A) == 0x26)
        // Divider reset (A bits 4–6 ≠ 010): no UIP either; UIP is read-only.
        setCMOS(rtc, 0x0B, 0x02)
        setCMOS(rtc, 0x0A, 0xF6)
        clock.advance(by: 1)
        #expect(cmos(rtc, 0x0A) == 0x76)
    }

    @Test func guestSetsTimeWithSetBit() {
        let (rtc, clock) = rtc()
        setCMOS(rtc, 0x0B, 0x82)         // SET, 24 h, BCD
        setCMOS(rtc, 0x04, 0x08)         // 08:xx
        setCMOS(rtc, 0x07, 0x01)         // day 1
        setCMOS(rtc, 0x08, 0x03)         // March
        setCMOS(rtc, 0x09, 0x25)         // 2025
        clock.advance(by: 10)            // frozen while SET
        #expect(timeBytes(rtc) == [0x07, 0x45, 0x08, 0x07, 0x01, 0x03, 0x25, 0x20])
        setCMOS(rtc, 0x0B, 0x02)         // commit
        #expect(timeBytes(rtc) == [0x07, 0x45, 0x08, 0x07, 0x01, 0x03, 0x25, 0x20])
        clock.advance(by: 60)
        #expect(cmos(rtc, 0x02) == 0x46)
        // Without SET a write applies at once; a bad BCD byte is refused.
        setCMOS(rtc, 0x00, 0x30)
        #expect(cmos(rtc, 0x00) == 0x30)
        setCMOS(rtc, 0x00, 0x3A)
        setCMOS(rtc, 0x08, 0x13)
        #expect(cmos(rtc, 0x00) == 0x30)
        #expect(rtc.drainAnomalies().anomalies.map(\.kind) == [.invalidTimeValue, .invalidTimeValue])
        // 12-hour write: 0x87 = 7 PM.
        setCMOS(rtc, 0x0B, 0x00)
        setCMOS(rtc, 0x04, 0x87)
        setCMOS(rtc, 0x0B, 0x02)
        #expect(cmos(rtc, 0x04) == 0x19)
    }

    /// Expected CMOS memory-size fields for one RAM size.
    struct MemoryCase: Sendable {
        var memory: UInt64
        var baseKiB: UInt64
        var extendedKiB: UInt64
        var above16MUnits: UInt64
        var above4GUnits: UInt64
    }

    static let memoryCases: [MemoryCase] = [
        MemoryCase(memory: 512 << 10, baseKiB: 512, extendedKiB: 0, above16MUnits: 0, above4GUnits: 0),
        MemoryCase(memory: 16 << 20, baseKiB: 640, extendedKiB: 15 * 1024, above16MUnits: 0, above4GUnits: 0),
        MemoryCase(memory: 64 << 20, baseKiB: 640, extendedKiB: 63 * 1024, above16MUnits: 48 * 16, above4GUnits: 0),
        MemoryCase(memory: 3 << 30, baseKiB: 640, extendedKiB: 65535, above16MUnits: (3072 - 16) * 16,
                   above4GUnits: 0),
        MemoryCase(memory: 8 << 30, baseKiB: 640, extendedKiB: 65535, above16MUnits: (3072 - 16) * 16,
                   above4GUnits: 5 * 1024 * 16),
    ]

    @Test(arguments: memoryCases)
    func memorySizeBytes(_ c: MemoryCase) {
        let (rtc, _) = rtc(memory: c.memory)
        func word(_ low: UInt8) -> UInt64 { UInt64(cmos(rtc, low)) | UInt64(cmos(rtc, low + 1)) << 8 }
        #expect(word(0x15) == c.baseKiB)
        #expect(word(0x17) == c.extendedKiB)
        #expect(word(0x30) == c.extendedKiB)
        #expect(word(0x34) == c.above16MUnits)
        let high = UInt64(cmos(rtc, 0x5B)) | UInt64(cmos(rtc, 0x5C)) << 8 | UInt64(cmos(rtc, 0x5D)) << 16
        #expect(high == c.above4GUnits)
    }

    @Test(arguments: [(1, UInt8(0)), (2, 1), (4, 3), (64, 63), (256, 255), (300, 0), (0, 0)])
    func cpuCountByte(cpus: Int, byte: UInt8) {
        let (rtc, _) = rtc(cpus: cpus)
        #expect(cmos(rtc, 0x5F) == byte)
    }

    @Test func cmosMemoryIsReadWrite() {
        let (rtc, _) = rtc()
        for index in UInt8(0x0E)...0x7F where index != 0x32 {
            setCMOS(rtc, index, index ^ 0xA5)
        }
        for index in UInt8(0x0E)...0x7F where index != 0x32 {
            #expect(cmos(rtc, index) == index ^ 0xA5)
        }
        // Alarm registers are plain storage too.
        setCMOS(rtc, 0x01, 0x42)
        #expect(cmos(rtc, 0x01) == 0x42)
        #expect(rtc.drainAnomalies().anomalies.isEmpty)
    }

    @Test func indexPortAndWideAccesses() throws {
        let (rtc, _) = rtc()
        #expect(rtc.read(offset: 0, size: 1) == 0xFF)
        // Bit 7 of the index is the NMI mask; the index is 7 bits.
        #expect(rtc.write(offset: 0, size: 1, value: 0x8F) == .none)
        #expect(rtc.nmiDisabled)
        #expect(rtc.index == 0x0F)
        #expect(rtc.write(offset: 0, size: 1, value: 0x0F) == .none)
        #expect(!rtc.nmiDisabled)
        // outw 0x70: low byte is the index, high byte goes to 0x71.
        #expect(rtc.write(offset: 0, size: 2, value: 0x5540) == .none)
        #expect(rtc.index == 0x40)
        #expect(rtc.peek(0x40) == 0x55)
        // inw 0x70: 0xFF from the index port, data from 0x71.
        #expect(rtc.read(offset: 0, size: 2) == 0x55FF)
        // Past port 0x71: floating.
        #expect(rtc.read(offset: 1, size: 4) == 0xFFFF_FF55)
        #expect(rtc.write(offset: 1, size: 4, value: 0xFFFF_FF66) == .none)
        #expect(rtc.peek(0x40) == 0x66)

        var bus = PortBus()
        try bus.register(rtc, base: RTCCMOS.basePort, count: RTCCMOS.portCount)
        #expect(bus.write(port: 0x70, size: 1, value: 0x5F) == DeviceEffect.none)
        #expect(bus.read(port: 0x71, size: 1) == 0)
    }

    // MARK: - Alarm (registers 1/3/5, B.AIE, C.AF/IRQF), S3 support

    @Test func alarmSetsAFAndIRQFWhenItsSecondPasses() {
        let (rtc, clock) = rtc() // 13:45:07 BCD
        setCMOS(rtc, 0x01, 0x09)
        setCMOS(rtc, 0x03, 0x45)
        setCMOS(rtc, 0x05, 0x13)
        _ = cmos(rtc, 0x0C)
        clock.advance(by: 1) // 13:45:08: no match yet
        #expect(!rtc.advanceAlarm())
        #expect(cmos(rtc, 0x0C) & 0x20 == 0)
        clock.advance(by: 2) // 13:45:10: 13:45:09 passed in between
        #expect(cmos(rtc, 0x0C) == 0x30) // AF | UF; AIE off: no IRQF
        #expect(cmos(rtc, 0x0C) == 0x00) // cleared on read
        setCMOS(rtc, 0x0B, 0x22) // AIE, 24 h
        #expect(rtc.alarmInterruptEnabled)
        clock.advance(by: 60 * 60 * 24 - 1) // the next day's 13:45:09
        #expect(rtc.advanceAlarm())
        #expect(cmos(rtc, 0x0C) & 0xA0 == 0xA0) // IRQF | AF
    }

    @Test func alarmDontCareBytesMatchEveryValue() {
        let (rtc, clock) = rtc() // 13:45:07
        setCMOS(rtc, 0x01, 0xC0)
        setCMOS(rtc, 0x03, 0xFF)
        setCMOS(rtc, 0x05, 0xC3)
        #expect(!rtc.advanceAlarm()) // no second passed yet
        clock.advance(by: 1)
        #expect(rtc.advanceAlarm()) // every second matches
        // Only the seconds byte cares: 13:45:07 + 2 → :09 matches 0x09 only.
        setCMOS(rtc, 0x01, 0x10)
        clock.advance(by: 1) // :09
        #expect(!rtc.advanceAlarm())
        clock.advance(by: 1) // :10
        #expect(rtc.advanceAlarm())
    }

    @Test func alarmComparesInBinaryModeAndIgnoresClockJumps() {
        let (rtc, clock) = rtc() // 13:45:07
        setCMOS(rtc, 0x0B, 0x06) // binary, 24 h
        setCMOS(rtc, 0x01, 20)
        setCMOS(rtc, 0x03, 0xC0)
        setCMOS(rtc, 0x05, 0xC0)
        // The guest sets the clock forward past :20: a jump, not passing time.
        setCMOS(rtc, 0x00, 30)
        clock.advance(by: 1)
        #expect(!rtc.advanceAlarm())
        clock.advance(by: 50) // 13:46:21: :20 of the next minute passed
        #expect(rtc.advanceAlarm())
    }

    @Test func systemResetClearsEnablesAndFlagsButKeepsTimeAndCMOS() {
        let (rtc, clock) = rtc()
        for alarm: UInt8 in [0x01, 0x03, 0x05] { setCMOS(rtc, alarm, 0xC0) }
        setCMOS(rtc, 0x0B, 0x7A) // PIE | AIE | UIE | SQWE | 24 h
        clock.advance(by: 1)
        #expect(rtc.advanceAlarm())
        rtc.setCMOS(0x0F, 0xFE)
        rtc.setCMOS(0x00, 0x99) // time registers are not CMOS memory: ignored
        rtc.systemReset()
        #expect(cmos(rtc, 0x0B) == 0x12) // UIE and 24 h stay
        #expect(cmos(rtc, 0x0C) == 0x00) // AF and UF cleared
        #expect(cmos(rtc, 0x0F) == 0xFE)
        #expect(cmos(rtc, 0x00) == 0x08)
        #expect(!rtc.alarmInterruptEnabled)
    }
}
