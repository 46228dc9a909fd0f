// MigrationControl.swift — the guest's side of live-migration consent:
// MSR_KVM_MIGRATION_CONTROL (0x4b564d08), whose bit 0 (KVM_MIGRATION_READY)
// a guest sets once its shared-page list is trustworthy. The state is part of
// the VM's state: migration and snapshot must refuse a guest that was
// offered the feature and has not agreed.

/// Where the negotiation stands.
public enum MigrationControlState: String, Sendable, CaseIterable, Codable {
    /// CPUID does not advertise KVM_FEATURE_MIGRATION_CONTROL: nothing to negotiate.
    case notOffered = "not-offered"
    /// Advertised, but the guest has not (or no longer) set KVM_MIGRATION_READY.
    case offered
    /// The guest wrote KVM_MIGRATION_READY.
    case agreed
}

/// The MSR as a pure state machine; the VMM routes guest RDMSR/WRMSR of
/// `msrIndex` here and injects #GP when `write` returns false.
public struct MigrationControl: Sendable, Equatable {
    /// `MSR_KVM_MIGRATION_CONTROL`.
    public static let msrIndex: UInt32 = 0x4b56_4d08
    /// `KVM_MIGRATION_READY`, the only defined bit.
    public static let enableBit: UInt64 = 1

    public private(set) var state: MigrationControlState

    /// A VM whose CPUID does (`offered`) or does not advertise the feature.
    public init(offered: Bool) {
        state = offered ? .offered : .notOffered
    }

    /// Rebuilds a saved state (snapshot restore, incoming migration).
    public init(restoring state: MigrationControlState) {
        self.state = state
    }

    /// The MSR value: `enableBit` once agreed, else 0. (A guest that was not
    /// offered the MSR should not read it; if it does, it sees 0.)
    public func read() -> UInt64 {
        state == .agreed ? Self.enableBit : 0
    }

    /// A guest WRMSR. Returns false — the VMM injects #GP and nothing changes —
    /// when the feature was not offered or a reserved bit (63:1) is set.
    /// Writing 0 withdraws consent, as the register reads back what was
    /// written; Linux only ever writes 1, once.
    public mutating func write(_ value: UInt64) -> Bool {
        guard state != .notOffered, value & ~Self.enableBit == 0 else { return false }
        state = value & Self.enableBit != 0 ? .agreed : .offered
        return true
    }

    /// Whether a live migration may start: yes if there was nothing to
    /// negotiate or the guest agreed; no while it is offered and unanswered.
    public var migrationAllowed: Bool {
        state != .offered
    }
}
