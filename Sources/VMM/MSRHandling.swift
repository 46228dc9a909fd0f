// VMM: the RDMSR/WRMSR exit handler: answers each access per the VM's MSR
// policy, or under `deflect trace` records the guest's first access per MSR
// and direction and has KVM execute it; records every access in the vCPU's
// per-MSR statistics and reports the accesses the policy marks.
import KVM
import MSRPolicy

/// How this machine answers MSR exits.
public enum MSRSetup: Sendable {
    /// No user-space MSR handling: KVM decides everything (no MSR exits).
    case kernelOnly
    /// A per-VM policy decides.
    case policy(MSRPolicy)
    /// Every filterable MSR exits on its first access in each direction and is
    /// recorded; KVM then executes the guest's access itself (see `TraceFilter`).
    case trace
}

/// What the vCPU threads consult on an MSR exit.
enum MSRService: Sendable {
    case none
    case policy(MSRRuntime)
    case trace(TraceFilter)
}

/// An access the trace let through to KVM. Whether KVM accepted it shows at
/// the vCPU's next exit: an UNKNOWN/INVAL exit for the same MSR is KVM
/// refusing it; any other exit means KVM carried it out.
struct PassedThroughMSRAccess {
    var index: UInt32
    var written: UInt64?
    var rip: UInt64
}

extension VCPURunner {
    /// Answers one RDMSR (`written == nil`) or WRMSR exit. Allocation-free on
    /// the policy path unless the access is reported as an event. No guest
    /// access is ever served by a host-initiated KVM_GET_MSRS/KVM_SET_MSRS:
    /// KVM skips the checks it applies to guests for those.
    func handleMSR(_ exit: MSRExit, written: UInt64?) {
        let access: MSRAccess = written.map { .write($0) } ?? .read
        switch msrService {
        case .none:
            events.record(.unhandledMSR(vcpu: index, index: exit.index, isWrite: written != nil, value: written ?? 0))
            vcpu.completeMSR(injectGP: true)

        case let .policy(runtime):
            let reasons = exit.reason
            let decision = runtime.handle(index: exit.index, access: access, vcpu: index, reasons: reasons,
                                          cache: &msrGeneration)
            if decision.outcome == .kernelRefused, reasons.contains(.filter) {
                // A `kernel` rule that still exits through the filter: the
                // filter is being replaced. Once it is current, KVM executes
                // the guest's own access; until then this exit repeats.
                reexecuteAsGuestAccess(what: "policy replacement")
                return
            }
            vcpu.completeMSR(data: decision.value, injectGP: decision.injectGP)
            let value = written ?? (decision.injectGP ? 0 : decision.value)
            let rip = registerSync ? vcpu.exitRIP : nil
            accounting.recordMSR(index: exit.index, access: access, value: value, outcome: decision.outcome.rawValue, rip: rip)
            if decision.log {
                // Without register sync the key leaves RIP out, so that a
                // suppressed event costs no register read.
                events.record(key: MachineEvent.msrAccessKey(index: exit.index, isWrite: written != nil, rip: rip ?? 0)) {
                    .msrAccess(MSRAccessEvent(
                        vcpu: index, rip: rip ?? ripFromRegisters(), index: exit.index,
                        name: MSRCatalogue.name(exit.index), isWrite: written != nil,
                        value: value, outcome: decision.outcome.rawValue, injectedGP: decision.injectGP))
                }
            }

        case let .trace(filter):
            let rip = registerSync ? vcpu.exitRIP : ripFromRegisters()
            if exit.reason.contains(.filter) {
                // The first access in this direction: record it, let the MSR
                // through, and have KVM execute the guest's instruction again.
                do throws(KVMError) {
                    try filter.allow(exit.index, write: written != nil)
                } catch {
                    controller.finish(.hostError("vCPU \(index): trace cannot let MSR 0x\(String(exit.index, radix: 16)) through the filter: \(error)"))
                    return
                }
                if reexecuteAsGuestAccess(what: "trace") {
                    passedThrough = PassedThroughMSRAccess(index: exit.index, written: written, rip: rip)
                }
                return
            }
            // UNKNOWN / INVAL: KVM refused the guest's own access; #GP is
            // exactly what KVM does when user space is not asked.
            vcpu.completeMSR(injectGP: true)
            if let pending = passedThrough, pending.index == exit.index, (pending.written != nil) == (written != nil) {
                passedThrough = nil
            }
            accounting.recordMSR(index: exit.index, access: access, value: written ?? 0, outcome: "gp", rip: rip)
        }
    }

    /// Settles the trace's passed-through access at the vCPU's next exit
    /// (called before that exit is handled). An UNKNOWN/INVAL exit for the same
    /// MSR and direction is KVM refusing it and is recorded by `handleMSR`; any
    /// other exit means KVM carried it out. A kick may come before the guest
    /// re-executed the instruction, so it settles nothing.
    func settlePassedThroughAccess(before exit: VCPUExit) {
        guard let pending = passedThrough else { return }
        switch exit {
        case .interrupted:
            return
        case let .readMSR(msr) where pending.written == nil && msr.index == pending.index && !msr.reason.contains(.filter):
            return
        case let .writeMSR(msr) where pending.written != nil && msr.index == pending.index && !msr.reason.contains(.filter):
            return
        default:
            recordPassedThrough(pending, outcome: "ok")
        }
    }

    /// Records a passed-through access. A read's value is what KVM_GET_MSRS
    /// returns after the guest's own read succeeded (reporting only; the guest
    /// got its value from KVM).
    func recordPassedThrough(_ pending: PassedThroughMSRAccess, outcome: String) {
        passedThrough = nil
        let access: MSRAccess = pending.written.map { .write($0) } ?? .read
        let value = pending.written ?? ((try? vcpu.readMSR(pending.index)) ?? 0)
        accounting.recordMSR(index: pending.index, access: access, value: value, outcome: outcome, rip: pending.rip)
    }

    /// Completes the MSR exit without effect and puts the guest back on its
    /// RDMSR/WRMSR (registers as they were at the exit), so that its next entry
    /// executes the instruction again, this time inside KVM as the guest's own
    /// access. False (and the run ends) when KVM refuses a step.
    @discardableResult
    func reexecuteAsGuestAccess(what: String) -> Bool {
        do throws(KVMError) {
            let atInstruction = try vcpu.registers()
            vcpu.completeMSR(data: 0, injectGP: false)
            try vcpu.completePendingExit()
            try vcpu.setRegisters(atInstruction)
            return true
        } catch {
            controller.finish(.hostError("vCPU \(index): \(what): cannot re-execute the guest's MSR access: \(error)"))
            return false
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
