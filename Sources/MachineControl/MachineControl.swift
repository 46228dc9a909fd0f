// MachineControl: the VMM's side of the control API — a running `Machine` as
// a `VMControl`: its state machine (pause/resume at a consistent point), its
// live accounting as the API's reports, policy replacement from TOML text and
// the rate-limited event feed. Every request that reads or changes the run
// state is submitted to the machine's serial control path as one step
// (`Machine.controlStep`) and awaited: the blocking VMM work (a pause waits
// for every vCPU to park) runs there, never on the server's tasks.
import ControlAPI
import CPUModel
import FoundationEssentials
import Glibc
import Hypercalls
import KVM
import KVMABI
import Migration
import MSRPolicy
import VMM

public final class MachineControl: VMControl {
    private let machine: Machine
    private let configuration: VMConfiguration
    private let broadcaster: EventBroadcaster
    private let subscription: Int

    /// `configuration`: the VM as the user started it (paths as typed).
    public init(machine: Machine, configuration: VMConfiguration, eventBuffer: Int = 1024) {
        self.machine = machine
        self.configuration = configuration
        let broadcaster = EventBroadcaster(capacity: eventBuffer)
        self.broadcaster = broadcaster
        subscription = machine.events.subscribe { line in broadcaster.publish(line) }
    }

    deinit { machine.events.unsubscribe(subscription) }

    /// Ends open event streams (the run is over).
    public func finish() { broadcaster.finish() }

    public func info() async -> VMInfo {
        VMInfo(state: Self.state(machine.state), configuration: configuration, uptimeSeconds: machine.uptimeSeconds,
               pausedSeconds: Double(machine.guestClock.pausedNanoseconds) / 1e9,
               devices: machine.pciDevices().map { device in
                   PCIDeviceInfo(address: device.address, type: device.typeName,
                                 backing: device.backing, readOnly: device.readOnly, driverStatus: Int(device.driverStatus),
                                 broken: device.broken)
               })
    }

