// VMM: the run's state machine, with one owner: created → running →
// (pausing → paused → running)* → stopping → stopped. Pausing parks every
// vCPU at a consistent point (VCPUParking: KVM has finished the pending exit
// completion), stops the guest clock the emulated devices follow and saves
// the kvmclock base; resuming puts the kvmclock back (KVM_SET_CLOCK, as QEMU
// does across a stop) and releases the vCPUs. One pause or resume at a time;
// a guest-requested ACPI S3 suspend also goes through here, so the two never
// fight over the parked vCPUs.
import Dispatch
import Foundation
import KVM
import Synchronization

/// Where a run is.
public enum VMRunState: String, Sendable, CaseIterable {
    case created, running, pausing, paused, suspended, stopping, stopped
}

/// Why a state change was refused.
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

final class Lifecycle: Sendable {
    private struct State {
        var state: VMRunState = .created
        var startedAt: UInt64?
        var savedClock: KVMClockData?
    }

    private let state = Mutex(State())
    /// Serializes pause, resume and guest suspend (each waits for the vCPUs).
    private let transition = Mutex(())
    private let controller: RunController
    private let clock: GuestClock
    private let vm: VirtualMachine
    /// KVM_GET/SET_CLOCK exist on this host (KVM_CAP_ADJUST_CLOCK).
    private let adjustsClock: Bool

    init(controller: RunController, clock: GuestClock, vm: VirtualMachine, adjustsClock: Bool) {
        self.controller = controller
        self.clock = clock
        self.vm = vm
        self.adjustsClock = adjustsClock
    }

    var current: VMRunState { state.withLock { $0.state } }

    /// Seconds since `run()` started the vCPUs (0 before).
    var uptimeSeconds: Double {
        guard let started = state.withLock({ $0.startedAt }) else { return 0 }
        return Double(DispatchTime.now().uptimeNanoseconds &- started) / 1e9
    }

    /// Before the vCPU threads start: with `paused`, every vCPU parks at its
    /// first entry (the kick leaves `immediate_exit` set), so no guest
    /// instruction runs until `resume()`.
    func starting(paused: Bool) {
        state.withLock { s in
            s.state = paused ? .pausing : .running
            s.startedAt = DispatchTime.now().uptimeNanoseconds
        }
        if paused { controller.parking.request() }
    }

    /// After the vCPU threads started: completes a paused start.
    func started() {
        guard current == .pausing else { return }
        guard controller.parking.waitUntilAllParked(abandon: { controller.isFinished }) else { return }
        enterPaused()
    }

    /// Every vCPU is out of KVM_RUN: the kvmclock base is stable now. Saves
    /// it, stops the guest clock and marks the VM paused.
    private func enterPaused() {
        let saved = adjustsClock ? try? vm.clock() : nil
        clock.pause()
        state.withLock { s in
            s.state = .paused
            s.savedClock = saved
        }
    }

    /// The run is decided: no more pauses; a paused VM is stopped.
    func stopping() { state.withLock { s in if s.state != .stopped { s.state = .stopping } } }
    func stopped() { state.withLock { $0.state = .stopped } }

    /// Parks every vCPU at a consistent point and stops guest time. Returns
    /// how long it took. Idempotent when already paused.
    @discardableResult
    func pause() throws(LifecycleError) -> Double {
        try transition.withLock { (_: inout ()) throws(LifecycleError) -> Double in
            let begin = DispatchTime.now().uptimeNanoseconds
            let from = state.withLock { s -> VMRunState in
                let from = s.state
                if from == .running { s.state = .pausing }
                return from
            }
            switch from {
            case .running: break
            case .paused: return 0
            case .suspended: throw .conflict("the guest is suspended (ACPI S3); it cannot be paused until it wakes")
            default: throw .conflict("the VM is \(from.rawValue); only a running VM can be paused")
            }
            controller.parking.request()
            guard controller.parking.waitUntilAllParked(abandon: { controller.isFinished }) else {
                state.withLock { $0.state = .stopping }
                throw .conflict("the VM stopped while it was being paused")
            }
            enterPaused()
            return Double(DispatchTime.now().uptimeNanoseconds &- begin) / 1e9
        }
    }

    /// Puts the kvmclock back where the pause found it and releases the
    /// vCPUs. Idempotent when already running.
    @discardableResult
    func resume() throws(LifecycleError) -> Double {
        try transition.withLock { (_: inout ()) throws(LifecycleError) -> Double in
            let begin = DispatchTime.now().uptimeNanoseconds
            let (from, saved) = state.withLock { ($0.state, $0.savedClock) }
            switch from {
            case .paused: break
            case .running: return 0
            default: throw .conflict("the VM is \(from.rawValue); only a paused VM can be resumed")
            }
            if let saved {
                do throws(KVMError) {
                    try vm.setClock(KVMClockData(clock: saved.clock))
                } catch {
                    throw .host("cannot restore the kvmclock (KVM_SET_CLOCK): \(error); the VM stays paused")
                }
            }
            clock.resume()
            state.withLock { s in
                s.state = .running
                s.savedClock = nil
            }
            controller.parking.release()
            return Double(DispatchTime.now().uptimeNanoseconds &- begin) / 1e9
        }
    }

    /// A guest-requested ACPI S3: runs `suspend` (which parks the vCPUs and
    /// waits for a wake event) once the VM runs. A pause that came first is
    /// waited out (the guest's request is not lost); a stopping VM never
    /// suspends. Pause and resume are refused while the guest is suspended.
    func guestSuspend(_ suspend: () -> Void) {
        enum Decision { case suspend, wait, giveUp }
        while true {
            let decision = transition.withLock { _ in
                state.withLock { s -> Decision in
                    switch s.state {
                    case .running:
                        s.state = .suspended
                        return .suspend
                    case .pausing, .paused, .created: return .wait
                    default: return .giveUp
                    }
                }
            }
            switch decision {
            case .suspend:
                suspend()
                state.withLock { s in if s.state == .suspended { s.state = .running } }
                return
            case .wait:
                if controller.isFinished { return }
                Thread.sleep(forTimeInterval: 0.01)
            case .giveUp:
                return
            }
        }
    }
}
