// ControlAPITests: a scripted `VMControl` (no KVM): a state machine the
// tests drive, fixed reports, and a log of what the server asked for.
import ControlAPI
import Synchronization

/// A test double for the VMM side of the control API.
final class FakeVM: VMControl {
    struct Recorded {
        var state: VMState = .running
        var stateRequests: [RequestedState] = []
        var shutdowns = 0
        var policies: [String] = []
        var migration = MigrationStatus.idle
        var migrationRequests: [MigrationRequest] = []
    }

    let recorded = Mutex(Recorded())
    let broadcaster: EventBroadcaster
    let configuration = VMConfiguration(image: "Guests/build/hello.bin", mode: "flat", memoryMib: 64, vcpus: 2,
                                        platform: "bare", policyPath: "examples/policy.toml")

    init(eventCapacity: Int = 1024) {
        broadcaster = EventBroadcaster(capacity: eventCapacity)
    }

    var state: VMState { recorded.withLock { $0.state } }

    func info() async -> VMInfo {
        VMInfo(state: state, configuration: configuration, uptimeSeconds: 12.5, pausedSeconds: 1.25)
    }

    func setState(_ requested: RequestedState) async throws(ControlError) {
        try recorded.withLock { (r: inout Recorded) throws(ControlError) in
            r.stateRequests.append(requested)
            switch (r.state, requested) {
            case (.stopping, _), (.stopped, _):
                throw .conflict("the VM is \(r.state.rawValue)")
            case (_, .paused): r.state = .paused
            case (_, .running): r.state = .running
            }
        }
    }

    func shutdown() async throws(ControlError) {
        try recorded.withLock { (r: inout Recorded) throws(ControlError) in
            guard r.state != .stopped else { throw .conflict("the VM has already stopped") }
            r.shutdowns += 1
            r.state = .stopping
        }
    }

    func registers(vcpu: Int) async throws(ControlError) -> VCPURegistersReport {
        guard state == .paused else { throw .conflict("vCPU registers can be read only while the VM is paused") }
        return Self.registers(vcpu: vcpu)
    }

    func stats() async -> StatsReport { Self.stats(state: state) }

    func cpuid() async -> CPUIDReport {
        CPUIDReport(model: "x86-64-v2", spec: "x86-64-v2", vendor: "GenuineIntel", features: ["cx16", "sse4_2"],
                    leaves: [.init(function: 0, index: 0, eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69)])
    }

    func msrs() async -> MSRTableReport { Self.msrTable }

    func replacePolicy(text: String) async throws(ControlError) {
        if text.contains("bogus") {
            throw .invalidPolicy("the policy has 2 errors; the previous policy stays", diagnostics: [
                PolicyDiagnostic(line: 3, column: 1, message: "unknown key bogus"),
                PolicyDiagnostic(line: nil, column: nil, message: "no default action"),
            ])
        }
        recorded.withLock { $0.policies.append(text) }
    }

    func events() -> EventSubscription { broadcaster.subscribe() }

    func snapshot(_ request: SnapshotRequest) async throws(ControlError) -> SnapshotReport {
        guard request.path.hasPrefix("/") else { throw .badRequest("the snapshot path must be absolute") }
        let state: VMState = recorded.withLock { r in
            if request.then == .pause { r.state = .paused } else if request.then == .stop { r.state = .stopping }
            return r.state
        }
        return SnapshotReport(path: request.path, memoryPath: request.path + ".mem", type: request.type ?? .full, stateBytes: 4096,
                              memoryBytes: 16 << 20, seconds: 0.01, state: state)
    }

    func migrate(_ request: MigrationRequest) async throws(ControlError) -> MigrationStatus {
        guard request.to.hasPrefix("unix:") || request.to.hasPrefix("tcp:") else {
            throw .badRequest("invalid migration address \"\(request.to)\"")
        }
        let status = MigrationStatus(phase: .connecting, destination: request.to, iteration: 0, bytesSent: 0, dirtyBytesPerSecond: 0,
                                     bandwidthBytesPerSecond: 0, estimatedDowntimeMs: 0, downtimeMs: nil, elapsedS: 0, lastError: nil)
        recorded.withLock { $0.migration = status; $0.migrationRequests.append(request) }
        return status
    }

    func migration() async -> MigrationStatus { recorded.withLock { $0.migration } }

    // MARK: Scripted reports

