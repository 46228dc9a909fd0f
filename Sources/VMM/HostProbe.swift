// VMM: probes of what this host's KVM really does, beyond what capabilities
// claim: does a guest hypercall reach user space? Guarded by a watchdog
// because on some nested hosts a guest VMCALL never returns from KVM_RUN.
import Dispatch
import FoundationEssentials
import Glibc
import Hypercalls
import KVM
import Loader
import Synchronization

public enum HostProbe {
    /// The answer of one probe.
    public enum Answer: Sendable, Equatable {
        case yes(String)
        case no(String)
        /// The probe could not be run.
        case unknown(String)

        public var isYes: Bool { if case .yes = self { return true } else { return false } }
        public var text: String {
            switch self {
            case let .yes(s): return "yes: \(s)"
            case let .no(s): return "no: \(s)"
            case let .unknown(s): return "unknown: \(s)"
            }
        }
    }

    /// The probe guest, 16-bit real mode at 0x7C00:
    ///   mov eax, 12        ; KVM_HC_MAP_GPA_RANGE
    ///   xor ebx, ebx       ; a0: GPA 0
    ///   mov ecx, 1         ; a1: one 4 KiB page
    ///   xor edx, edx       ; a2: attributes 0 (shared)
    ///   vmcall
    ///   hlt
    static let hypercallGuest: [UInt8] = [
        0x66, 0xB8, 0x0C, 0x00, 0x00, 0x00,
        0x66, 0x31, 0xDB,
        0x66, 0xB9, 0x01, 0x00, 0x00, 0x00,
        0x66, 0x31, 0xD2,
        0x0F, 0x01, 0xC1,
        0xF4,
    ]

    /// Runs a guest that issues KVM_HC_MAP_GPA_RANGE with KVM_CAP_EXIT_HYPERCALL
    /// enabled, and reports whether the exit reached user space within `timeout`.
    public static func hypercallReachesUserSpace(system: KVMSystem, timeout: Double = 2) -> Answer {
        let vm: VirtualMachine
        let vcpu: VCPU
        do {
            guard try system.check(.exitHypercall) != 0 else {
                return .no("KVM_CAP_EXIT_HYPERCALL is not supported")
            }
            vm = try system.createVM()
            if try vm.check(.setTSSAddress) > 0 { try vm.setTSSAddress(Machine.tssAddress) }
            let memory = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 1 << 20)
            try vm.enable(.exitHypercall, arguments: [1 << 12])
            let image = try ImageLoader.load(hypercallGuest, mode: .real, memorySize: 1 << 20, vcpuCount: 1)
            for segment in image.segments {
                try memory.write(segment.bytes, at: GuestPhysicalAddress(segment.guestPhysicalAddress))
            }
            vcpu = try vm.createVCPU(id: 0)
            try vcpu.setCPUID(try system.supportedCPUID())
            try BootState.apply(image.cpuState(vcpu: 0, of: 1), to: vcpu)
        } catch {
            return .unknown("could not build the probe VM: \(error)")
        }

        let result = ProbeResult()
        let done = DispatchSemaphore(value: 0)
        let body: @Sendable () -> Void = {
            defer { vcpu.kicker.unbind(); done.signal() }
            do {
                try vcpu.kicker.bindCurrentThread()
                let exit = try vcpu.run()
                if case let .hypercall(call) = exit { vcpu.completeHypercall(returnValue: 0); _ = call }
                result.set(exit)
            } catch {
                result.set(error: "\(error)")
            }
        }
        do {
            try HostThread.start(name: "kvm-probe", body)
        } catch {
            return .unknown("\(error)")
        }
        var kicked = false
        if done.wait(timeout: .now() + timeout) == .timedOut {
            kicked = true
            vcpu.kicker.kick()
            if done.wait(timeout: .now() + 3) == .timedOut {
                return .no("VMCALL did not return from KVM_RUN within \(timeout) s, and the vCPU did not leave KVM_RUN when kicked")
            }
        }
        _ = vm
        switch result.get() {
        case let .exit(.hypercall(call))?:
            return call.number == HypercallNumber.mapGPARange ? .yes("KVM_EXIT_HYPERCALL nr=12 reached user space")
                                     : .no("hypercall exit with unexpected nr=\(call.number)")
        case .exit(.interrupted)? where kicked:
            return .no("VMCALL did not return from KVM_RUN within \(timeout) s (vCPU kicked out)")
        case let .exit(other)?:
            return .no("the guest's VMCALL ended KVM_RUN with \(other.kind) instead of a hypercall exit")
        case let .error(message)?:
            return .unknown("KVM_RUN failed: \(message)")
        case nil:
            return .unknown("probe thread ended without a result")
        }
    }
}

/// The probe thread's result, handed over under a lock.
private final class ProbeResult: Sendable {
    enum Value { case exit(VCPUExit), error(String) }
    private let value = Mutex<Value?>(nil)
    func set(_ exit: VCPUExit) { value.withLock { $0 = .exit(exit) } }
    func set(error: String) { value.withLock { $0 = .error(error) } }
    func get() -> Value? { value.withLock { $0 } }
}
