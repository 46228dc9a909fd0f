// DeviceStateTests.swift — snapshot state of every device: driven into a
// non-trivial state through its ports, exported, imported into a fresh
// device, the two must answer every further access alike (and drive their
// interrupt lines alike); states survive JSON; impossible states are refused
// with the device and field named, leaving the device untouched.

import Foundation
import Testing
import Devices

/// One port access, replayed on two devices.
enum Access {
    case read(UInt16, size: Int = 1)
    case write(UInt16, UInt32, size: Int = 1)
}

/// Replays `accesses` on both devices: every read value and write effect must match.
func expectSameBehaviour(_ original: any PortDevice, _ restored: any PortDevice, _ accesses: [Access],
                         sourceLocation: SourceLocation = #_sourceLocation) {
    for (step, access) in accesses.enumerated() {
        switch access {
        case let .read(offset, size):
            let expected = original.read(offset: offset, size: size)
            let actual = restored.read(offset: offset, size: size)
            #expect(actual == expected, "step \(step): read at \(offset)", sourceLocation: sourceLocation)
        case let .write(offset, value, size):
            let expected = original.write(offset: offset, size: size, value: value)
            let actual = restored.write(offset: offset, size: size, value: value)
            #expect(actual == expected, "step \(step): write at \(offset)", sourceLocation: sourceLocation)
        }
    }
}

/// Encodes and decodes through JSON (what a snapshot section does).
func jsonRoundTrip<T: Codable>(_ value: T) throws -> T {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    return try JSONDecoder().decode(T.self, from: encoder.encode(value))
}

/// Expects `import` to refuse `state` naming `field`, and the device's state to stay as it was.
func expectRefused<D: StatefulDevice>(_ device: D, _ state: D.State, field: String,
                                      sourceLocation: SourceLocation = #_sourceLocation) {
    let before = device.exportState()
    let error = #expect(throws: DeviceStateError.self, sourceLocation: sourceLocation) { try device.importState(state) }
    #expect(error?.device == device.name, sourceLocation: sourceLocation)
    #expect(error?.field == field, sourceLocation: sourceLocation)
    #expect(error?.description.contains("\n") == false, sourceLocation: sourceLocation)
    #expect(device.exportState() == before, sourceLocation: sourceLocation)
}

@Suite struct SerialStateTests {
    /// A UART with divisor, line settings, loopback modem lines, all interrupts
    /// enabled, FIFO on, scratch, queued input, a dropped byte.
    func busyUART(line: RecordingLine) -> Serial16550 {
        let uart = Serial16550(output: BufferSink(), interrupt: line, inputCapacity: 8)
        uart.set(UART.lcr, 0x80)
        uart.set(UART.data, 0x01)
        uart.set(UART.ier, 0x00)
        uart.set(UART.lcr, 0x1B)
        uart.set(UART.fcr, 0x01)
        uart.set(UART.mcr, 0x10 | 0x01 | 0x04) // loopback, DTR, OUT1
        uart.set(UART.ier, 0x0F)
        uart.set(UART.scr, 0x5A)
        uart.enqueueInput(Array("hello, world".utf8)) // 8 fit, 4 dropped
        _ = uart.reg(UART.data)
        return uart
    }

    @Test func restoredUARTBehavesAlike() throws {
        let originalLine = RecordingLine(), restoredLine = RecordingLine()
        let original = busyUART(line: originalLine)
        let state = original.exportState()
        #expect(state.receiveQueue == Array("ello, w".utf8))
        #expect(state.droppedInputBytes == 4)
        #expect(state.modemDeltas != 0)

        let restored = Serial16550(output: BufferSink(), interrupt: restoredLine, inputCapacity: 8)
        try restored.importState(try jsonRoundTrip(state))
        #expect(restored.exportState() == state)
        #expect(restoredLine.level == true && restored.interruptLevel == original.interruptLevel)
        #expect(restored.droppedInputBytes == 4)

        // IIR priorities as sources drain, RX bytes, MSR deltas, loopback TX, DLAB.
        var accesses: [Access] = [.read(UART.iir), .read(UART.lsr), .read(UART.msr), .read(UART.msr)]
        accesses += (0..<8).flatMap { _ in [Access.read(UART.iir), .read(UART.data), .read(UART.lsr)] }
        accesses += [.read(UART.iir), .read(UART.iir), .write(UART.data, 0x41), .read(UART.iir), .read(UART.data),
                     .read(UART.scr), .read(UART.lcr), .read(UART.mcr), .write(UART.lcr, 0x9B), .read(UART.data),
                     .read(UART.ier), .write(UART.lcr, 0x1B), .write(UART.mcr, 0x08), .read(UART.msr), .read(UART.iir)]
        expectSameBehaviour(original, restored, accesses)
        #expect(restoredLine.level == originalLine.level)
        #expect(Array(restoredLine.history.dropFirst()) == Array(originalLine.history.suffix(restoredLine.history.count - 1)))
    }

