// ACPIPMTimerTests.swift — the ACPI PM timer's exact counts and 24-bit wrap,
// odd access widths, and the PM1 event/control registers (TMR_STS, W1C,
// SCI_EN, soft-off).

import Testing
import Devices

@Suite struct ACPIPMTimerTests {
    func timer(at ns: Int64 = 0) -> (ACPIPMTimer, ManualClock) {
        let clock = ManualClock(ns)
        return (ACPIPMTimer(clock: clock.nanoseconds), clock)
    }

    @Test(arguments: [
        // (ns, expected 4-byte read): floor(ns × 3579545 / 10^9) mod 2^24
        (Int64(0), UInt32(0)),
        (1, 0),
        (279, 0),                        // 0.9987 ticks
        (280, 1),                        // 1.0023 ticks
        (1_000_000, 3579),               // 1 ms
        (1_000_000_000, 3_579_545),      // 1 s
        (4_686_968_874, 0xFF_FFFF),      // last value before the wrap
        (4_686_968_875, 0),              // exactly 2^24 ticks
        (10_000_000_000, 0x22_31FA),     // 35_795_450 mod 2^24
    ])
    func exactCounts(ns: Int64, value: UInt32) {
        let (timer, _) = timer(at: ns)
        #expect(timer.read(offset: 0, size: 4) == value)
        #expect(timer.counter == value)
    }

    @Test func fullRangeClockDoesNotTrap() {
        #expect(ACPIPMTimer.ticks(atNanoseconds: .max) == 66_030_950_515_326_656)
        let timer = ACPIPMTimer(clock: { UInt64.max })
        #expect(timer.read(offset: 0, size: 4) == 10_862_272)
    }

    @Test func counterAdvancesAtTheRightRate() {
        let (timer, clock) = timer(at: 123_456_789)
        let start = timer.ticks()
        clock.advance(by: 2_000_000_000)
        #expect(timer.ticks() - start == 7_159_090)
        #expect(ACPIPMTimer.frequency == 3_579_545)
        #expect(ACPIPMTimer.counterBits == 24)
    }

