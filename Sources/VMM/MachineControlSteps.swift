// VMM: the control requests that take several steps inside the machine, each
// run as one step of the control path (`Lifecycle`): a snapshot (pause,
// write, then resume, stay paused or stop) and the start and end of an
// outgoing migration. Nothing else changes the run state in between.

/// What the VM does after a snapshot.
public enum AfterSnapshot: String, Sendable, CaseIterable {
    case resume, pause, stop
}

/// Why a snapshot request failed.
public enum SnapshotRequestError: Error, CustomStringConvertible {
    /// The VM's state does not allow it (suspended, stopped, ...).
    case refused(LifecycleError)
    /// Writing the snapshot failed; the VM went on as `then` asked.
    case failed(MachineError)

    public var description: String {
        switch self {
        case let .refused(error): "\(error)"
        case let .failed(error): "\(error)"
        }
    }
}

extension Machine {
    /// Writes a snapshot of the paused machine (see `writeSnapshot`) as one
    /// control step, in state `snapshotting` meanwhile.
    public func snapshot(to path: String, diff: Bool = false) throws(MachineError) -> SnapshotSummary {
        try lifecycle.whileSnapshotting { () throws(MachineError) -> SnapshotSummary in
            try writeSnapshot(to: path, diff: diff)
        }
    }

    /// Pauses the VM (if it runs), writes a snapshot and then resumes it,
    /// leaves it paused or stops it — as one control step: no other request
    /// resumes, pauses or changes the guest between the pause and the write.
    /// What the VM does next does not depend on whether the write worked.
    public func snapshot(to path: String, diff: Bool, then: AfterSnapshot) throws(SnapshotRequestError) -> SnapshotSummary {
        try lifecycle.perform { () throws(SnapshotRequestError) -> SnapshotSummary in
            do throws(LifecycleError) {
                try pause()
            } catch {
                throw .refused(error)
            }
            let outcome: Result<SnapshotSummary, MachineError>
            do throws(MachineError) {
                outcome = .success(try snapshot(to: path, diff: diff))
            } catch {
                outcome = .failure(error)
            }
            switch then {
            case .resume: _ = try? resume()
            case .pause: break
            case .stop: requestStop()
            }
            do throws(MachineError) {
                return try outcome.get()
            } catch {
                throw .failed(error)
            }
        }
    }
}