    @Test func restoreLowersARaisedLine() throws {
        let line = RecordingLine()
        let restored = busyUART(line: line)
        #expect(line.level)
        try restored.importState(Serial16550(output: BufferSink()).exportState())
        #expect(line.level == false)
        #expect(restored.reg(UART.iir) & 0x0F == 0x01)
    }

    @Test func impossibleStatesAreRefused() {
        let uart = busyUART(line: RecordingLine())
        let good = uart.exportState()
        var state = good
        state.interruptEnable = 0x10
        expectRefused(uart, state, field: "interruptEnable")
        state = good
        state.modemControl = 0x20
        expectRefused(uart, state, field: "modemControl")
        state = good
        state.modemInputs = 0xB0 // "connected" although MCR says loopback
        expectRefused(uart, state, field: "modemInputs")
        state = good
        state.modemDeltas = 0x10
        expectRefused(uart, state, field: "modemDeltas")
        state = good
        state.receiveQueue = [UInt8](repeating: 1, count: 9)
        expectRefused(uart, state, field: "receiveQueue")
        state = good
        state.droppedInputBytes = -1
        expectRefused(uart, state, field: "droppedInputBytes")
    }
}

@Suite struct RTCStateTests {
    static let start: Int64 = 1_700_000_000 // 2023-11-14 22:13:20 UTC

    func write(_ rtc: RTCCMOS, _ register: UInt8, _ value: UInt8) {
        _ = rtc.write(offset: 0, size: 1, value: UInt32(register))
        _ = rtc.write(offset: 1, size: 1, value: UInt32(value))
    }

    /// Binary 24 h mode, the guest's clock set an hour back, alarm at any
    /// second of the current minute, AIE|UIE on, a CMOS byte written, NMI masked.
    func busyRTC(_ clock: ManualClock) -> RTCCMOS {
        let rtc = RTCCMOS(memorySize: 64 << 20, cpuCount: 2, wallClock: clock.seconds)
        write(rtc, RTCCMOS.Register.b, 0x06)
        write(rtc, RTCCMOS.Register.hours, 21)
        write(rtc, RTCCMOS.Register.secondsAlarm, 0xC0)
        write(rtc, RTCCMOS.Register.minutesAlarm, 13)
        write(rtc, RTCCMOS.Register.hoursAlarm, 21)
        write(rtc, RTCCMOS.Register.b, 0x36)
        write(rtc, 0x40, 0x77)
        _ = rtc.write(offset: 0, size: 1, value: 0x80 | UInt32(RTCCMOS.Register.a))
        return rtc
    }

    /// Reads every CMOS register, then A and C twice (UIP and flag edges).
    var everyRegister: [Access] {
        (0..<128).flatMap { [Access.write(0, UInt32($0)), .read(1)] }
            + [.write(0, 0x0A), .read(1), .read(1), .write(0, 0x0C), .read(1), .read(1)]
    }

    @Test func restoredRTCContinuesFromTheWallClock() throws {
        let oldHost = ManualClock(Self.start), newHost = ManualClock(Self.start + 3)
        let original = busyRTC(oldHost)
        let state = original.exportState()
        #expect(state.guestOffsetSeconds == -3600)
        #expect(state.nmiDisabled && state.index == RTCCMOS.Register.a)

        let restored = RTCCMOS(memorySize: 0, cpuCount: 1, wallClock: newHost.seconds)
        try restored.importState(try jsonRoundTrip(state))
        #expect(restored.exportState() == state)
        // The snapshot spent 3 s on disk: both RTCs see the same later wall clock.
        oldHost.set(Self.start + 3)
        #expect(restored.peek(RTCCMOS.Register.seconds) == 23)
        #expect(restored.peek(RTCCMOS.Register.hours) == 21)
        expectSameBehaviour(original, restored, everyRegister)
        oldHost.advance(by: 50)
        newHost.advance(by: 50)
        expectSameBehaviour(original, restored, everyRegister)
        #expect(original.advanceAlarm() == restored.advanceAlarm())
    }

