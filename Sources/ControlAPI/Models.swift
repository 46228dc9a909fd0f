// ControlAPI: the JSON models of the control API (what `GET /vm`,
// `/vcpus/{i}/registers`, `/stats` and `/msrs` answer). Keys are snake_case
// on the wire (`ControlJSON`); 64-bit register and MSR values travel as "0x…"
// strings so that no client loses bits to a double.

/// A 64-bit value written as a lowercase hexadecimal string, "0x1b".
///
/// JSON numbers above 2^53 are not exact in most clients (JavaScript, jq),
/// and register and MSR values use all 64 bits.
public struct Hex64: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    public var description: String { "0x" + String(value, radix: 16) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard text.hasPrefix("0x"), let value = UInt64(text.dropFirst(2), radix: 16) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "expected a hexadecimal string \"0x…\", got \(text)"))
        }
        self.value = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

// MARK: - GET /vm

/// The run state machine of a VM (one owner: the VMM's `Lifecycle`; see docs/run-state.md).
public enum VMState: String, Codable, Sendable, CaseIterable {
    case created, running, pausing, paused, suspended, snapshotting, migrating, stopping, stopped
}

/// The configuration a VM was started with, as `deflect run` was given it.
public struct VMConfiguration: Codable, Sendable, Equatable {
    /// The image path.
    public var image: String
    /// How the image is loaded: "flat", "elf", "multiboot", …
    public var mode: String
    public var memoryMib: Int
    public var vcpus: Int
    /// "bare" or "pc".
    public var platform: String
    /// The MSR policy file, or nil when KVM alone decides MSRs.
    public var policyPath: String?
    /// The guest's CPU model: "host" (KVM's supported CPUID) or the model's
    /// name; `cpuSpec` is `--cpu` as given, normalised.
    public var cpuModel: String
    public var cpuSpec: String
    /// The model's vendor ("GenuineIntel", "AuthenticAMD").
    public var cpuVendor: String?

    public init(image: String, mode: String, memoryMib: Int, vcpus: Int, platform: String, policyPath: String?,
                cpuModel: String = "host", cpuSpec: String = "host", cpuVendor: String? = nil) {
        self.image = image
        self.mode = mode
        self.memoryMib = memoryMib
        self.vcpus = vcpus
        self.platform = platform
        self.policyPath = policyPath
        self.cpuModel = cpuModel
        self.cpuSpec = cpuSpec
        self.cpuVendor = cpuVendor
    }
}

/// The answer of `GET /vm`.
public struct VMInfo: Codable, Sendable, Equatable {
    public var state: VMState
    public var configuration: VMConfiguration
    /// Seconds since the VM was started (paused time included).
    public var uptimeSeconds: Double
    /// Seconds spent paused so far (the guest's clocks did not see them).
    public var pausedSeconds: Double

    /// The PCI functions besides the host bridge (virtio devices), by slot.
    public var devices: [PCIDeviceInfo]

    public init(state: VMState, configuration: VMConfiguration, uptimeSeconds: Double, pausedSeconds: Double,
                devices: [PCIDeviceInfo] = []) {
        self.state = state
        self.configuration = configuration
        self.uptimeSeconds = uptimeSeconds
        self.pausedSeconds = pausedSeconds
        self.devices = devices
    }
}

/// One device on the VM's PCI bus, as `GET /vm` lists it.
public struct PCIDeviceInfo: Codable, Sendable, Equatable {
    /// "BB:DD.F".
    public var address: String
    /// "virtio-blk", "virtio-net", "virtio-vsock", "virtio-rng", "virtio-console".
    public var type: String
    /// The host side: the disk file, the TAP, the vsock Unix socket; nil for none.
    public var backing: String?
    public var readOnly: Bool?
    /// The virtio device status byte the driver set (0 before a driver).
    public var driverStatus: Int
    /// Why the device needs a reset (a queue the guest broke), or nil.
    public var broken: String?

    public init(address: String, type: String, backing: String? = nil, readOnly: Bool? = nil, driverStatus: Int,
                broken: String? = nil) {
        self.address = address
        self.type = type
        self.backing = backing
        self.readOnly = readOnly
        self.driverStatus = driverStatus
        self.broken = broken
    }
}

/// The answer of `GET /cpuid`: the guest's CPU model and the table it sees.
public struct CPUIDReport: Codable, Sendable, Equatable {
    /// One entry as KVM_SET_CPUID2 holds it; values as "0x…" strings.
    public struct Leaf: Codable, Sendable, Equatable {
        public var function: Hex64
        public var index: Hex64
        public var eax, ebx, ecx, edx: Hex64

