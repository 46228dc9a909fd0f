// VMM: the states a run goes through and the table of the changes allowed
// between them (as cloud-hypervisor's VmState::valid_transition). Every
// change of the run state is checked against this table by its one owner,
// `Lifecycle`; a change the table refuses does not happen.
//
//   created ──▶ running ◀──────────▶ pausing ──▶ paused ◀──▶ snapshotting
//      │           │  ▲                 │          │  ▲
//      │           │  └── suspended ◀───┴──────────┤  │
//      │           └──────▶ migrating ◀────────────┘  │
//      │                        └─────────────────────┘
//      └──▶ (every state but stopped) ──▶ stopping ──▶ stopped
//
// created→pausing is a start with every vCPU parked before its first
// instruction; pausing→suspended and paused→suspended take a guest's ACPI S3
// request that raced with a pause; migrating→running/paused is a failed
// migration going back to where it started.

/// Where a run is.
public enum VMRunState: String, Sendable, CaseIterable {
    /// Built; no vCPU has run.
    case created
    /// The vCPUs run the guest.
    case running
    /// Every vCPU is being stopped at a consistent point.
    case pausing
    /// Every vCPU is stopped at a consistent point; guest time stands still.
    case paused
    /// The guest put itself to sleep (ACPI S3); guest time goes on; a wake event resumes it.
    case suspended
    /// A snapshot is being written from the paused machine.
    case snapshotting
    /// An outgoing migration owns the machine until it ends.
    case migrating
    /// The run's outcome is decided; the vCPUs are leaving.
    case stopping
    /// The run is over.
    case stopped

    /// The states this one may change to.
    public var successors: Set<VMRunState> {
        switch self {
        case .created: [.running, .pausing, .stopping]
        case .running: [.pausing, .suspended, .migrating, .stopping]
        case .pausing: [.paused, .suspended, .stopping]
        case .paused: [.running, .suspended, .snapshotting, .migrating, .stopping]
        case .suspended: [.running, .stopping]
        case .snapshotting: [.paused, .stopping]
        case .migrating: [.running, .paused, .suspended, .stopping]
        case .stopping: [.stopped]
        case .stopped: []
        }
    }

    /// Whether the table allows changing from this state to `next`.
    public func canChange(to next: VMRunState) -> Bool { successors.contains(next) }
}

/// Why a control request was refused.
public enum LifecycleError: Error, Equatable, CustomStringConvertible {
    /// The run is not in a state that allows it (e.g. resume when running).
    case conflict(String)
    /// KVM refused a step; the VM keeps its previous state where it can.
    case host(String)

    public var description: String {
        switch self {
        case let .conflict(message), let .host(message): return message
        }
    }
}
