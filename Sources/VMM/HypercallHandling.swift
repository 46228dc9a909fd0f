// VMM: the hypercall side of a machine: which hypercalls exit to user space
// (KVM_CAP_EXIT_HYPERCALL), the KVM_HC_MAP_GPA_RANGE handler with its
// shared/private page map, and the MSR_KVM_MIGRATION_CONTROL negotiation that
// gates live migration.
import Hypercalls
import KVM
import MSRPolicy
import Synchronization

/// What the VM offers the guest in the paravirtual interface.
public struct HypercallSetup: Sendable, Equatable {
    /// Exit on KVM_HC_MAP_GPA_RANGE and keep the page map in user space;
    /// advertises KVM_FEATURE_HC_MAP_GPA_RANGE (CPUID 0x40000001 EAX bit 16).
    public var mapGPARange: Bool
    /// Handle MSR_KVM_MIGRATION_CONTROL in user space; advertises
    /// KVM_FEATURE_MIGRATION_CONTROL (bit 17).
    public var migrationControl: Bool

    public init(mapGPARange: Bool = false, migrationControl: Bool = false) {
        self.mapGPARange = mapGPARange
        self.migrationControl = migrationControl
    }

    public static let none = HypercallSetup()

    /// KVM_FEATURE_HC_MAP_GPA_RANGE and KVM_FEATURE_MIGRATION_CONTROL.
    static let mapGPARangeFeature: UInt32 = 1 << 16
    static let migrationControlFeature: UInt32 = 1 << 17

    /// The bits of CPUID 0x40000001 EAX this setup advertises; the others of
    /// the two are cleared, since KVM's supported CPUID lists them whether or
    /// not the VMM handles them.
    var advertisedFeatures: UInt32 {
        (mapGPARange ? Self.mapGPARangeFeature : 0) | (migrationControl ? Self.migrationControlFeature : 0)
    }
}

/// The migration-control negotiation, shared by all vCPUs.
public final class MigrationGate: Sendable {
    private let control: Mutex<MigrationControl>

    init(offered: Bool) { control = Mutex(MigrationControl(offered: offered)) }

    /// A restored negotiation (snapshot, incoming migration).
    init(restoring state: MigrationControlState) { control = Mutex(MigrationControl(restoring: state)) }

    /// RDMSR of MSR_KVM_MIGRATION_CONTROL.
    func read() -> UInt64 { control.withLock { $0.read() } }

    /// WRMSR; false means #GP.
    func write(_ value: UInt64) -> Bool { control.withLock { $0.write(value) } }

    /// not offered / offered / agreed.
    public var state: MigrationControlState { control.withLock { $0.state } }

    /// Whether a live migration may start: refused when the guest was offered
    /// the feature and has not agreed.
    public var migrationAllowed: Bool { control.withLock { $0.migrationAllowed } }
}

extension VCPURunner {
    /// Answers one KVM_EXIT_HYPERCALL. `ret` is written on every exit.
    func handleHypercall(_ call: HypercallExit) {
        guard let hypercalls else {
            events.record(.unhandledHypercall(vcpu: index, number: call.number))
            vcpu.completeHypercall(returnValue: KVMErrorCode.returnValue(KVMErrorCode.enosys))
            return
        }
        let outcome = hypercalls.handle(number: call.number, arguments: call.arguments, longMode: call.longMode)
        vcpu.completeHypercall(returnValue: outcome.returnValue)
        events.record(.hypercall(HypercallEvent(vcpu: index, number: call.number, arguments: call.arguments,
                                                returnValue: outcome.returnValue, error: outcome.error.map { "\($0)" })))
    }

    /// MSR_KVM_MIGRATION_CONTROL, when the machine owns it; false when it does not.
    func handleMigrationControl(_ exit: MSRExit, written: UInt64?) -> Bool {
        guard let migrationGate, exit.index == MigrationControl.msrIndex else { return false }
        let access: MSRAccess
        let value: UInt64
        let gp: Bool
        if let written {
            access = .write(written)
            gp = !migrationGate.write(written)
            value = written
        } else {
            access = .read
            value = migrationGate.read()
            gp = false
        }
        vcpu.completeMSR(data: value, injectGP: gp)
        accounting.recordMSR(index: exit.index, access: access, value: value, outcome: gp ? "migration-control-gp" : "migration-control",
                        rip: registerSync ? vcpu.exitRIP : nil)
        return true
    }
}