    @Test func timeStagedUnderSETSurvives() throws {
        let clock = ManualClock(Self.start)
        let original = busyRTC(clock)
        write(original, RTCCMOS.Register.b, 0x86)
        write(original, RTCCMOS.Register.minutes, 59)
        let state = original.exportState()
        #expect(state.staged?.minute == 59)
        let restored = RTCCMOS(memorySize: 0, cpuCount: 1, wallClock: clock.seconds)
        try restored.importState(state)
        clock.advance(by: 10)
        expectSameBehaviour(original, restored, everyRegister + [.write(0, 0x0B), .write(1, 0x06)] + everyRegister)
    }

    @Test func impossibleStatesAreRefused() {
        let rtc = busyRTC(ManualClock(Self.start))
        let good = rtc.exportState()
        var state = good
        state.cmos = [0]
        expectRefused(rtc, state, field: "cmos")
        state = good
        state.index = 0x80
        expectRefused(rtc, state, field: "index")
        state = good
        state.registerA = 0xA6
        expectRefused(rtc, state, field: "registerA")
        state = good
        state.guestOffsetSeconds = .min
        expectRefused(rtc, state, field: "guestOffsetSeconds")
        state = good
        state.secondSeenByC = -1
        expectRefused(rtc, state, field: "secondSeenByC")
        state = good
        state.staged = .init(year: 2024, month: 1, day: 1, hour: 0, minute: 0, second: 0)
        expectRefused(rtc, state, field: "staged")
        state.registerB |= 0x80
        state.staged?.month = 13
        expectRefused(rtc, state, field: "staged.month")
        state = good
        state.registerB |= 0x80
        expectRefused(rtc, state, field: "staged")
    }
}

@Suite struct PowerManagementStateTests {
    @Test func pmTimerNeverGoesBackwardsAcrossARestore() throws {
        let oldClock = ManualClock(5_000_000_000), newClock = ManualClock(1_000)
        let original = ACPIPMTimer(clock: oldClock.nanoseconds)
        let saved = original.read(offset: 0, size: 4)
        let restored = ACPIPMTimer(clock: newClock.nanoseconds)
        try restored.importState(try jsonRoundTrip(original.exportState()))
        #expect(restored.read(offset: 0, size: 4) == saved)
        // 1 ms later: 3579.545 ticks on, whatever the fraction the rebase dropped.
        newClock.advance(by: 1_000_000)
        let elapsed = (restored.read(offset: 0, size: 4) &- saved) & ACPIPMTimer.counterMask
        #expect((3579...3580).contains(elapsed))
        oldClock.advance(by: 1_000_000)
        #expect(restored.ticks() >= original.ticks() - 1 && restored.ticks() <= original.ticks() + 1)
    }

    @Test func pm1RegistersBehaveAlike() throws {
        let clock = ManualClock(0)
        let originalTimer = ACPIPMTimer(clock: clock.nanoseconds)
        let original = ACPIPM1Registers(timer: originalTimer)
        _ = original.write(offset: 2, size: 2, value: 0x0521)          // PM1_EN: TMR, GBL, RTC
        _ = original.write(offset: 4, size: 2, value: 0x0402)          // SLP_TYP 1, BM_RLD (no SLP_EN)
        _ = original.write(offset: 0, size: 2, value: 0x0001)          // clear TMR_STS
        clock.advance(by: 3_000_000_000)                               // bit 23 toggles
        original.wake(byRTC: true)
        let newClock = ManualClock(7)
        let restoredTimer = ACPIPMTimer(clock: newClock.nanoseconds)
        try restoredTimer.importState(originalTimer.exportState())
        let restored = ACPIPM1Registers(timer: restoredTimer)
        try restored.importState(try jsonRoundTrip(original.exportState()))
        #expect(restored.exportState() == original.exportState())
        expectSameBehaviour(original, restored, [
            .read(0, size: 4), .read(4, size: 2), .write(0, 0x8401, size: 2), .read(0, size: 2),
            .write(2, 0x0100, size: 2), .read(2, size: 2), .write(4, 0x2400, size: 2), .read(4, size: 2),
        ])
    }

