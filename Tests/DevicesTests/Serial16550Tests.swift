// Serial16550Tests.swift — the UART as a guest and Linux's 8250 driver see
// it: output, status bits, divisor latch, input queue, interrupts, loopback.

import Testing
import Devices

@Suite struct Serial16550Tests {
    @Test func transmittedStringReachesSinkInOrder() {
        let sink = BufferSink()
        let uart = Serial16550(output: sink)
        uart.send("Hello, Deflect!\n")
        #expect(sink.text == "Hello, Deflect!\n")
        #expect(uart.name == "serial16550")
    }

    @Test func wideWriteSendsOnlyLowByte() {
        let sink = BufferSink()
        let uart = Serial16550(output: sink)
        _ = uart.write(offset: UART.data, size: 4, value: 0x1234_5641)
        #expect(sink.bytes == [0x41])
    }

    @Test func lineStatusShowsTransmitterEmptyAndDataReady() {
        let uart = Serial16550(output: BufferSink())
        #expect(uart.reg(UART.lsr) == 0x60) // THRE | TEMT, no data
        uart.send("x")
        #expect(uart.reg(UART.lsr) == 0x60) // transmission is instantaneous
        uart.enqueueInput([0x61])
        #expect(uart.reg(UART.lsr) == 0x61) // DR added
        #expect(uart.reg(UART.data) == 0x61)
        #expect(uart.reg(UART.lsr) == 0x60)
    }

    @Test func wideReadReturnsZeroExtendedByte() {
        let uart = Serial16550(output: BufferSink())
        #expect(uart.read(offset: UART.lsr, size: 2) == 0x60)
        #expect(uart.read(offset: UART.lsr, size: 4) == 0x60)
    }

    @Test func divisorLatchRoundTripsAndHidesDataRegisters() {
        let sink = BufferSink()
        let uart = Serial16550(output: sink)
        uart.set(UART.ier, 0x05)
        uart.enqueueInput([0x42])

        uart.set(UART.lcr, 0x83) // DLAB | 8N1
        uart.set(UART.data, 0x01) // DLL, not THR
        uart.set(UART.ier, 0x02)  // DLM, not IER
        #expect(sink.bytes.isEmpty)
        #expect(uart.reg(UART.data) == 0x01)
        #expect(uart.reg(UART.ier) == 0x02)
        #expect(uart.divisor == 0x0201)
        #expect(uart.pendingInputCount == 1) // reading DLL did not pop RBR
        #expect(uart.reg(UART.lcr) == 0x83)

        uart.set(UART.lcr, 0x03)
        #expect(uart.reg(UART.ier) == 0x05) // IER untouched by DLM write
        #expect(uart.reg(UART.data) == 0x42) // RBR visible again
        uart.send("z")
        #expect(sink.bytes == [0x7A])
        #expect(uart.divisor == 0x0201)
    }

    @Test func interruptEnableKeepsOnlyLowNibble() {
        // Linux's autoconfig writes 0x0F and 0xFF-ish values and expects a
        // 16550 to return only bits 0–3.
        let uart = Serial16550(output: BufferSink())
        uart.set(UART.ier, 0xFF)
        #expect(uart.reg(UART.ier) == 0x0F)
        uart.set(UART.ier, 0x00)
        #expect(uart.reg(UART.ier) == 0x00)
    }

    @Test func inputIsReadInOrderAndEmptyReadReturnsZero() {
        let uart = Serial16550(output: BufferSink())
        uart.enqueueInput(Array("abc".utf8))
        #expect(uart.pendingInputCount == 3)
        var received: [UInt8] = []
        while uart.reg(UART.lsr) & 0x01 != 0 {
            received.append(uart.reg(UART.data))
        }
        #expect(received == Array("abc".utf8))
        #expect(uart.reg(UART.data) == 0)
        #expect(uart.reg(UART.lsr) & 0x01 == 0)
    }

    @Test func inputOverflowIsDroppedAndCounted() {
        let uart = Serial16550(output: BufferSink(), inputCapacity: 4)
        uart.enqueueInput([1, 2, 3])
        uart.enqueueInput([4, 5, 6])
        #expect(uart.pendingInputCount == 4)
        #expect(uart.droppedInputBytes == 2)
        #expect(uart.reg(UART.data) == 1)
        uart.enqueueInput([7, 8])
        #expect(uart.droppedInputBytes == 3)
        var received: [UInt8] = []
        while uart.reg(UART.lsr) & 0x01 != 0 { received.append(uart.reg(UART.data)) }
        #expect(received == [2, 3, 4, 7])
    }

