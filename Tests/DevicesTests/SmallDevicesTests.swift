// SmallDevicesTests.swift — debug-exit statuses, the i8042 reset and
// command-byte protocol plus port 0x61, the POST code port, and BufferSink.

import Testing
import Devices

@Suite struct DebugExitPortTests {
    @Test(arguments: [
        (UInt32(0), 1, Int32(1)),      // v = 0 → status 1
        (0x7F, 1, 0xFF),               // shell sees 255
        (0x80, 1, 0x101),              // shell sees 1
        (0xFF, 1, 0x1FF),
        (0x1234, 2, 0x2469),
        (0xFFFF, 2, 0x1FFFF),
        (0x1234_5678, 4, 0x2468_ACF1),
        (0xFFFF_FFFF, 4, -1),          // (2^33 - 1) truncated to 32 bits
    ])
    func writeRequestsExitWithShiftedStatus(value: UInt32, size: Int, status: Int32) {
        let port = DebugExitPort()
        #expect(port.write(offset: 0, size: size, value: value) == .exitGuest(status: status))
    }

    @Test func writeUsesOnlyTheAccessedBytes() {
        let port = DebugExitPort()
        #expect(port.write(offset: 0, size: 1, value: 0xAB01) == .exitGuest(status: 3))
        #expect(port.write(offset: 1, size: 2, value: 0x1_0002) == .exitGuest(status: 5))
    }

    @Test func shellStatusIsLowByte() {
        let port = DebugExitPort()
        guard case let .exitGuest(status) = port.write(offset: 0, size: 1, value: 0x7F) else {
            Issue.record("expected exitGuest")
            return
        }
        #expect(status & 0xFF == 255)
    }

    @Test func readsFloatHigh() {
        let port = DebugExitPort()
        #expect(port.read(offset: 0, size: 1) == 0xFF)
        #expect(port.read(offset: 0, size: 2) == 0xFFFF)
        #expect(port.read(offset: 0, size: 4) == 0xFFFF_FFFF)
        #expect(port.name == "debug-exit")
    }
}

@Suite struct I8042ControllerTests {
    let data: UInt16 = 0, portB: UInt16 = 1, command: UInt16 = 4

    @Test func resetCommand() {
        let kbc = I8042Controller()
        #expect(kbc.name == "i8042")
        #expect(kbc.write(offset: command, size: 1, value: 0xFE) == .resetRequested)
        // Pulsing lines other than reset does nothing.
        #expect(kbc.write(offset: command, size: 1, value: 0xFF) == .none)
        #expect(kbc.write(offset: command, size: 1, value: 0xFD) == .none)
        // 0xFE on the data port is a keyboard byte, not a reset.
        #expect(kbc.write(offset: data, size: 1, value: 0xFE) == .none)
    }

    @Test func idleStatusIsZero() {
        let kbc = I8042Controller()
        #expect(kbc.read(offset: command, size: 1) == 0)
        #expect(kbc.write(offset: command, size: 1, value: 0xAA) == .none) // unknown: no reply
        #expect(kbc.read(offset: command, size: 1) == 0)
    }

    @Test func readCommandByteSetsOutputFullUntilDataRead() {
        let kbc = I8042Controller()
        _ = kbc.write(offset: command, size: 1, value: 0x20)
        #expect(kbc.read(offset: command, size: 1) & 0x01 == 0x01)
        #expect(kbc.read(offset: data, size: 1) == UInt32(kbc.commandByte))
        #expect(kbc.read(offset: command, size: 1) == 0)
    }

    @Test func writeCommandByteTakesNextDataByte() {
        let kbc = I8042Controller()
        #expect(kbc.write(offset: command, size: 1, value: 0x60) == .none)
        #expect(kbc.read(offset: command, size: 1) == 0) // nothing to read
        #expect(kbc.write(offset: data, size: 1, value: 0x74) == .none)
        #expect(kbc.commandByte == 0x74)
        _ = kbc.write(offset: command, size: 1, value: 0x20)
        #expect(kbc.read(offset: data, size: 1) == 0x74)
        // The parameter is consumed: a later data byte is not a command byte.
        _ = kbc.write(offset: data, size: 1, value: 0x11)
        #expect(kbc.commandByte == 0x74)
    }

    @Test func outputPortResetLine() {
        let kbc = I8042Controller()
        _ = kbc.write(offset: command, size: 1, value: 0xD0)
        #expect(kbc.read(offset: data, size: 1) & 0x01 == 0x01)
        _ = kbc.write(offset: command, size: 1, value: 0xD1)
        #expect(kbc.write(offset: data, size: 1, value: 0xDF) == .none) // A20 on
        _ = kbc.write(offset: command, size: 1, value: 0xD1)
        #expect(kbc.write(offset: data, size: 1, value: 0xDE) == .resetRequested)
    }

    @Test func portBStoresWritableBitsAndToggles() {
        let kbc = I8042Controller()
        #expect(kbc.write(offset: portB, size: 1, value: 0x03) == .none)
        let first = kbc.read(offset: portB, size: 1)
        let second = kbc.read(offset: portB, size: 1)
        #expect(first & 0x0F == 0x03)
        #expect(second & 0x0F == 0x03)
        #expect((first ^ second) & 0x20 == 0x20) // timer 2 output changes
        #expect((first ^ second) & 0x10 == 0x10) // refresh toggle too
        #expect(kbc.read(offset: portB, size: 1) == first)
    }

    @Test func unusedOffsetsFloatHigh() {
        let kbc = I8042Controller()
        for offset: UInt16 in [2, 3] {
            #expect(kbc.write(offset: offset, size: 1, value: 0) == .none)
            #expect(kbc.read(offset: offset, size: 1) == 0xFF)
        }
    }
}

@Suite struct PostCodePortTests {
    @Test func remembersLastWrite() {
        let port = PostCodePort()
        #expect(port.name == "post-code")
        #expect(port.read(offset: 0, size: 1) == 0)
        #expect(port.write(offset: 0, size: 1, value: 0x1_23) == .none)
        #expect(port.read(offset: 0, size: 1) == 0x23)
        #expect(port.lastValue == 0x23)
        _ = port.write(offset: 0, size: 2, value: 0xBEEF)
        #expect(port.read(offset: 0, size: 2) == 0xBEEF)
        #expect(port.read(offset: 0, size: 1) == 0xEF)
    }
}

@Suite struct BufferSinkTests {
    @Test func capturesBytesAndFlushes() {
        let sink = BufferSink()
        for byte in "hé".utf8 { sink.write(byte) }
        sink.flush()
        #expect(sink.bytes == Array("hé".utf8))
        #expect(sink.text == "hé")
        #expect(sink.flushCount == 1)
        sink.removeAll()
        #expect(sink.bytes.isEmpty)
    }
}

@Suite("Guest sync port")
struct GuestSyncPortTests {
    @Test func writesBecomePhaseEffects() {
        let port = GuestSyncPort()
        #expect(port.write(offset: 0, size: 1, value: 0x1_03) == .guestPhase(3))
        #expect(port.read(offset: 0, size: 1) == 3)
        #expect(port.write(offset: 0, size: 4, value: 0x1234_5678) == .guestPhase(0x1234_5678))
        #expect(port.lastPhase == 0x1234_5678)
    }
}