    @Test func impossibleStatesAreRefused() {
        let pm1 = ACPIPM1Registers(timer: nil)
        let good = pm1.exportState()
        var state = good
        state.enable = 0x8000
        expectRefused(pm1, state, field: "enable")
        state = good
        state.control = 0x0000
        expectRefused(pm1, state, field: "control")
        state = good
        state.control = 0x2001
        expectRefused(pm1, state, field: "control")
        state = good
        state.statusLatched = 0x0002
        expectRefused(pm1, state, field: "statusLatched")
        state = good
        state.lastSleepRequest = 8
        expectRefused(pm1, state, field: "lastSleepRequest")
    }
}

@Suite struct SmallDeviceStateTests {
    func firmwareConfig() throws -> FirmwareConfig {
        let config = FirmwareConfig(ramSize: 64 << 20, cpuCount: 2, maxCPUs: 4)
        try config.addFile(name: "etc/deflect/version", bytes: Array("1.0".utf8))
        return config
    }

    @Test func firmwareConfigContinuesMidItem() throws {
        let original = try firmwareConfig()
        let selector = try #require(original.selector(ofFile: "etc/deflect/version"))
        #expect(original.item(selector, 2) == Array("1.".utf8))
        let restored = try firmwareConfig()
        try restored.importState(try jsonRoundTrip(original.exportState()))
        expectSameBehaviour(original, restored, [.read(1), .read(1), .read(0), .write(0, 0x0003, size: 2),
                                                 .read(1), .read(1), .write(0, 0x1234, size: 2), .read(1)])
        #expect(restored.exportState() == original.exportState())
        #expect(restored.exportState().lastUnknownSelector == 0x1234)
    }

    @Test func firmwareConfigRefusesOffsetsItsConfigurationCannotHave() throws {
        let original = try firmwareConfig()
        let selector = try #require(original.selector(ofFile: "etc/deflect/version"))
        original.select(selector)
        _ = original.readData(3)
        // A machine configured without that file cannot continue the read.
        let other = FirmwareConfig(ramSize: 64 << 20, cpuCount: 2, maxCPUs: 4)
        expectRefused(other, original.exportState(), field: "dataOffset")
        var state = original.exportState()
        state.dataOffset = 4
        expectRefused(original, state, field: "dataOffset")
        state.dataOffset = -1
        expectRefused(original, state, field: "dataOffset")
        state = original.exportState()
        state.unknownSelectorReads = -5
        expectRefused(original, state, field: "unknownSelectorReads")
    }

    @Test func i8042KeepsPendingParametersAndBuffers() throws {
        let original = I8042Controller()
        _ = original.write(offset: 4, size: 1, value: 0xD0)   // output port → buffer
        _ = original.read(offset: 1, size: 1)                 // port B toggled
        _ = original.write(offset: 1, size: 1, value: 0x03)
        _ = original.write(offset: 4, size: 1, value: 0x60)   // waits for the command byte
        let restored = I8042Controller()
        try restored.importState(try jsonRoundTrip(original.exportState()))
        expectSameBehaviour(original, restored, [
            .read(4), .read(1), .read(1), .write(0, 0x47), .write(4, 0x20), .read(4), .read(0), .read(4),
            .write(4, 0xD1), .write(0, 0x00), .write(4, 0xFE),
        ])
        #expect(restored.commandByte == 0x47)
    }

    @Test func i8042RefusesImpossiblePortB() {
        let device = I8042Controller()
        var state = device.exportState()
        state.portB = 0x40
        expectRefused(device, state, field: "portB")
        state = device.exportState()
        state.portBToggle = 0x10
        expectRefused(device, state, field: "portBToggle")
    }

