// VMMTests: the guest clock: frozen while paused, continuing from a saved
// value (a restored machine's counters never go backwards).
import Foundation
import Testing
@testable import VMM

@Suite("Guest clock")
struct GuestClockTests {
    @Test func pausedTimeIsInvisible() {
        let clock = GuestClock()
        clock.pause()
        let frozen = clock.now()
        Thread.sleep(forTimeInterval: 0.02)
        #expect(clock.now() == frozen)
        clock.resume()
        #expect(clock.pausedNanoseconds >= 20_000_000)
        #expect(clock.now() >= frozen && clock.now() - frozen < 20_000_000)
    }

    @Test func continuesFromASavedValue() {
        let saved: UInt64 = 7 * 86_400 * 1_000_000_000   // a week of guest time, more than this host's uptime may be
        let clock = GuestClock(continuingAt: saved)
        #expect(clock.now() >= saved && clock.now() - saved < 1_000_000_000)
    }
}
