// VMMTests: the arithmetic of a migrated guest's TSC advance (TSCAdvance):
// realtime elapsed × TSC rate, clamped at 0 when the receiver's clock is
// behind the sender's, saturating instead of overflowing.
import Testing
import VMM

@Suite("TSC advance after a migration")
struct TSCAdvanceTests {
    @Test func elapsedRealtimeBecomesTicksAtTheGuestsRate() {
        let advance = TSCAdvance(capturedRealtime: 1_000_000_000, restoreRealtime: 1_300_000_000, tscKHz: 2_300_000)
        #expect(advance.elapsedNanoseconds == 300_000_000 && advance.ticks == 690_000_000 && advance.clampedNanoseconds == 0)
        // 1 ns at 2.3 GHz is 2.3 ticks: truncated, never rounded up past the elapsed time.
        #expect(TSCAdvance(capturedRealtime: 5, restoreRealtime: 6, tscKHz: 2_300_000).ticks == 2)
        #expect(TSCAdvance(capturedRealtime: 7, restoreRealtime: 7, tscKHz: 2_300_000).ticks == 0)
    }

    @Test func aReceiverClockBehindTheSendersNeverMovesTheTSCBack() {
        let advance = TSCAdvance(capturedRealtime: 2_000_000_000, restoreRealtime: 1_750_000_000, tscKHz: 2_300_000)
        #expect(advance.ticks == 0 && advance.elapsedNanoseconds == 0)
        #expect(advance.clampedNanoseconds == 250_000_000)
    }

    @Test func anAbsurdElapsedTimeSaturates() {
        // 2^64 - 1 ns at 4.29 GHz: the product needs more than 64 bits after the division.
        let advance = TSCAdvance(capturedRealtime: 0, restoreRealtime: .max, tscKHz: .max)
        #expect(advance.ticks == .max)
        // Just inside: 2^63 ns at 1 GHz is 2^63 ticks.
        #expect(TSCAdvance(capturedRealtime: 0, restoreRealtime: 1 << 63, tscKHz: 1_000_000).ticks == 1 << 63)
    }
}
