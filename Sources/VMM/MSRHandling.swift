// VMM: the RDMSR/WRMSR exit handler: answers each access per the VM's MSR
// policy (or, under `deflect trace`, the way KVM itself would), records it in
// the vCPU's per-MSR statistics, and reports the accesses the policy marks.
import KVM
import MSRPolicy

/// How this machine answers MSR exits.
public enum MSRSetup: Sendable {
    /// No user-space MSR handling: KVM decides everything (no MSR exits).
    case kernelOnly
    /// A per-VM policy decides.
    case policy(MSRPolicy)
    /// Every filterable MSR exits; each access is served through
    /// KVM_GET_MSRS / KVM_SET_MSRS on the vCPU and recorded.
    case trace
}

/// What the vCPU threads consult on an MSR exit.
enum MSRService: Sendable {
    case none
    case policy(MSRRuntime)
    case trace
}

extension VCPURunner {
    /// Answers one RDMSR (`written == nil`) or WRMSR exit. Allocation-free on
    /// the policy path unless the access is reported as an event.
    func handleMSR(_ exit: MSRExit, written: UInt64?) {
        let access: MSRAccess = written.map { .write($0) } ?? .read
        switch msrService {
        case .none:
            events.record(.unhandledMSR(vcpu: index, index: exit.index, isWrite: written != nil, value: written ?? 0))
            vcpu.completeMSR(injectGP: true)

        case let .policy(runtime):
            let reasons = MSRExitReasons(rawValue: exit.reason.rawValue)
            var decision = runtime.handle(index: exit.index, access: access, vcpu: index, reasons: reasons)
            var outcome = decision.outcome.rawValue
            if decision.outcome == .kernelRefused, reasons.contains(.filter) {
                // A `kernel` rule that still exits through the filter: the
                // filter is being replaced. Serve it the way KVM would.
                (decision.value, decision.injectGP) = passThrough(exit.index, written: written)
                outcome = "kernel"
            }
            vcpu.completeMSR(data: decision.value, injectGP: decision.injectGP)
            let value = written ?? (decision.injectGP ? 0 : decision.value)
            let rip = registerSync ? vcpu.exitRIP : nil
            msrStats.record(index: exit.index, access: access, value: value, outcome: outcome, rip: rip)
            if decision.log {
                events.record(.msrAccess(MSRAccessEvent(
                    vcpu: index, rip: rip ?? ripFromRegisters(), index: exit.index,
                    name: MSRCatalogue.name(exit.index), isWrite: written != nil,
                    value: value, outcome: outcome, injectedGP: decision.injectGP)))
            }

        case .trace:
            let (value, gp) = passThrough(exit.index, written: written)
            vcpu.completeMSR(data: value, injectGP: gp)
            let rip = registerSync ? vcpu.exitRIP : ripFromRegisters()
            msrStats.record(index: exit.index, access: access, value: written ?? value,
                            outcome: gp ? "gp" : "ok", rip: rip)
        }
    }

    /// The access done by KVM on the guest's behalf (host-initiated
    /// KVM_GET_MSRS / KVM_SET_MSRS); #GP where KVM refuses it.
    private func passThrough(_ index: UInt32, written: UInt64?) -> (value: UInt64, injectGP: Bool) {
        do {
            if let written {
                try vcpu.writeMSR(index, value: written)
                return (0, false)
            }
            return (try vcpu.readMSR(index), false)
        } catch {
            return (0, true)
        }
    }

    private func ripFromRegisters() -> UInt64 {
        (try? vcpu.registers().rip) ?? 0
    }
}

/// Reads the host's MSRs through the msr driver (/dev/cpu/0/msr), for the
/// opt-in `host` action.
final class DevCPUMSRReader: HostMSRReader {
    private let path: String

    init(cpu: Int = 0) { path = "/dev/cpu/\(cpu)/msr" }

    func read(_ index: UInt32) -> UInt64? {
        HostFiles.readMSR(path: path, index: index)
    }
}
