// TestSupport.swift — test doubles shared by the device tests: an interrupt
// line that records every level change, and UART register helpers.

import Testing
import Devices

/// Records every `setLevel` call so tests can check levels and edges.
final class RecordingLine: InterruptLine {
    private(set) var history: [Bool] = []
    var level: Bool { history.last ?? false }

    func setLevel(_ high: Bool) { history.append(high) }
}

/// UART register offsets, named for readable tests.
enum UART {
    static let data: UInt16 = 0
    static let ier: UInt16 = 1
    static let iir: UInt16 = 2
    static let fcr: UInt16 = 2
    static let lcr: UInt16 = 3
    static let mcr: UInt16 = 4
    static let lsr: UInt16 = 5
    static let msr: UInt16 = 6
    static let scr: UInt16 = 7
}

extension Serial16550 {
    /// Byte read of a register (what guests do).
    func reg(_ offset: UInt16) -> UInt8 {
        UInt8(truncatingIfNeeded: read(offset: offset, size: 1))
    }

    /// Byte write of a register; UART writes never have an effect.
    func set(_ offset: UInt16, _ value: UInt8) {
        #expect(write(offset: offset, size: 1, value: UInt32(value)) == .none)
    }

    /// Sends `text` through THR.
    func send(_ text: String) {
        for byte in text.utf8 { set(UART.data, byte) }
    }
}
