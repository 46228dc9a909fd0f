// VMM: the live MSR filter of `deflect trace`, shared by the vCPU threads.
// The first access to an MSR in each direction exits through the filter; the
// vCPU that sees it lets that MSR through and has the guest execute the
// instruction again, now served by KVM as the guest's own access.
import KVM
import MSRPolicy
import Synchronization

final class TraceFilter: Sendable {
    private let plan = Mutex(TraceFilterPlan())
    private let install: @Sendable (CompiledFilter) throws(KVMError) -> Void

    /// `install`: KVM_X86_SET_MSR_FILTER on the VM (replaceable in tests).
    init(install: @escaping @Sendable (CompiledFilter) throws(KVMError) -> Void) {
        self.install = install
    }

    /// The filter the trace starts with: every filterable MSR exits.
    var initialFilter: CompiledFilter { plan.withLock { $0.filter } }

    /// True when the allowed MSRs no longer fit in KVM's 16 ranges and the
    /// filter allows everything (only refused accesses are still seen).
    var saturated: Bool { plan.withLock { $0.saturated } }

    /// Lets `index` through in one direction and installs the new filter.
    /// Serialized, so two vCPUs never install filters out of order.
    func allow(_ index: UInt32, write: Bool) throws(KVMError) {
        try plan.withLock { (plan: inout TraceFilterPlan) throws(KVMError) -> Void in
            guard !plan.allows(index, write: write) else { return }
            var next = plan
            let filter = next.allow(index, write: write)
            try install(filter)
            plan = next
        }
    }
}