    @Test func oddAccessesAndWrites() {
        let (timer, _) = timer(at: 1_000_000_000) // 0x369E99
        #expect(timer.read(offset: 0, size: 2) == 0x9E99)
        #expect(timer.read(offset: 0, size: 1) == 0x99)
        #expect(timer.read(offset: 1, size: 1) == 0x9E)
        #expect(timer.read(offset: 2, size: 2) == 0x36)
        #expect(timer.read(offset: 3, size: 1) == 0x00)
        #expect(timer.write(offset: 0, size: 4, value: 0) == .none)
        #expect(timer.read(offset: 0, size: 4) == 0x36_9E99)
        let kinds = timer.drainAnomalies().anomalies.map(\.kind)
        #expect(kinds == [.unsupportedAccess, .unsupportedAccess, .unsupportedAccess,
                          .unsupportedAccess, .unsupportedAccess, .writeIgnored])
    }

    @Test func pm1ControlKeepsSCIEnabledAndDecodesSleepTypes() {
        let pm1 = ACPIPM1Registers(timer: nil)
        #expect(pm1.read(offset: 4, size: 2) & 1 == 1)
        #expect(pm1.write(offset: 4, size: 2, value: 0x0000) == .none)
        #expect(pm1.read(offset: 4, size: 2) == 1)
        // SLP_TYP 1 (\_S3) + SLP_EN: suspend to RAM; SLP_EN reads 0.
        #expect(pm1.write(offset: 4, size: 2, value: 0x2400) == .suspendToRAM)
        #expect(pm1.lastSleepRequest == 1)
        #expect(pm1.read(offset: 4, size: 2) == 0x0401)
        // SLP_TYP without SLP_EN only stores the type.
        #expect(pm1.write(offset: 4, size: 2, value: 0x0400) == .none)
        // SLP_TYP 0 (\_S5) + SLP_EN: power off, also via a byte write.
        #expect(pm1.write(offset: 4, size: 2, value: 0x2000) == .powerOff)
        #expect(pm1.write(offset: 5, size: 1, value: 0x20) == .powerOff)
        #expect(pm1.lastSleepRequest == 0)
        // Other sleep types are not emulated: recorded, no effect.
        #expect(pm1.write(offset: 4, size: 2, value: 0x2800) == .none)
        #expect(pm1.drainAnomalies().anomalies.map(\.kind) == [.sleepNotSupported(slpTyp: 2)])
    }

    @Test func wakeResetsTheBlockAndReportsTheWakeSource() {
        let pm1 = ACPIPM1Registers(timer: nil)
        #expect(!pm1.rtcWakeEnabled)
        #expect(pm1.write(offset: 2, size: 2, value: 0x0400) == .none)
        #expect(pm1.rtcWakeEnabled)
        #expect(pm1.write(offset: 4, size: 2, value: 0x0402) == .none)
        pm1.wake(byRTC: true)
        // WAK_STS | RTC_STS, and TMR_STS as QEMU's reset leaves it (0x8401
        // under QEMU 7.2); enable cleared; control back to SCI_EN.
        #expect(pm1.read(offset: 0, size: 2) == 0x8401)
        #expect(pm1.read(offset: 2, size: 2) == 0)
        #expect(pm1.read(offset: 4, size: 2) == 1)
        #expect(!pm1.rtcWakeEnabled)
        // Write 1 to clear, as for every status bit.
        #expect(pm1.write(offset: 0, size: 2, value: 0x8401) == .none)
        #expect(pm1.status == 0)
        pm1.wake(byRTC: false)
        #expect(pm1.status == 0x8001)
    }

    @Test func pm1EnableAndTimerStatus() {
        let clock = ManualClock(0)
        let timer = ACPIPMTimer(clock: clock.nanoseconds)
        let pm1 = ACPIPM1Registers(timer: timer)
        // TMR_STS reads set until first cleared, as under QEMU.
        #expect(pm1.read(offset: 0, size: 2) == 1)
        #expect(pm1.write(offset: 0, size: 2, value: 1) == .none)
        #expect(pm1.read(offset: 0, size: 2) == 0)
        // Enable keeps only defined bits.
        #expect(pm1.write(offset: 2, size: 2, value: 0xFFFF) == .none)
        #expect(pm1.read(offset: 2, size: 2) == 0x0521)
        // TMR_STS sets when counter bit 23 toggles: 2^23 ticks.
        clock.set(2_343_484_437)
        #expect(pm1.read(offset: 0, size: 2) == 0)
        clock.set(2_343_484_438)
        #expect(pm1.read(offset: 0, size: 2) == 1)
        #expect(pm1.read(offset: 0, size: 4) == 0x0521_0001)
        // Writing 0 clears nothing; writing 1 clears it.
        #expect(pm1.write(offset: 0, size: 2, value: 0) == .none)
        #expect(pm1.status == 1)
        #expect(pm1.write(offset: 0, size: 2, value: 1) == .none)
        #expect(pm1.status == 0)
        // The reserved word reads 0; writes to it are recorded.
        #expect(pm1.read(offset: 6, size: 2) == 0)
        #expect(pm1.write(offset: 6, size: 2, value: 0xFFFF) == .none)
        #expect(pm1.drainAnomalies().anomalies.map(\.kind) == [.writeIgnored])
    }

    @Test func registersOnTheBusAtTheFADTPorts() throws {
        let clock = ManualClock(1_000_000_000)
        let timer = ACPIPMTimer(clock: clock.nanoseconds)
        var bus = PortBus()
        try bus.register(ACPIPM1Registers(timer: timer), base: ACPIPMPorts.pm1aEventBlock,
                         count: ACPIPMPorts.pm1RegistersCount)
        try bus.register(timer, base: ACPIPMPorts.timer, count: UInt16(ACPIPMPorts.timerLength))
        #expect(bus.read(port: 0x608, size: 4) == 3_579_545)
        #expect(bus.read(port: 0x604, size: 2) == 1)
        #expect(bus.owner(of: 0x60B)?.name == "acpi-pm-timer")
        #expect(bus.owner(of: 0x607)?.name == "acpi-pm1")
    }
}