        public init(function: UInt32, index: UInt32, eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
            self.function = Hex64(UInt64(function)); self.index = Hex64(UInt64(index))
            self.eax = Hex64(UInt64(eax)); self.ebx = Hex64(UInt64(ebx))
            self.ecx = Hex64(UInt64(ecx)); self.edx = Hex64(UInt64(edx))
        }
    }

    /// "host" or the model's name; `spec` as given to --cpu.
    public var model: String
    public var spec: String
    /// The vendor string of leaf 0.
    public var vendor: String
    /// Feature names (Linux /proc/cpuinfo flags) set in the table.
    public var features: [String]
    /// vCPU 0's table, sorted by function and index.
    public var leaves: [Leaf]

    public init(model: String, spec: String, vendor: String, features: [String], leaves: [Leaf]) {
        (self.model, self.spec, self.vendor, self.features, self.leaves) = (model, spec, vendor, features, leaves)
    }
}

/// The body of `PUT /vm/state`.
public struct StateChangeRequest: Codable, Sendable, Equatable {
    public var state: RequestedState
    public init(state: RequestedState) { self.state = state }
}

// MARK: - GET /vcpus/{i}/registers

/// The general-purpose registers (`KVM_GET_REGS`).
public struct GeneralRegistersReport: Codable, Sendable, Equatable {
    public var rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp: Hex64
    public var r8, r9, r10, r11, r12, r13, r14, r15: Hex64
    public var rip, rflags: Hex64

    public init(rax: Hex64, rbx: Hex64, rcx: Hex64, rdx: Hex64, rsi: Hex64, rdi: Hex64, rsp: Hex64, rbp: Hex64,
                r8: Hex64, r9: Hex64, r10: Hex64, r11: Hex64, r12: Hex64, r13: Hex64, r14: Hex64, r15: Hex64,
                rip: Hex64, rflags: Hex64) {
        (self.rax, self.rbx, self.rcx, self.rdx, self.rsi, self.rdi, self.rsp, self.rbp) = (rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp)
        (self.r8, self.r9, self.r10, self.r11, self.r12, self.r13, self.r14, self.r15) = (r8, r9, r10, r11, r12, r13, r14, r15)
        (self.rip, self.rflags) = (rip, rflags)
    }
}

/// A segment register as KVM reports it (`struct kvm_segment`).
public struct SegmentReport: Codable, Sendable, Equatable {
    public var selector: Int
    public var base: Hex64
    public var limit: Hex64
    /// The descriptor type field (4 bits).
    public var type: Int
    public var present: Bool
    public var dpl: Int
    /// Default operation size (D/B bit).
    public var db: Bool
    /// Code or data segment (S bit) rather than a system segment.
    public var s: Bool
    /// 64-bit code segment (L bit).
    public var l: Bool
    /// Granularity (G bit).
    public var g: Bool
    public var avl: Bool
    public var unusable: Bool

    public init(selector: Int, base: Hex64, limit: Hex64, type: Int, present: Bool, dpl: Int,
                db: Bool, s: Bool, l: Bool, g: Bool, avl: Bool, unusable: Bool) {
        (self.selector, self.base, self.limit, self.type, self.present, self.dpl) = (selector, base, limit, type, present, dpl)
        (self.db, self.s, self.l, self.g, self.avl, self.unusable) = (db, s, l, g, avl, unusable)
    }
}

/// GDTR or IDTR (`struct kvm_dtable`).
public struct DescriptorTableReport: Codable, Sendable, Equatable {
    public var base: Hex64
    public var limit: Int
    public init(base: Hex64, limit: Int) { (self.base, self.limit) = (base, limit) }
}

/// The special registers (`KVM_GET_SREGS`).
public struct SpecialRegistersReport: Codable, Sendable, Equatable {
    public var cs, ds, es, fs, gs, ss, tr, ldt: SegmentReport
    public var gdt, idt: DescriptorTableReport
    public var cr0, cr2, cr3, cr4, cr8: Hex64
    public var efer: Hex64
    public var apicBase: Hex64

    public init(cs: SegmentReport, ds: SegmentReport, es: SegmentReport, fs: SegmentReport,
                gs: SegmentReport, ss: SegmentReport, tr: SegmentReport, ldt: SegmentReport,
                gdt: DescriptorTableReport, idt: DescriptorTableReport,
                cr0: Hex64, cr2: Hex64, cr3: Hex64, cr4: Hex64, cr8: Hex64, efer: Hex64, apicBase: Hex64) {
        (self.cs, self.ds, self.es, self.fs, self.gs, self.ss, self.tr, self.ldt) = (cs, ds, es, fs, gs, ss, tr, ldt)
        (self.gdt, self.idt) = (gdt, idt)
        (self.cr0, self.cr2, self.cr3, self.cr4, self.cr8, self.efer, self.apicBase) = (cr0, cr2, cr3, cr4, cr8, efer, apicBase)
    }
}

