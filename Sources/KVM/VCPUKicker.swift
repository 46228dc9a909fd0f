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
    /// What one kick did.
    public enum Outcome: Equatable, Sendable {
        /// No thread is bound: `immediate_exit` alone ends the next KVM_RUN.
        case notRunning
        /// The bound thread was signalled.
        case signalled
        /// pthread_kill failed with this error number: a thread inside
        /// KVM_RUN stays there until its next exit.
        case signalFailed(errno: Int32)
    }

    /// Shared with the VCPU, so a kicker held after its VCPU writes to mapped memory.
    private let runPage: RunPage
    private let thread = Mutex<pthread_t?>(nil)

    init(runPage: RunPage) {
        self.runPage = runPage
        _ = kickHandlerResult
    }

    /// The kick signal (SIGRTMIN + 1).
    static var signalNumber: Int32 { ckvm_kick_signal() }

    /// Whether the kick signal has a handler (`deflect doctor` reports it).
    public static var handlerInstalled: Bool { kickHandlerResult == 0 && ckvm_kick_handler_present() == 1 }

    /// Call on the thread that will run KVM_RUN for this vCPU. Unblocks the
    /// kick signal on it (a thread started from a dispatch queue has it
    /// blocked) and throws when that thread still could not be kicked.
    public func bindCurrentThread() throws(KVMError) {
        try bindCurrentThread(unblocking: true)
    }

    /// `unblocking: false` only checks the thread, which is how a test gets a
    /// thread whose kick signal stays blocked.
    func bindCurrentThread(unblocking: Bool) throws(KVMError) {
        guard kickHandlerResult == 0 else {
            throw .kickUnavailable("sigaction for the kick signal failed: \(ErrnoName.describe(-kickHandlerResult))")
        }
        try Self.expect(ckvm_kick_handler_present(), 1, readFailure: "sigaction cannot read the kick signal's handler",
                        otherwise: "the kick signal's handler was replaced by SIG_DFL or SIG_IGN")
        if unblocking {
            let unblocked = ckvm_unblock_kick_signal()
            guard unblocked == 0 else {
                throw .kickUnavailable("pthread_sigmask cannot unblock the kick signal: \(ErrnoName.describe(-unblocked))")
            }
        }
        try Self.expect(ckvm_kick_signal_blocked(), 0, readFailure: "pthread_sigmask cannot read the signal mask",
                        otherwise: "the kick signal (SIGRTMIN+1) is blocked on this thread")
        let me = pthread_self()
        thread.withLock { $0 = me }
    }

    /// Checks a CKVM query's answer: negative is -error, else it must be `wanted`.
    private static func expect(_ answer: Int32, _ wanted: Int32, readFailure: String, otherwise: String) throws(KVMError) {
        guard answer == wanted else {
            throw .kickUnavailable(answer < 0 ? "\(readFailure): \(ErrnoName.describe(-answer))" : otherwise)
        }
    }

    /// Call before that thread exits, so no signal goes to a dead thread.
    public func unbind() {
        thread.withLock { $0 = nil }
    }

    /// Makes the vCPU's current or next KVM_RUN return `.interrupted`.
    @discardableResult
    public func kick() -> Outcome {
        ckvm_run_set_immediate_exit(runPage.pointer, 1)
        return thread.withLock { bound in
            guard let bound else { return .notRunning }
            // The lock orders this against unbind(): the bound thread has not
            // exited, so its pthread_t is valid and any error (even ESRCH) is
            // a real failure, not a thread that already left.
            let result = ckvm_kick_thread(bound)
            return result == 0 ? .signalled : .signalFailed(errno: -result)
        }
    }
}