    @Test func defaultCapacityIs64KiB() {
        let uart = Serial16550(output: BufferSink())
        uart.enqueueInput([UInt8](repeating: 0x55, count: 65_536 + 10))
        #expect(uart.pendingInputCount == 65_536)
        #expect(uart.droppedInputBytes == 10)
    }

    @Test func longInterleavedInputKeepsOrder() {
        // Exercises the queue's compaction of consumed bytes.
        let uart = Serial16550(output: BufferSink())
        var expected: [UInt8] = []
        var received: [UInt8] = []
        var next: UInt8 = 0
        for round in 0..<20 {
            let chunk = (0..<(3000 + round * 7)).map { _ in
                next &+= 1
                return next
            }
            expected += chunk
            uart.enqueueInput(chunk)
            for _ in 0..<2500 { received.append(uart.reg(UART.data)) }
        }
        while uart.reg(UART.lsr) & 0x01 != 0 { received.append(uart.reg(UART.data)) }
        #expect(received == expected)
        #expect(uart.droppedInputBytes == 0)
    }

    @Test func receivedDataInterruptFollowsQueue() {
        let line = RecordingLine()
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        uart.enqueueInput([0x31])
        #expect(line.history.isEmpty) // not enabled yet
        #expect(uart.reg(UART.iir) == 0x01)

        uart.set(UART.ier, 0x01)
        #expect(line.history == [true])
        #expect(uart.interruptLevel)
        #expect(uart.reg(UART.iir) == 0x04)
        #expect(uart.reg(UART.iir) == 0x04) // reading IIR does not clear RX
        _ = uart.reg(UART.data)
        #expect(line.history == [true, false])
        #expect(uart.reg(UART.iir) == 0x01)

        uart.enqueueInput([0x32, 0x33])
        #expect(line.history == [true, false, true])
        _ = uart.reg(UART.data)
        #expect(line.level) // one byte left
        _ = uart.reg(UART.data)
        #expect(line.history == [true, false, true, false])
    }

    @Test func thrEmptyInterruptOnEnableClearedByIIRRead() {
        let line = RecordingLine()
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        uart.set(UART.ier, 0x02)
        #expect(line.history == [true])
        #expect(uart.reg(UART.iir) == 0x02)
        #expect(line.history == [true, false]) // acknowledged by the read
        #expect(uart.reg(UART.iir) == 0x01)

        // Linux's startup THRE test: disable, re-enable, expect it again.
        uart.set(UART.ier, 0x00)
        uart.set(UART.ier, 0x02)
        #expect(uart.reg(UART.iir) == 0x02)
        #expect(uart.reg(UART.iir) == 0x01)
    }

    @Test func thrWriteGivesAFreshEdge() {
        let line = RecordingLine()
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        uart.set(UART.ier, 0x02)
        #expect(line.history == [true])
        uart.send("a") // clears pending THRE, then THR empties again
        #expect(line.history == [true, false, true])
        #expect(uart.reg(UART.iir) == 0x02)
        #expect(line.history == [true, false, true, false])
        uart.send("b")
        #expect(line.history == [true, false, true, false, true])
    }

    @Test func thrEmptyNotPendingWhileDisabledAndDroppedOnDisable() {
        let line = RecordingLine()
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        uart.send("a")
        #expect(line.history.isEmpty)
        #expect(uart.reg(UART.iir) == 0x01)
        uart.set(UART.ier, 0x02)
        #expect(line.level)
        uart.set(UART.ier, 0x00)
        #expect(!line.level)
        #expect(uart.reg(UART.iir) == 0x01)
    }

    @Test func receivedDataOutranksThrEmpty() {
        let line = RecordingLine()
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        uart.set(UART.ier, 0x03)
        uart.enqueueInput([0x41])
        #expect(uart.reg(UART.iir) == 0x04)
        #expect(uart.reg(UART.iir) == 0x04) // THRE still pending underneath
        _ = uart.reg(UART.data)
        #expect(line.level)
        #expect(uart.reg(UART.iir) == 0x02)
        #expect(!line.level)
        #expect(uart.reg(UART.iir) == 0x01)
        // The line stayed high across the RX → THRE hand-over.
        #expect(line.history == [true, false])
    }

    @Test func fifoEnableSetsIIRHighBits() {
        let uart = Serial16550(output: BufferSink())
        uart.set(UART.fcr, 0x07) // enable + clear both FIFOs
        #expect(uart.reg(UART.iir) == 0xC1)
        uart.set(UART.ier, 0x02)
        #expect(uart.reg(UART.iir) == 0xC2)
        uart.set(UART.fcr, 0x00)
        #expect(uart.reg(UART.iir) == 0x01)
    }