/// The answer of `GET /vcpus/{i}/registers`: the paused vCPU's state.
public struct VCPURegistersReport: Codable, Sendable, Equatable {
    public var vcpu: Int
    public var general: GeneralRegistersReport
    public var special: SpecialRegistersReport

    public init(vcpu: Int, general: GeneralRegistersReport, special: SpecialRegistersReport) {
        (self.vcpu, self.general, self.special) = (vcpu, general, special)
    }
}

// MARK: - GET /stats

/// A latency distribution in nanoseconds: count, sum and percentiles (from
/// the VMM's log-linear histograms, so each percentile is the upper bound of
/// its bucket, within the histogram's precision).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64
    public var totalNs: UInt64
    public var p50Ns: UInt64
    public var p90Ns: UInt64
    public var p99Ns: UInt64
    public var maxNs: UInt64

    public init(count: UInt64, totalNs: UInt64, p50Ns: UInt64, p90Ns: UInt64, p99Ns: UInt64, maxNs: UInt64) {
        (self.count, self.totalNs, self.p50Ns, self.p90Ns, self.p99Ns, self.maxNs) = (count, totalNs, p50Ns, p90Ns, p99Ns, maxNs)
    }

    public static let empty = LatencySummary(count: 0, totalNs: 0, p50Ns: 0, p90Ns: 0, p99Ns: 0, maxNs: 0)

    /// The mean in nanoseconds (0 when there is nothing).
    public var meanNs: UInt64 { count == 0 ? 0 : totalNs / count }
}

/// Count and the two times of one group of exits: time inside `KVM_RUN` before
/// the exit (guest plus kernel) and time handling it in user space.
public struct ExitTiming: Codable, Sendable, Equatable {
    public var count: UInt64
    public var inKvmRun: LatencySummary
    public var handling: LatencySummary

    public init(count: UInt64, inKvmRun: LatencySummary, handling: LatencySummary) {
        (self.count, self.inKvmRun, self.handling) = (count, inKvmRun, handling)
    }
}

/// One exit kind ("io", "mmio", "msr-read", "hlt", …).
public struct ExitKindRow: Codable, Sendable, Equatable {
    public var kind: String
    public var timing: ExitTiming
    public init(kind: String, timing: ExitTiming) { (self.kind, self.timing) = (kind, timing) }
}

/// Direction of a port or MSR access.
public enum AccessDirection: String, Codable, Sendable, CaseIterable {
    case read, write
}

/// One I/O port and direction ("read" is IN, "write" is OUT). `port` is nil
/// for the row that collects the ports beyond the VMM's cap on distinct keys.
public struct PortRow: Codable, Sendable, Equatable {
    public var port: Int?
    public var direction: AccessDirection
    public var timing: ExitTiming
    public init(port: Int?, direction: AccessDirection, timing: ExitTiming) {
        (self.port, self.direction, self.timing) = (port, direction, timing)
    }
}

/// One MSR and direction. `index` is nil for the row beyond the cap.
public struct MSRExitRow: Codable, Sendable, Equatable {
    public var index: Hex64?
    /// The catalogue name ("IA32_APIC_BASE"), when the MSR is known.
    public var name: String?
    public var direction: AccessDirection
    public var timing: ExitTiming
    public init(index: Hex64?, name: String?, direction: AccessDirection, timing: ExitTiming) {
        (self.index, self.name, self.direction, self.timing) = (index, name, direction, timing)
    }
}

/// One hypercall number. `number` is nil for the row beyond the cap.
public struct HypercallRow: Codable, Sendable, Equatable {
    public var number: UInt64?
    /// "KVM_HC_MAP_GPA_RANGE" for 12, nil for numbers without a name.
    public var name: String?
    public var timing: ExitTiming
    public init(number: UInt64?, name: String?, timing: ExitTiming) {
        (self.number, self.name, self.timing) = (number, name, timing)
    }
}

/// One vCPU's totals.
public struct VCPUStatsRow: Codable, Sendable, Equatable {
    public var vcpu: Int
    public var exits: UInt64
    public var inKvmRunNs: UInt64
    public var handlingNs: UInt64
    public init(vcpu: Int, exits: UInt64, inKvmRunNs: UInt64, handlingNs: UInt64) {
        (self.vcpu, self.exits, self.inKvmRunNs, self.handlingNs) = (vcpu, exits, inKvmRunNs, handlingNs)
    }
}

