// VMMTests: when pre-copy stops iterating (MigrationConvergence; no KVM).
import Testing
@testable import VMM

@Suite("Pre-copy convergence")
struct MigrationConvergenceTests {
    private let mib: UInt64 = 1 << 20

    @Test func anEstimateOverTheBudgetNeverStops() {
        #expect(!MigrationConvergence.readyToStop(estimatedDowntime: 0.31, budget: 0.3, dirtyBytes: 100 * mib, previousRoundBytes: 100 * mib))
    }

    @Test func anIdleGuestStopsAtOnce() {
        #expect(MigrationConvergence.readyToStop(estimatedDowntime: 0, budget: 0.3, dirtyBytes: 0, previousRoundBytes: 64 * mib))
        #expect(MigrationConvergence.readyToStop(estimatedDowntime: 0.02, budget: 0.3, dirtyBytes: mib, previousRoundBytes: 64 * mib))
    }

    @Test func aFastShrinkingSetWithinTheBudgetGetsAnotherRound() {
        // 20 MiB left after a 40 MiB copy, 50 ms of pause: one more round
        // (seen: 16 MiB after a 30 MiB copy, at 100 MiB/s and 190 MiB/s).
        #expect(!MigrationConvergence.readyToStop(estimatedDowntime: 0.05, budget: 0.3, dirtyBytes: 20 * mib, previousRoundBytes: 40 * mib))
        #expect(!MigrationConvergence.readyToStop(estimatedDowntime: 0.084, budget: 0.3, dirtyBytes: 16 * mib, previousRoundBytes: 30 * mib))
        // The next round left 5 MiB, 12 ms: below a tenth of the budget.
        #expect(MigrationConvergence.readyToStop(estimatedDowntime: 0.012, budget: 0.3, dirtyBytes: 5 * mib, previousRoundBytes: 20 * mib))
    }

    @Test func aSetThatStopsShrinkingEndsTheRounds() {
        #expect(MigrationConvergence.readyToStop(estimatedDowntime: 0.2, budget: 0.3, dirtyBytes: 30 * mib, previousRoundBytes: 40 * mib))
    }
}
