// MigrationControlTests.swift — MSR_KVM_MIGRATION_CONTROL negotiation:
// every state × write combination, reads, reserved bits and the
// migration gate.

import Testing
import Hypercalls

@Suite struct MigrationControlTests {
    @Test func constants() {
        #expect(MigrationControl.msrIndex == 0x4b56_4d08)
        #expect(MigrationControl.enableBit == 1)
        #expect(MigrationControlState.notOffered.rawValue == "not-offered")
    }

    @Test func notOfferedRefusesWritesAndAllowsMigration() {
        var control = MigrationControl(offered: false)
        #expect(control.state == .notOffered)
        #expect(control.migrationAllowed)
        #expect(control.read() == 0)
        do { let accepted = control.write(1); #expect(!accepted) }
        do { let accepted = control.write(0); #expect(!accepted) }
        #expect(control.state == .notOffered)
    }

    @Test func offeredThenAgreedThenWithdrawn() {
        var control = MigrationControl(offered: true)
        #expect(control.state == .offered)
        #expect(!control.migrationAllowed)
        #expect(control.read() == 0)
        do { let accepted = control.write(0); #expect(accepted) }
        #expect(control.state == .offered)
        do { let accepted = control.write(1); #expect(accepted) }
        #expect(control.state == .agreed)
        #expect(control.read() == 1)
        #expect(control.migrationAllowed)
        do { let accepted = control.write(1); #expect(accepted) }
        #expect(control.state == .agreed)
        do { let accepted = control.write(0); #expect(accepted) }
        #expect(control.state == .offered)
        #expect(!control.migrationAllowed)
    }

    @Test(arguments: [UInt64(2), 3, 0x8000_0000_0000_0001, UInt64.max, 1 << 32])
    func reservedBitsAreRefusedWithoutChange(value: UInt64) {
        var offered = MigrationControl(offered: true)
        do { let accepted = offered.write(value); #expect(!accepted) }
        #expect(offered.state == .offered)
        var agreed = MigrationControl(offered: true)
        _ = agreed.write(1)
        do { let accepted = agreed.write(value); #expect(!accepted) }
        #expect(agreed.state == .agreed)
    }

    @Test func restoringEveryState() {
        for state in MigrationControlState.allCases {
            let control = MigrationControl(restoring: state)
            #expect(control.state == state)
            #expect(control.migrationAllowed == (state != .offered))
        }
        #expect(MigrationControl(restoring: .offered) == MigrationControl(offered: true))
    }
}