/// KVM's own binary statistics (`KVM_GET_STATS_FD`), by name, beside
/// Deflect's numbers. Cumulative and instant values alike, as KVM reports them.
public struct KVMBinaryStats: Codable, Sendable, Equatable {
    /// Whether this host offers the interface.
    public var available: Bool
    /// Why not, when `available` is false (e.g. "KVM_CAP_BINARY_STATS_FD is not offered").
    public var reason: String?
    /// The VM file descriptor's statistics.
    public var vm: [String: UInt64]
    /// One dictionary per vCPU, in vCPU order.
    public var vcpus: [[String: UInt64]]

    public init(available: Bool, reason: String?, vm: [String: UInt64], vcpus: [[String: UInt64]]) {
        (self.available, self.reason, self.vm, self.vcpus) = (available, reason, vm, vcpus)
    }

    /// The value when the host has no such interface.
    public static func unavailable(_ reason: String) -> KVMBinaryStats {
        KVMBinaryStats(available: false, reason: reason, vm: [:], vcpus: [])
    }
}

/// The answer of `GET /stats`: everything `--stats` shows, live.
public struct StatsReport: Codable, Sendable, Equatable {
    public var state: VMState
    public var uptimeSeconds: Double
    public var totalExits: UInt64
    /// Per exit kind, most frequent first.
    public var exits: [ExitKindRow]
    public var ports: [PortRow]
    public var msrs: [MSRExitRow]
    public var hypercalls: [HypercallRow]
    public var vcpus: [VCPUStatsRow]
    public var kvm: KVMBinaryStats

    public init(state: VMState, uptimeSeconds: Double, totalExits: UInt64, exits: [ExitKindRow], ports: [PortRow],
                msrs: [MSRExitRow], hypercalls: [HypercallRow], vcpus: [VCPUStatsRow], kvm: KVMBinaryStats) {
        (self.state, self.uptimeSeconds, self.totalExits) = (state, uptimeSeconds, totalExits)
        (self.exits, self.ports, self.msrs, self.hypercalls, self.vcpus, self.kvm) = (exits, ports, msrs, hypercalls, vcpus, kvm)
    }
}

// MARK: - GET /msrs

/// One MSR the guest touched: what the policy did with it and from where.
public struct MSRTableRow: Codable, Sendable, Equatable {
    public var index: Hex64
    public var name: String?
    public var reads: UInt64
    public var writes: UInt64
    /// The last value read or written, nil before the first access completes.
    public var lastValue: Hex64?
    /// How often each outcome happened ("emulated", "ignored", "kernel", "gp", …).
    public var outcomes: [String: UInt64]
    /// How often the guest got a #GP for this MSR.
    public var gpCount: UInt64
    /// The RIP of the last access.
    public var lastRip: Hex64?

    public init(index: Hex64, name: String?, reads: UInt64, writes: UInt64, lastValue: Hex64?,
                outcomes: [String: UInt64], gpCount: UInt64, lastRip: Hex64?) {
        (self.index, self.name, self.reads, self.writes, self.lastValue) = (index, name, reads, writes, lastValue)
        (self.outcomes, self.gpCount, self.lastRip) = (outcomes, gpCount, lastRip)
    }
}

/// The answer of `GET /msrs`.
public struct MSRTableReport: Codable, Sendable, Equatable {
    /// Sorted by MSR index.
    public var msrs: [MSRTableRow]
    /// Accesses to MSRs beyond the VMM's cap on distinct MSRs (counted, not itemized).
    public var otherAccesses: UInt64

    public init(msrs: [MSRTableRow], otherAccesses: UInt64) {
        (self.msrs, self.otherAccesses) = (msrs, otherAccesses)
    }
}

// MARK: - PUT /snapshot

/// The body of `PUT /snapshot`.
public struct SnapshotRequest: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable { case full, diff }
    public enum Then: String, Codable, Sendable, CaseIterable { case resume, pause, stop }

    /// The state file to write (the memory file beside it is PATH.mem-<16 hex>, named in the state file).
    public var path: String
    /// "full" (default) or "diff" (only pages dirtied since the last snapshot).
    public var type: Kind?
    /// What the VM does afterwards: "resume" (default), "pause" or "stop".
    public var then: Then?

    public init(path: String, type: Kind? = nil, then: Then? = nil) {
        (self.path, self.type, self.then) = (path, type, then)
    }
}