    static func registers(vcpu: Int) -> VCPURegistersReport {
        func segment(_ selector: Int, code: Bool) -> SegmentReport {
            SegmentReport(selector: selector, base: Hex64(0), limit: Hex64(0xffff_ffff), type: code ? 11 : 3, present: true,
                            dpl: 0, db: false, s: true, l: code, g: true, avl: false, unusable: false)
        }
        let general = GeneralRegistersReport(
            rax: Hex64(0x1234), rbx: Hex64(2), rcx: Hex64(3), rdx: Hex64(4), rsi: Hex64(5), rdi: Hex64(6),
            rsp: Hex64(0x80000 - UInt64(vcpu) * 0x1000), rbp: Hex64(8), r8: Hex64(9), r9: Hex64(10), r10: Hex64(11),
            r11: Hex64(12), r12: Hex64(13), r13: Hex64(14), r14: Hex64(15), r15: Hex64(UInt64.max),
            rip: Hex64(0x10_0010), rflags: Hex64(0x2))
        let special = SpecialRegistersReport(
            cs: segment(0x8, code: true), ds: segment(0x10, code: false), es: segment(0x10, code: false),
            fs: segment(0x10, code: false), gs: segment(0x10, code: false), ss: segment(0x10, code: false),
            tr: segment(0x18, code: false), ldt: segment(0, code: false),
            gdt: DescriptorTableReport(base: Hex64(0x1000), limit: 0x27), idt: DescriptorTableReport(base: Hex64(0), limit: 0xfff),
            cr0: Hex64(0x8000_0011), cr2: Hex64(0), cr3: Hex64(0x9000), cr4: Hex64(0x20), cr8: Hex64(0),
            efer: Hex64(0x500), apicBase: Hex64(0xfee0_0900))
        return VCPURegistersReport(vcpu: vcpu, general: general, special: special)
    }

    static func timing(_ count: UInt64, _ base: UInt64) -> ExitTiming {
        ExitTiming(count: count,
                   inKvmRun: LatencySummary(count: count, totalNs: count * base * 3, p50Ns: base * 3, p90Ns: base * 4, p99Ns: base * 5, maxNs: base * 9),
                   handling: LatencySummary(count: count, totalNs: count * base, p50Ns: base, p90Ns: base * 2, p99Ns: base * 3, maxNs: base * 7))
    }

    static func stats(state: VMState) -> StatsReport {
        StatsReport(
            state: state, uptimeSeconds: 12.5, totalExits: 1_500,
            exits: [ExitKindRow(kind: "msr-read", timing: timing(1_000, 900)), ExitKindRow(kind: "io", timing: timing(500, 400))],
            ports: [PortRow(port: 0x3f8, direction: .write, timing: timing(400, 350)), PortRow(port: nil, direction: .read, timing: timing(100, 300))],
            msrs: [MSRExitRow(index: Hex64(0x1b), name: "IA32_APIC_BASE", direction: .read, timing: timing(999, 800)),
                   MSRExitRow(index: nil, name: nil, direction: .read, timing: timing(1, 1_000))],
            hypercalls: [HypercallRow(number: 12, name: "KVM_HC_MAP_GPA_RANGE", timing: timing(3, 2_000))],
            vcpus: [VCPUStatsRow(vcpu: 0, exits: 1_000, inKvmRunNs: 3_000_000, handlingNs: 900_000),
                    VCPUStatsRow(vcpu: 1, exits: 500, inKvmRunNs: 1_000_000, handlingNs: 200_000)],
            kvm: KVMBinaryStats(available: true, reason: nil, vm: ["remote_tlb_flush": 4],
                                vcpus: [["exits": 1_200, "io_exits": 500], ["exits": 600, "halt_exits": 1]]))
    }

    static let msrTable = MSRTableReport(msrs: [
        MSRTableRow(index: Hex64(0x1b), name: "IA32_APIC_BASE", reads: 999, writes: 0, lastValue: Hex64(0xfee0_0900),
                    outcomes: ["kernel": 999], gpCount: 0, lastRip: Hex64(0x10_0010)),
        MSRTableRow(index: Hex64(0xc001_0000), name: nil, reads: 1, writes: 2, lastValue: nil,
                    outcomes: ["gp": 3], gpCount: 3, lastRip: Hex64(0x10_0020)),
    ], otherAccesses: 7)
}