    @Test func postAndSyncPortsKeepTheirLastValue() throws {
        let post = PostCodePort(), sync = GuestSyncPort()
        _ = post.write(offset: 0, size: 2, value: 0xBEEF)
        _ = sync.write(offset: 0, size: 4, value: 7)
        let post2 = PostCodePort(), sync2 = GuestSyncPort()
        try post2.importState(try jsonRoundTrip(post.exportState()))
        try sync2.importState(try jsonRoundTrip(sync.exportState()))
        expectSameBehaviour(post, post2, [.read(0, size: 4), .read(0, size: 1)])
        expectSameBehaviour(sync, sync2, [.read(0, size: 4)])
    }
}

@Suite struct BusStateTests {
    /// A PC-like bus: UART, debug exit (stateless), i8042, POST, RTC, PM timer.
    func bus(clock: ManualClock, line: RecordingLine = RecordingLine()) throws -> (PortBus, Serial16550, I8042Controller) {
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        let i8042 = I8042Controller()
        var bus = PortBus()
        try bus.register(uart, base: 0x3F8, count: 8)
        try bus.register(DebugExitPort(), base: 0xF4, count: 1)
        try bus.register(i8042, base: 0x60, count: 5)
        try bus.register(PostCodePort(), base: 0x80, count: 1)
        try bus.register(RTCCMOS(memorySize: 64 << 20, cpuCount: 1, wallClock: clock.seconds), base: 0x70, count: 2)
        try bus.register(ACPIPMTimer(clock: clock.nanoseconds), base: 0x608, count: 4)
        return (bus, uart, i8042)
    }

    @Test func wholeBusRoundTripsThroughJSON() throws {
        let clock = ManualClock(1_700_000_000)
        let (original, uart, _) = try bus(clock: clock)
        uart.enqueueInput([1, 2, 3])
        _ = original.write(port: 0x3F9, size: 1, value: 0x01)
        _ = original.write(port: 0x80, size: 1, value: 0x42)
        _ = original.write(port: 0x64, size: 1, value: 0xD0)
        let states = original.exportDeviceStates()
        #expect(states.keys.sorted() == ["acpi-pm-timer@0x608", "i8042@0x60", "post-code@0x80", "rtc-cmos@0x70", "serial16550@0x3f8"])

        let line = RecordingLine()
        let (restored, _, _) = try bus(clock: clock, line: line)
        try restored.importDeviceStates(try jsonRoundTrip(states))
        #expect(restored.exportDeviceStates() == states)
        #expect(line.level)
        for (port, size) in [(0x3FA, 1), (0x3F8, 1), (0x80, 1), (0x64, 1), (0x60, 1), (0x608, 4), (0x71, 1)] {
            #expect(restored.read(port: UInt16(port), size: size) == original.read(port: UInt16(port), size: size))
        }
    }

    @Test func keysAndKindsMustMatchAndFailureRollsBack() throws {
        let clock = ManualClock(1_700_000_000)
        let (original, _, _) = try bus(clock: clock)
        _ = original.write(port: 0x64, size: 1, value: 0xD0)
        let states = original.exportDeviceStates()
        let (target, _, i8042) = try bus(clock: clock)
        let before = target.exportDeviceStates()

        var missing = states
        missing["post-code@0x80"] = nil
        #expect(throws: DeviceStateError(device: "post-code@0x80", field: "key", "missing from the saved states")) {
            try target.importDeviceStates(missing)
        }
        var extra = states
        extra["serial16550@0x2f8"] = states["serial16550@0x3f8"]
        #expect(throws: DeviceStateError(device: "serial16550@0x2f8", field: "key", "no such device on this machine")) {
            try target.importDeviceStates(extra)
        }
        var wrongKind = states
        wrongKind["serial16550@0x3f8"] = states["post-code@0x80"]
        let kindError = #expect(throws: DeviceStateError.self) { try target.importDeviceStates(wrongKind) }
        #expect(kindError?.field == "kind")

        // i8042 (port 0x60) imports before the UART (0x3f8) refuses: rolled back.
        var badUART = states
        guard case var .serial16550(uartState) = states["serial16550@0x3f8"] else {
            Issue.record("no UART state")
            return
        }
        uartState.interruptEnable = 0xFF
        badUART["serial16550@0x3f8"] = .serial16550(uartState)
        #expect(throws: DeviceStateError.self) { try target.importDeviceStates(badUART) }
        #expect(target.exportDeviceStates() == before)
        #expect(i8042.read(offset: 4, size: 1) == 0)
    }
}
