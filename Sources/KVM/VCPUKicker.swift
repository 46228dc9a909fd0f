// KVM: kicking a vCPU out of KVM_RUN from another thread: set the run page's
// `immediate_exit` (covers a thread about to enter KVM_RUN), then signal the
// thread (interrupts one inside KVM_RUN with EINTR).
internal import CKVM
import Glibc
import Synchronization

/// Installed once per process, before any vCPU thread can be kicked.
private let kickHandlerResult: Int32 = ckvm_install_kick_handler()

/// The cross-thread handle of one vCPU.
public final class VCPUKicker: @unchecked Sendable {
    // SAFETY: only `immediate_exit` is touched through this pointer, with an
    // atomic store; the mapping outlives the kicker's owner (the VCPU).
    private let run: UnsafeMutablePointer<kvm_run>
    private let thread = Mutex<pthread_t?>(nil)

    init(run: UnsafeMutablePointer<kvm_run>) {
        self.run = run
        _ = kickHandlerResult
    }

    /// Whether the signal handler could be installed (`deflect doctor` reports it).
    public static var handlerInstalled: Bool { kickHandlerResult == 0 }

    /// Call on the thread that will run KVM_RUN for this vCPU. Also unblocks
    /// the kick signal on it (a thread started from a dispatch queue has it blocked).
    public func bindCurrentThread() {
        _ = ckvm_unblock_kick_signal()
        let me = pthread_self()
        thread.withLock { $0 = me }
    }

    /// Call before that thread exits, so no signal goes to a dead thread.
    public func unbind() {
        thread.withLock { $0 = nil }
    }

    /// Makes the vCPU's current or next KVM_RUN return `.interrupted`.
    public func kick() {
        ckvm_run_set_immediate_exit(run, 1)
        thread.withLock { bound in
            if let bound { _ = pthread_kill(bound, ckvm_kick_signal()) }
        }
    }
}
