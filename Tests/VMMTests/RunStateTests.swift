// VMMTests: the run state's transition table, pair by pair: every change it
// allows and every one it refuses, written out here independently of the
// table in Sources/VMM/RunState.swift. No KVM needed.
import Testing
@testable import VMM

@Suite("Run state transitions")
struct RunStateTests {
    /// The allowed changes, as docs/run-state.md draws them.
    static let allowed: [VMRunState: [VMRunState]] = [
        .created: [.running, .pausing, .stopping],
        .running: [.pausing, .suspended, .migrating, .stopping],
        .pausing: [.paused, .suspended, .stopping],
        .paused: [.running, .suspended, .snapshotting, .migrating, .stopping],
        .suspended: [.running, .stopping],
        .snapshotting: [.paused, .stopping],
        .migrating: [.running, .paused, .suspended, .stopping],
        .stopping: [.stopped],
        .stopped: [],
    ]

    @Test(arguments: VMRunState.allCases)
    func everyChangeFromAStateIsAllowedOrRefusedAsDocumented(from: VMRunState) {
        let expected = Set(Self.allowed[from] ?? [])
        for to in VMRunState.allCases {
            #expect(from.canChange(to: to) == expected.contains(to), "\(from) → \(to)")
        }
        #expect(from.successors == expected)
    }

    @Test func theTableCoversEveryState() {
        #expect(Set(Self.allowed.keys) == Set(VMRunState.allCases))
        #expect(VMRunState.allCases.count == 9)
    }

    @Test func noStateChangesToItselfAndStoppedIsFinal() {
        for state in VMRunState.allCases { #expect(!state.canChange(to: state), "\(state)") }
        #expect(VMRunState.stopped.successors.isEmpty)
    }

    @Test func everyStateButStoppedCanEndTheRunAndOnlyStoppingEndsInStopped() {
        for state in VMRunState.allCases where state != .stopped && state != .stopping {
            #expect(state.canChange(to: .stopping), "\(state)")
            #expect(!state.canChange(to: .stopped), "\(state)")
        }
        #expect(VMRunState.stopping.canChange(to: .stopped))
    }

    @Test func snapshotsAndRegisterReadsNeedAPausedMachine() {
        #expect(VMRunState.allCases.filter { $0.canChange(to: .snapshotting) } == [.paused])
        // Nothing comes back to created, and a migration starts only from running or paused.
        #expect(VMRunState.allCases.filter { $0.canChange(to: .created) }.isEmpty)
        #expect(Set(VMRunState.allCases.filter { $0.canChange(to: .migrating) }) == [.running, .paused])
    }
}