    @Test func fifoClearKeepsHostInput() {
        let uart = Serial16550(output: BufferSink())
        uart.enqueueInput([9])
        uart.set(UART.fcr, 0x07)
        #expect(uart.reg(UART.data) == 9)
    }

    @Test func loopbackRoutesTransmitToReceiver() {
        let sink = BufferSink()
        let line = RecordingLine()
        let uart = Serial16550(output: sink, interrupt: line)
        uart.set(UART.ier, 0x01)
        uart.set(UART.mcr, 0x10)
        uart.send("ok")
        #expect(sink.bytes.isEmpty)
        #expect(line.level)
        #expect(uart.reg(UART.lsr) & 0x01 == 0x01)
        #expect(uart.reg(UART.data) == UInt8(ascii: "o"))
        #expect(uart.reg(UART.data) == UInt8(ascii: "k"))
        #expect(!line.level)

        uart.set(UART.mcr, 0x08)
        uart.send("!")
        #expect(sink.text == "!")
        #expect(uart.pendingInputCount == 0)
    }

    @Test func loopbackModemStatusMirrorsModemControl() {
        let uart = Serial16550(output: BufferSink())
        #expect(uart.reg(UART.msr) == 0xB0) // DCD | DSR | CTS: terminal attached
        // Linux's autoconfig loopback test: MCR = LOOP | OUT2 | RTS → 0x90.
        uart.set(UART.mcr, 0x1A)
        #expect(uart.reg(UART.msr) & 0xF0 == 0x90)
        let pairs: [(mcr: UInt8, msr: UInt8)] = [
            (0x11, 0x20), // DTR  → DSR
            (0x12, 0x10), // RTS  → CTS
            (0x14, 0x40), // OUT1 → RI
            (0x18, 0x80), // OUT2 → DCD
            (0x1F, 0xF0),
            (0x10, 0x00),
        ]
        for pair in pairs {
            uart.set(UART.mcr, pair.mcr)
            #expect(uart.reg(UART.msr) & 0xF0 == pair.msr, "MCR \(pair.mcr)")
            #expect(uart.reg(UART.mcr) == pair.mcr)
        }
        uart.set(UART.mcr, 0x08)
        #expect(uart.reg(UART.msr) & 0xF0 == 0xB0)
    }

    @Test func modemStatusDeltasLatchAndInterrupt() {
        let line = RecordingLine()
        let uart = Serial16550(output: BufferSink(), interrupt: line)
        uart.set(UART.mcr, 0x10)     // loopback, all outputs low
        _ = uart.reg(UART.msr)       // clear deltas from entering loopback
        uart.set(UART.ier, 0x08)
        #expect(!line.level)
        uart.set(UART.mcr, 0x13)     // DTR and RTS rise
        #expect(line.level)
        #expect(uart.reg(UART.iir) == 0x00)
        #expect(uart.reg(UART.msr) == 0x33) // DSR|CTS with DDSR|DCTS
        #expect(!line.level)
        #expect(uart.reg(UART.msr) == 0x30) // deltas cleared by the read
        uart.set(UART.mcr, 0x14)     // RI rises: no trailing edge yet
        #expect(uart.reg(UART.msr) & 0x0F == 0x03) // DSR, CTS fell
        uart.set(UART.mcr, 0x10)     // RI falls: trailing edge
        #expect(uart.reg(UART.msr) == 0x04)
    }

    @Test func mcrKeepsOnlyFiveBits() {
        let uart = Serial16550(output: BufferSink())
        uart.set(UART.mcr, 0xEF)
        #expect(uart.reg(UART.mcr) == 0x0F)
    }

    @Test func scratchRegisterHoldsAnyByte() {
        let uart = Serial16550(output: BufferSink())
        for value: UInt8 in [0x00, 0x55, 0xAA, 0xFF] {
            uart.set(UART.scr, value)
            #expect(uart.reg(UART.scr) == value)
        }
        uart.set(UART.lcr, 0x80) // DLAB does not affect SCR
        #expect(uart.reg(UART.scr) == 0xFF)
    }

    @Test func statusRegistersIgnoreWrites() {
        let uart = Serial16550(output: BufferSink())
        uart.set(UART.lsr, 0x00)
        uart.set(UART.msr, 0x00)
        #expect(uart.reg(UART.lsr) == 0x60)
        #expect(uart.reg(UART.msr) == 0xB0)
    }

    @Test func offsetsBeyondEightAreOpenBus() {
        let uart = Serial16550(output: BufferSink())
        #expect(uart.read(offset: 8, size: 1) == 0xFF)
        #expect(uart.write(offset: 9, size: 1, value: 1) == .none)
    }
}