/// The answer of `PUT /snapshot`.
public struct SnapshotReport: Codable, Sendable, Equatable {
    public var path: String
    public var memoryPath: String
    public var type: SnapshotRequest.Kind
    public var stateBytes: Int
    public var memoryBytes: UInt64
    /// Seconds the capture and writing took (the VM was paused meanwhile).
    public var seconds: Double
    /// The VM's state after the snapshot.
    public var state: VMState

    public init(path: String, memoryPath: String, type: SnapshotRequest.Kind, stateBytes: Int, memoryBytes: UInt64,
                seconds: Double, state: VMState) {
        (self.path, self.memoryPath, self.type, self.stateBytes) = (path, memoryPath, type, stateBytes)
        (self.memoryBytes, self.seconds, self.state) = (memoryBytes, seconds, state)
    }
}

// MARK: - PUT /migrate, GET /migration

/// The body of `PUT /migrate`.
public struct MigrationRequest: Codable, Sendable, Equatable {
    /// "tcp:HOST:PORT" or "unix:PATH": where `deflect receive` listens.
    public var to: String
    /// The pause the guest may see at the end (default 300 ms).
    public var downtimeMs: Int?
    /// Give up (the VM keeps running here) after this many seconds (default 600).
    public var timeoutS: Double?
    /// Migrate although the guest has not set KVM_MIGRATION_READY (logged).
    public var force: Bool?
    /// An absolute path to the pre-shared key the receiver was given
    /// (`--psk-file`): every frame is then authenticated (HMAC-SHA256).
    public var pskFile: String?
    /// Not converged by `timeoutS`: pause and send the rest anyway (the
    /// downtime exceeds the budget) instead of giving up (default false).
    public var pauseAndCopy: Bool?

    public init(to: String, downtimeMs: Int? = nil, timeoutS: Double? = nil, force: Bool? = nil, pskFile: String? = nil,
                pauseAndCopy: Bool? = nil) {
        (self.to, self.downtimeMs, self.timeoutS, self.force, self.pskFile) = (to, downtimeMs, timeoutS, force, pskFile)
        self.pauseAndCopy = pauseAndCopy
    }
}

/// The progress of the VM's outgoing migration (`GET /migration`, and the
/// answer of `PUT /migrate`).
public struct MigrationStatus: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable, CaseIterable {
        case idle, connecting, copying, iterating
        case stopAndCopy = "stop-and-copy"
        case waitingForReceiver = "waiting-for-receiver"
        case completed, failed
        /// Go was sent, no running-ack came: the guest may run on the
        /// receiver; this VM stays paused (`last_error` says what to check).
        case inDoubt = "in-doubt"
    }

    public var phase: Phase
    public var destination: String?
    /// Dirty-page rounds after the full copy.
    public var iteration: Int
    public var bytesSent: UInt64
    public var dirtyBytesPerSecond: Double
    public var bandwidthBytesPerSecond: Double
    public var estimatedDowntimeMs: Double
    /// The pause the guest saw, once the receiver runs it.
    public var downtimeMs: Double?
    public var elapsedS: Double
    public var lastError: String?
    /// Not converged by the timeout, the VM was paused anyway (pause_and_copy).
    public var pausedBeforeConvergence: Bool?

    public init(phase: Phase, destination: String?, iteration: Int, bytesSent: UInt64, dirtyBytesPerSecond: Double,
                bandwidthBytesPerSecond: Double, estimatedDowntimeMs: Double, downtimeMs: Double?, elapsedS: Double,
                lastError: String?, pausedBeforeConvergence: Bool? = nil) {
        self.pausedBeforeConvergence = pausedBeforeConvergence
        (self.phase, self.destination, self.iteration, self.bytesSent) = (phase, destination, iteration, bytesSent)
        (self.dirtyBytesPerSecond, self.bandwidthBytesPerSecond) = (dirtyBytesPerSecond, bandwidthBytesPerSecond)
        (self.estimatedDowntimeMs, self.downtimeMs, self.elapsedS, self.lastError) = (estimatedDowntimeMs, downtimeMs, elapsedS, lastError)
    }

    /// No migration has been asked for.
    public static let idle = MigrationStatus(phase: .idle, destination: nil, iteration: 0, bytesSent: 0, dirtyBytesPerSecond: 0,
                                             bandwidthBytesPerSecond: 0, estimatedDowntimeMs: 0, downtimeMs: nil, elapsedS: 0,
                                             lastError: nil)

    /// Whether the migration has ended (any of three ways).
    public var isFinished: Bool { phase == .completed || phase == .failed || phase == .inDoubt }
}
