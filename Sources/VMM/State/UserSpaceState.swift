// VMM: the state Deflect itself owns, as saved in a snapshot: the MSR policy
// (as TOML text) and its emulated values per vCPU and per VM, the guest's
// shared/private page map and hypercall counts, the migration-control
// negotiation, and the guest clock the emulated counters follow (so RAPL
// energy and the PM timer continue from where they were, never backwards).
import Hypercalls
import MSRPolicy

/// Everything user space owns besides devices.
public struct UserSpaceState: Codable, Sendable, Equatable {
    /// One range of the page map.
    public struct PageRange: Codable, Sendable, Equatable {
        public var start: UInt64
        public var end: UInt64
        public var attribute: PageAttribute
    }

    /// How the machine's MSRs were handled (a traced machine cannot be
    /// saved: its filter state is a recording session, not guest state).
    public enum MSRMode: String, Codable, Sendable {
        case kernelOnly = "kernel-only"
        /// The policy in `policyTOML`.
        case policy
    }

    public var msrMode: MSRMode
    /// The policy in force, written back as TOML (`PolicyWriter`).
    public var policyTOML: String?
    public var emulatedMSRs: [EmulatedValue]
    /// nil when the VM does not handle MAP_GPA_RANGE.
    public var pageMap: [PageRange]?
    public var hypercallCounts: [UInt64: UInt64]
    /// nil when migration control is not offered.
    public var migrationControl: MigrationControlState?
    /// `GuestClock.now()` at the capture.
    public var guestClockNanoseconds: UInt64
    /// The host's CLOCK_REALTIME (ns) just before the vCPUs were captured: a
    /// migration's receiver advances the guest TSC by the time since
    /// (`TSCAdvance`). nil in files written before it was recorded.
    public var vcpuCaptureRealtimeNanoseconds: UInt64?
}

extension Machine {
    /// The user-space state now (call while paused, so no vCPU changes it).
    func captureUserSpaceState() throws(MachineError) -> UserSpaceState {
        var mode = UserSpaceState.MSRMode.kernelOnly, toml: String?, emulated: [EmulatedValue] = []
        switch configuration.msr {
        case .kernelOnly: break
        case .trace: throw .configuration("a traced machine cannot be snapshotted (its MSR filter is a recording session); run it without trace")
        case .policy: break
        }
        if let msrRuntime {
            // The route of MSR_KVM_MIGRATION_CONTROL to the VMM is not the
            // user's: a restore adds it again (effectiveMSRSetup), so it is
            // saved without it, and a VM that had no policy of its own
            // restores with none.
            var policy = msrRuntime.policy
            if configuration.hypercalls.migrationControl {
                let own = policy.rules.filter { !($0.first == MigrationControl.msrIndex && $0.last == MigrationControl.msrIndex
                                                   && $0.origin == Machine.migrationControlRouteOrigin) }
                var withoutRoute = MSRPolicy(rules: own, defaultAction: policy.defaultAction, defaultScope: policy.defaultScope,
                                             logDefault: policy.logDefault, profile: policy.profile)
                withoutRoute.profile = policy.profile
                policy = withoutRoute
            }
            if case .kernelOnly = configuration.msr, policy.rules.isEmpty {
                mode = .kernelOnly
            } else {
                mode = .policy
                toml = PolicyWriter.toml(policy)
            }
            emulated = msrRuntime.emulatedValues()
        }
        let pageMap = hypercallHandler.map { handler in
            handler.snapshot().ranges.map { UserSpaceState.PageRange(start: $0.range.lowerBound, end: $0.range.upperBound, attribute: $0.attribute) }
        }
        return UserSpaceState(msrMode: mode, policyTOML: toml, emulatedMSRs: emulated, pageMap: pageMap,
                              hypercallCounts: hypercallHandler?.callCounts ?? [:], migrationControl: migrationGate?.state,
                              guestClockNanoseconds: guestClock.now())
    }
}

extension UserSpaceState {
    /// The MSR setup a restore builds the machine with.
    func msrSetup() throws(MachineError) -> MSRSetup {
        switch (msrMode, policyTOML) {
        case (.kernelOnly, _): return .kernelOnly
        case let (.policy, text?):
            do {
                return .policy(try PolicyLoader.load(text, file: "snapshot policy"))
            } catch {
                throw .snapshot("the saved MSR policy does not load: \(error)")
            }
        case (.policy, nil): throw .snapshot("the user section has MSR mode \"policy\" but no policy")
        }
    }

    /// The page map these ranges describe, checked to cover exactly `memorySize`.
    func rebuiltPageMap(memorySize: UInt64) throws(MachineError) -> GPAAttributeMap? {
        guard let pageMap else { return nil }
        var map = GPAAttributeMap(size: memorySize)
        var expected: UInt64 = 0
        for range in pageMap {
            guard range.start == expected, range.end > range.start, range.end <= memorySize else {
                throw .snapshot("page map range \(range.start)..<\(range.end) does not continue at \(expected) within \(memorySize) bytes")
            }
            map.set(range.start..<range.end, to: range.attribute)
            expected = range.end
        }
        guard expected == memorySize else {
            throw .snapshot("page map covers \(expected) of \(memorySize) bytes")
        }
        return map
    }
}