    public func setState(_ state: RequestedState) async throws(ControlError) {
        let machine = self.machine
        let result: Result<Double, LifecycleError> = await machine.controlStep {
            do throws(LifecycleError) {
                return .success(state == .paused ? try machine.pause() : try machine.resume())
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success: return
        case let .failure(error): throw Self.controlError(error)
        }
    }

    public func shutdown() async throws(ControlError) {
        do throws(LifecycleError) {
            try machine.shutdown()
        } catch {
            throw Self.controlError(error)
        }
    }

    public func registers(vcpu: Int) async throws(ControlError) -> VCPURegistersReport {
        let machine = self.machine
        let result: Result<(Registers, SpecialRegisters)?, LifecycleError> = await machine.controlStep {
            do throws(LifecycleError) {
                return .success(try machine.registers(vcpu: vcpu))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case let .success((general, special)?):
            return VCPURegistersReport(vcpu: vcpu, general: Self.report(general), special: Self.report(special))
        case .success(nil):
            throw .notFound("no vCPU \(vcpu); the VM has \(machine.vcpus.count)")
        case let .failure(.conflict(message)):
            throw .conflict("\(message); PUT /vm/state {\"state\": \"paused\"} first")
        case let .failure(.host(message)):
            throw .internalError(message)
        }
    }

    public func cpuid() async -> CPUIDReport {
        let table = machine.startingCPUID.map(CPUIDLeaf.init)
        let model = machine.configuration.cpuModel
        return CPUIDReport(model: model?.name ?? "host", spec: model?.spec ?? "host",
                           vendor: table.vendor, features: CPUFeatures.present(in: table).sorted(),
                           leaves: table.map { .init(function: $0.function, index: $0.index, eax: $0.eax, ebx: $0.ebx,
                                                     ecx: $0.ecx, edx: $0.edx) })
    }

    public func stats() async -> StatsReport {
        // Copies of the vCPUs' live cells: no lock, no control step, and the
        // vCPUs neither wait nor copy anything for it.
        var profile = machine.accounting.count == 1 ? machine.accounting[0].profile : ExitProfile()
        if machine.accounting.count > 1 {
            for accounting in machine.accounting { profile.merge(accounting.profile) }
        }
        let kinds = ExitKind.allCases.filter { profile[$0].count > 0 }
            .map { ExitKindRow(kind: $0.description, timing: Self.timing(profile[$0])) }
        var ports: [PortRow] = [], msrs: [MSRExitRow] = [], hypercalls: [HypercallRow] = []
        for (place, latencies) in profile.hottestPlaces() {
            let timing = Self.timing(latencies)
            switch place {
            case let .port(port, write):
                ports.append(PortRow(port: Int(port), direction: write ? .write : .read, timing: timing))
            case let .msr(index, write):
                msrs.append(MSRExitRow(index: Hex64(UInt64(index)), name: MSRCatalogue.name(index),
                                       direction: write ? .write : .read, timing: timing))
            case let .hypercall(number):
                hypercalls.append(HypercallRow(number: number, name: number == HypercallNumber.mapGPARange ? "KVM_HC_MAP_GPA_RANGE" : nil,
                                               timing: timing))
            }
        }
        if profile.other.count > 0 {
            // Places beyond the cap, together (no single port/MSR/number).
            ports.append(PortRow(port: nil, direction: .read, timing: Self.timing(profile.other)))
        }
        let vcpus = machine.accounting.enumerated().map { i, accounting in
            let counts = accounting.statistics
            return VCPUStatsRow(vcpu: i, exits: counts.totalExits,
                                inKvmRunNs: counts.buckets.reduce(0) { $0 &+ $1.runNanoseconds },
                                handlingNs: counts.buckets.reduce(0) { $0 &+ $1.handlingNanoseconds })
        }
        let kvm: KVMBinaryStats
        switch machine.kvmStatistics() {
        case let .success(stats):
            func counters(_ list: [KVMStat]) -> [String: UInt64] {
                Dictionary(list.filter { $0.descriptor.size == 1 }.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            }
            kvm = KVMBinaryStats(available: true, reason: nil, vm: counters(stats.vm), vcpus: stats.vcpus.map(counters))
        case let .failure(error):
            kvm = .unavailable("\(error)")
        }
        return StatsReport(state: Self.state(machine.state), uptimeSeconds: machine.uptimeSeconds,
                           totalExits: profile.totalExits, exits: kinds, ports: ports, msrs: msrs,
                           hypercalls: hypercalls, vcpus: vcpus, kvm: kvm)
    }

    public func msrs() async -> MSRTableReport {
        var table = MSRStatistics()
        for accounting in machine.accounting { table.merge(accounting.msrStatistics) }
        let rows = table.entries.map { entry in
            MSRTableRow(index: Hex64(UInt64(entry.index)), name: MSRCatalogue.name(entry.index), reads: entry.reads,
                        writes: entry.writes, lastValue: Hex64(entry.lastValue), outcomes: entry.outcomes,
                        gpCount: entry.outcomes.reduce(0) { $0 + (Self.gpOutcomes.contains($1.key) ? $1.value : 0) },
                        lastRip: entry.lastRIP.map(Hex64.init))
        }
        return MSRTableReport(msrs: rows, otherAccesses: table.other.reads &+ table.other.writes)
    }

    public func replacePolicy(text: String) async throws(ControlError) {
        let policy: MSRPolicy
        do {
            policy = try PolicyLoader.load(text, file: "PUT /policy")
        } catch {
            let diagnostics = error.errors.map {
                PolicyDiagnostic(line: $0.location.line, column: $0.location.column, message: $0.message)
            }
            throw .invalidPolicy("the policy does not load (\(diagnostics.count) problem\(diagnostics.count == 1 ? "" : "s")); the previous policy stays", diagnostics: diagnostics)
        }
        let machine = self.machine
        let result: Result<Void, MachineError> = await machine.controlStep {
            do throws(MachineError) {
                return .success(try machine.replacePolicy(policy))
            } catch {
                return .failure(error)
            }
        }
        if case let .failure(error) = result {
            if case .configuration = error { throw .conflict("\(error)") }
            throw .invalidPolicy("\(error); the previous policy stays", diagnostics: [])
        }
    }

    public func events() -> EventSubscription { broadcaster.subscribe() }

    public func snapshot(_ request: SnapshotRequest) async throws(ControlError) -> SnapshotReport {
        guard request.path.hasPrefix("/") else { throw .badRequest("the snapshot path must be absolute: \(request.path)") }
        let machine = self.machine
        let then = AfterSnapshot(rawValue: (request.then ?? .resume).rawValue) ?? .resume
        let result: Result<SnapshotSummary, SnapshotRequestError> = await machine.controlStep {
            do throws(SnapshotRequestError) {
                return .success(try machine.snapshot(to: request.path, diff: request.type == .diff, then: then))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case let .success(summary):
            return SnapshotReport(path: summary.statePath, memoryPath: summary.memoryPath, type: request.type ?? .full,
                                  stateBytes: summary.stateBytes, memoryBytes: summary.memoryBytes,
                                  seconds: summary.seconds, state: Self.state(machine.state))
        case let .failure(.refused(error)):
            throw .conflict("\(error)")
        case let .failure(.failed(error)):
            throw .badRequest("\(error)")
        }
    }

    /// Starts the migration on a thread of its own (it blocks for its whole
    /// length) once `beginMigration` accepted it; answers the first progress.
    public func migrate(_ request: MigrationRequest) async throws(ControlError) -> MigrationStatus {
        var options: MigrationOptions
        do {
            options = MigrationOptions(destination: try MigrationAddress(parsing: request.to))
        } catch {
            throw .badRequest("\(error)")
        }
        if let downtime = request.downtimeMs {
            guard downtime >= 1, downtime <= 600_000 else { throw .badRequest("downtime_ms must be 1–600000") }
            options.downtimeBudgetSeconds = Double(downtime) / 1000
        }
        if let timeout = request.timeoutS {
            guard timeout > 0, timeout <= 86_400 else { throw .badRequest("timeout_s must be more than 0 and at most 86400") }
            options.timeoutSeconds = timeout
        }
        options.force = request.force ?? false
        options.pauseAndCopy = request.pauseAndCopy ?? false
        do throws(MachineError) {
            if let pskFile = request.pskFile {
                guard pskFile.hasPrefix("/") else { throw .migration("psk_file must be an absolute path: \(pskFile)") }
                options.key = try MigrationTransport.loadKey(pskFile)
            }
        } catch {
            throw .badRequest("\(error)")
        }
        let machine = self.machine
        let accepted = options
        let begun: Result<Void, MachineError> = await machine.controlStep {
            do throws(MachineError) {
                return .success(try machine.beginMigration(accepted))
            } catch {
                return .failure(error)
            }
        }
        if case let .failure(error) = begun { throw .conflict("\(error)") }
        do {
            try HostThread.start(name: "migration") {
                // The outcome is in the progress record (GET /migration); the
                // VM keeps running on failure.
                _ = try? machine.migrate(accepted)
            }
        } catch {
            machine.abandonMigration("\(error)")
            throw .conflict("\(error)")
        }
        return Self.status(machine.migrationProgress)
    }

    public func migration() async -> MigrationStatus { Self.status(machine.migrationProgress) }

    // MARK: - Conversions

    static func status(_ p: MigrationProgress) -> MigrationStatus {
        MigrationStatus(phase: MigrationStatus.Phase(rawValue: p.phase.rawValue) ?? .failed, destination: p.destination,
                        iteration: p.iteration, bytesSent: p.bytesSent, dirtyBytesPerSecond: p.dirtyBytesPerSecond,
                        bandwidthBytesPerSecond: p.bandwidthBytesPerSecond, estimatedDowntimeMs: p.estimatedDowntimeSeconds * 1000,
                        downtimeMs: p.downtimeSeconds.map { $0 * 1000 }, elapsedS: p.elapsedSeconds, lastError: p.lastError,
                        pausedBeforeConvergence: p.pausedBeforeConvergence)
    }

    /// Outcome words of accesses answered with #GP (see `MSROutcome`; "gp" is the trace's).
    static let gpOutcomes: Set<String> = ["gp", "denied", "default-gp", "kernel-refused", "read-only-gp", "reserved-gp"]

    static func state(_ state: VMRunState) -> VMState {
        switch state {
        case .created: .created
        case .running: .running
        case .pausing: .pausing
        case .paused: .paused
        case .suspended: .suspended
        case .snapshotting: .snapshotting
        case .migrating: .migrating
        case .stopping: .stopping
        case .stopped: .stopped
        }
    }

    static func timing(_ latencies: ExitLatencies) -> ExitTiming {
        func summary(_ h: LatencyHistogram) -> LatencySummary {
            LatencySummary(count: h.count, totalNs: h.totalNanoseconds, p50Ns: h.p50, p90Ns: h.p90, p99Ns: h.p99, maxNs: h.max)
        }
        return ExitTiming(count: latencies.count, inKvmRun: summary(latencies.inKVMRun), handling: summary(latencies.handling))
    }

    static func report(_ r: Registers) -> GeneralRegistersReport {
        GeneralRegistersReport(rax: Hex64(r.rax), rbx: Hex64(r.rbx), rcx: Hex64(r.rcx), rdx: Hex64(r.rdx),
                               rsi: Hex64(r.rsi), rdi: Hex64(r.rdi), rsp: Hex64(r.rsp), rbp: Hex64(r.rbp),
                               r8: Hex64(r.r8), r9: Hex64(r.r9), r10: Hex64(r.r10), r11: Hex64(r.r11),
                               r12: Hex64(r.r12), r13: Hex64(r.r13), r14: Hex64(r.r14), r15: Hex64(r.r15),
                               rip: Hex64(r.rip), rflags: Hex64(r.rflags))
    }

    static func report(_ s: SpecialRegisters) -> SpecialRegistersReport {
        func segment(_ g: Segment) -> SegmentReport {
            SegmentReport(selector: Int(g.selector), base: Hex64(g.base), limit: Hex64(UInt64(g.limit)), type: Int(g.type),
                          present: g.present, dpl: Int(g.dpl), db: g.db, s: g.s, l: g.l, g: g.g, avl: g.avl, unusable: g.unusable)
        }
        func table(_ t: DescriptorTableRegister) -> DescriptorTableReport {
            DescriptorTableReport(base: Hex64(t.base), limit: Int(t.limit))
        }
        return SpecialRegistersReport(cs: segment(s.cs), ds: segment(s.ds), es: segment(s.es), fs: segment(s.fs),
                                      gs: segment(s.gs), ss: segment(s.ss), tr: segment(s.tr), ldt: segment(s.ldt),
                                      gdt: table(s.gdt), idt: table(s.idt), cr0: Hex64(s.cr0), cr2: Hex64(s.cr2),
                                      cr3: Hex64(s.cr3), cr4: Hex64(s.cr4), cr8: Hex64(s.cr8), efer: Hex64(s.efer),
                                      apicBase: Hex64(s.apicBase))
    }

    static func controlError(_ error: LifecycleError) -> ControlError {
        switch error {
        case let .conflict(message): .conflict(message)
        case let .host(message): .internalError(message)
        }
    }
}
