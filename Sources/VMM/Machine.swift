// VMM: assembling a machine from a configuration (KVM VM, RAM, image, vCPUs,
// devices) and running it to an outcome: one thread per vCPU, a timeout,
// clean stop of every vCPU. Building fixes everything (the configuration and
// every part are constants); what a run may change — its state, the MSR
// policy — changes only through the control steps of `Lifecycle`.
import Devices
import Dispatch
import FoundationEssentials
import Glibc
import Hypercalls
import KVM
import Loader
import MSRPolicy
import Synchronization
import Virtio

/// What a finished run reports.
public struct RunReport: Sendable {
    public var outcome: RunOutcome
    /// Exit statistics of all vCPUs merged.
    public var statistics: ExitStatistics
    /// Per-vCPU statistics, by vCPU index.
    public var perVCPU: [ExitStatistics]
    /// vCPUs whose thread did not leave KVM_RUN after being kicked.
    public var stuckVCPUs: [Int]
    /// Per-MSR accounting of the accesses that reached user space.
    public var msrStatistics: MSRStatistics
    public var wallSeconds: Double
    /// Latency histograms per exit kind and per port/MSR/hypercall, all vCPUs merged.
    public var profile = ExitProfile()

    /// The report of a run that never began.
    public static func notStarted(_ outcome: RunOutcome) -> RunReport {
        RunReport(outcome: outcome, statistics: ExitStatistics(), perVCPU: [], stuckVCPUs: [],
                  msrStatistics: MSRStatistics(), wallSeconds: 0)
    }
}

/// A built machine, ready to run once.
public final class Machine: Sendable {
    /// KVM_SET_TSS_ADDR / identity map: below 4 GiB, above the 3 GiB RAM limit.
    static let tssAddress: UInt64 = 0xFFFB_D000
    static let identityMapAddress: UInt64 = 0xFFFB_C000

    public let configuration: MachineConfiguration
    public let system: KVMSystem
    public let vm: VirtualMachine
    /// Guest RAM (one slot, or three around the read-only BIOS area on the PC platform).
    public let ram: GuestRAM
    public let vcpus: [VCPU]
    /// The CPUID table vCPU 0 started with (KVM_GET_CPUID2 before it ran;
    /// a restored vCPU's is the saved one).
    public let startingCPUID: [CPUIDEntry]
    public let devices: DeviceHub
    /// The PCI bus and its devices (PC platform only).
    let pci: PCIHub?
    public let events: EventLog
    public let boot: BootImage
    /// The policy engine, when the machine runs with an MSR policy.
    public let msrRuntime: MSRRuntime?
    /// The KVM_HC_MAP_GPA_RANGE handler and its page map, when enabled.
    public let hypercallHandler: HypercallHandler?
    /// The migration-control negotiation, when offered.
    public let migrationGate: MigrationGate?
    private let msrService: MSRService
    /// Each vCPU's counts, exit profile and MSR table, readable while it runs.
    public let accounting: [VCPUAccounting]
    /// KVM's binary statistics files (VM, then each vCPU), or why there are none.
    private let kvmStatsFiles: Result<(vm: KVMStatsFile, vcpus: [KVMStatsFile]), MachineError>
    /// The time the guest's emulated clocks follow (stops while paused).
    public let guestClock: GuestClock
    /// The filter KVM has; replacing the policy holds this lock throughout.
    private let installedFilter: Mutex<CompiledFilter?>
    /// KVM_X86_SET_MSR_FILTER for policy replacement; tests replace it to make KVM refuse.
    let msrFilterInstaller: Mutex<@Sendable (CompiledFilter) throws(KVMError) -> Void>
    private let registerSync: Bool
    let controller: RunController
    /// The run state's one owner and the serial control path.
    let lifecycle: Lifecycle
    /// KVM's dirty log covers every page written since the last full
    /// snapshot (turned on by it; a migration attempt consumes the log).
    let dirtyLogging = Mutex(false)
    /// KVM logs dirty pages on the writable slots (snapshot or migration turned it on).
    let kvmDirtyLog = Mutex(false)
    /// The outgoing migration's progress; one migration at a time.
    let migration = MigrationTracker()
    /// How far a migration's restore moved the guest's TSC on (nil for a new
    /// machine, a snapshot restore, or a sender that did not record when it
    /// captured the vCPUs).
    public let guestTimeAdvance: TSCAdvance?

    /// Builds the machine. Every failure is a one-line `MachineError`.
    public convenience init(configuration: MachineConfiguration, serialOutput: sending any ByteSink,
                            events: EventLog = EventLog()) throws(MachineError) {
        try self.init(configuration: configuration, serialOutput: serialOutput, events: events, restoring: nil)
    }

    /// Builds the machine a snapshot describes, its memory mapped from the
    /// snapshot's memory file (MAP_PRIVATE: the file never changes) and every
    /// piece of state put back. `timeout` is the new run's. Every failure is a
    /// one-line `MachineError`; nothing runs until `run()`.
    public convenience init(restoring snapshot: LoadedSnapshot, timeout: Double?, serialOutput: sending any ByteSink,
                            events: EventLog = EventLog()) throws(MachineError) {
        var configuration = snapshot.configuration.configuration(msr: try snapshot.user.msrSetup())
        configuration.timeoutSeconds = timeout
        try self.init(configuration: configuration, serialOutput: serialOutput, events: events, restoring: snapshot)
    }

    private init(configuration: MachineConfiguration, serialOutput: sending any ByteSink,
                 events: EventLog, restoring snapshot: LoadedSnapshot?) throws(MachineError) {
        try configuration.validate()
        self.configuration = configuration
        self.events = events
        guestClock = GuestClock(continuingAt: snapshot?.user.guestClockNanoseconds ?? 0)

        // The image is checked before KVM is opened: a bad image is the
        // user's first problem to hear about, on any host.
        do {
            switch configuration.mode {
            case .multiboot:
                boot = try MultibootLoader.load(configuration.image, kernelPath: configuration.kernelPath,
                                                append: configuration.append,
                                                modules: configuration.modules.map(\.placement),
                                                memorySize: configuration.memoryBytes,
                                                vcpuCount: configuration.vcpuCount)
            case .linux, .pvh:
                boot = try LinuxBoot.image(configuration)
            case .real, .long, .elf:
                boot = try ImageLoader.load(configuration.image, mode: configuration.mode,
                                            memorySize: configuration.memoryBytes, vcpuCount: configuration.vcpuCount)
            }
        } catch {
            throw .image(error)
        }
        do {
            system = try KVMSystem(path: configuration.kvmDevicePath)
        } catch {
            throw .kvmUnavailable(error)
        }

        let pc = configuration.platform == .pc
        do {
            vm = try system.createVM()
            if try vm.check(.setTSSAddress) > 0 { try vm.setTSSAddress(Self.tssAddress) }
            if try vm.check(.setIdentityMapAddress) > 0 { try vm.setIdentityMapAddress(Self.identityMapAddress) }
            // The vCPUs' table decides how far the guest can address: RAM
            // beyond it is refused before anything is mapped. A model is
            // checked against this host here too, before any vCPU exists: a
            // snapshot or a migrated guest already detected its features.
            let supported = try system.supportedCPUID()
            let startingTable = try CPUModelSetup.table(configuration.cpuModel, supported: supported)
            try configuration.checkAddressWidth(physicalAddressBits: CPUModelSetup.physicalAddressBits(startingTable))
            let backing: GuestRAM.Backing
            if let snapshot {
                switch snapshot.memorySource {
                case let .file(_, memory): backing = .memoryFile(memory, shared: false)
                case let .filled(memory): backing = .memoryFile(memory, shared: true)
                }
            } else {
                backing = .anonymous
            }
            ram = try GuestRAM(vm: vm, ranges: configuration.ramRanges, layout: pc ? .pcWithReadOnlyBIOSArea : .flat,
                               backing: backing)
            if pc {
                try PCPlatform.createInKernelDevices(vm)
                if snapshot == nil {
                    // A restored machine has its tables and BIOS environment in RAM and the VM state.
                    do {
                        try PCPlatform.writeACPITables(ram, vcpuCount: configuration.vcpuCount,
                                                       forLinux: configuration.mode == .linux || configuration.mode == .pvh)
                    } catch {
                        throw MachineError.host("ACPI tables: \(error)")
                    }
                    try PCPlatform.setUpBIOSEnvironment(vm, ram: ram)
                }
                let hub = PCIHub(vm: vm, events: events)
                pci = hub
                let hubDevices = try DeviceHub(serialOutput: serialOutput, serialInterrupt: KVMInterruptLine(vm: vm, irq: 4),
                                               extras: PCPlatform.devices(memorySize: configuration.memoryBytes,
                                                                          vcpuCount: configuration.vcpuCount, clock: guestClock))
                devices = hubDevices
                try Self.addPCIDevices(configuration, to: hub, memory: GuestRAMAccess(ram: ram), consoleOutput: hubDevices)
                // The disk files are not in the snapshot: one that changed size is not the disk the guest had.
                if let saved = snapshot?.configuration.disks {
                    for (disk, now) in zip(saved, hub.diskSizes) where disk.bytes != now {
                        throw MachineError.snapshot("--disk path=\(disk.disk.path) is \(now) bytes; the snapshot's disk was \(disk.bytes) bytes")
                    }
                }
            } else {
                pci = nil
                devices = try DeviceHub(serialOutput: serialOutput)
            }
            (hypercallHandler, migrationGate) = try Self.setUpHypercalls(configuration, system: system, vm: vm,
                                                                        migrationState: snapshot?.user.migrationControl)
            let initialFilter: CompiledFilter?
            (msrService, msrRuntime, initialFilter) = try Self.setUpMSRs(configuration, system: system, vm: vm,
                                                                         clock: guestClock)
            installedFilter = Mutex(initialFilter)
            do {
                for segment in boot.segments where snapshot == nil {
                    try ram.write(segment.bytes, at: segment.guestPhysicalAddress)
                }
                for (module, range) in zip(configuration.modules, boot.moduleRanges) where snapshot == nil {
                    try ram.write(contentsOf: module.bytes, at: range.lowerBound)
                }
            } catch {
                throw KVMError.invalidArgument(request: "load image", reason: "\(error)")
            }
            registerSync = try system.check(.syncRegisters) & VCPU.syncGeneralRegistersBit != 0
            var created: [VCPU] = []
            for i in 0..<configuration.vcpuCount {
                let vcpu = try vm.createVCPU(id: UInt32(i))
                if registerSync { vcpu.enableRegisterSync() }
                try vcpu.setCPUID(BootState.cpuid(from: startingTable, vcpu: UInt32(i), count: configuration.vcpuCount,
                                                  kvmFeatures: configuration.hypercalls.advertisedFeatures,
                                                  managedKVMFeatures: HypercallSetup.mapGPARangeFeature | HypercallSetup.migrationControlFeature))
                if snapshot == nil && (i == 0 || !boot.applicationProcessorsWaitForSIPI) {
                    try BootState.apply(boot.cpuState(vcpu: i, of: configuration.vcpuCount), to: vcpu)
                    // With an in-kernel LAPIC, KVM parks APs until INIT/SIPI;
                    // the flat boot convention starts every vCPU at the entry.
                    if i > 0 && pc { try vcpu.setMPState(MPState.runnable.rawValue) }
                }
                created.append(vcpu)
            }
            if snapshot == nil, pc, let bootstrap = created.first { try PCPlatform.setUpBootLocalAPIC(bootstrap) }
            vcpus = created
            if let snapshot {
                guestTimeAdvance = try Self.restoreState(snapshot, vm: vm, vcpus: created, devices: devices, pci: pci,
                                                         msrRuntime: msrRuntime, hypercalls: hypercallHandler,
                                                         memorySize: configuration.ramEnd)
            } else {
                guestTimeAdvance = nil
            }
            // Read now, while no vCPU runs: a vCPU ioctl waits for KVM_RUN to return.
            startingCPUID = try created.first?.cpuid() ?? []
        } catch let error as MachineError {
            throw error
        } catch let error as KVMError {
            throw .kvm(error)
        } catch {
            throw .host("\(error)")
        }
        controller = RunController(kickers: vcpus.map(\.kicker))
        accounting = vcpus.map { _ in VCPUAccounting() }
        kvmStatsFiles = Self.openKVMStatistics(system: system, vm: vm, vcpus: vcpus)
        let sleep = pc ? SleepControl(vm: vm, ram: ram, devices: devices, events: events,
                                      vcpuCount: configuration.vcpuCount,
                                      segmentsRewrittenOnReset: SleepControl.segmentsRewrittenOnReset(
                                          image: configuration.image, mode: configuration.mode)) : nil
        lifecycle = Lifecycle(controller: controller, clock: guestClock, vm: vm,
                              adjustsClock: ((try? system.check(.adjustClock)) ?? 0) > 0, sleep: sleep)
        let vm = self.vm
        let installer: @Sendable (CompiledFilter) throws(KVMError) -> Void = { filter throws(KVMError) in
            try vm.setMSRFilter(filter.filter)
        }
        msrFilterInstaller = Mutex(installer)
    }

    /// The virtio devices the configuration asks for, in slot order: disks,
    /// network devices, vsock, the entropy device, the console (its output beside the UART's).
    private static func addPCIDevices(_ configuration: MachineConfiguration, to hub: PCIHub, memory: GuestRAMAccess,
                                      consoleOutput: DeviceHub) throws(MachineError) {
        for (i, disk) in configuration.disks.enumerated() {
            let device = VirtioBlockDevice(backend: try FileBlockBackend(disk), serial: disk.serial)
            try hub.addVirtio(device, memory: memory, name: "virtio-blk\(i)", ioEventFD: disk.ioEventFD)
        }
        for (i, network) in configuration.networks.enumerated() {
            // Deflect attaches to a TAP the host set up; it never creates one
            // (a typo would otherwise make a new, unconfigured interface). Looked
            // up in this process's network namespace, not in /sys, which shows
            // the namespace sysfs was mounted in (a process that entered a pod's
            // namespace with setns sees the host's interfaces there).
            guard if_nametoindex(network.tap) != 0 else {
                throw .device("--net tap=\(network.tap): no such TAP device (create it first: ip tuntap add dev \(network.tap) mode tap)")
            }
            let tap: TapDevice
            do throws(TapDevice.OpenError) {
                tap = try TapDevice(name: network.tap, offloads: [.checksum, .tso4, .tso6, .tsoECN, .ufo])
            } catch {
                throw .device("--net tap=\(network.tap): \(error)")
            }
            try hub.addVirtio(VirtioNetDevice(backend: TapNetBackend(tap: tap, mac: network.mac)), memory: memory,
                              name: "virtio-net\(i)", ioEventFD: network.ioEventFD)
        }
        if let vsock = configuration.vsock {
            try hub.addVirtio(VirtioVsockDevice(guestCID: vsock.cid, backend: try UnixVsockBackend(path: vsock.socket)),
                              memory: memory, name: "virtio-vsock")
        }
        if configuration.entropyDevice {
            try hub.addVirtio(VirtioEntropyDevice(source: HostEntropy.bytes), memory: memory, name: "virtio-rng")
        }
        if configuration.console == .virtio {
            try hub.addVirtio(VirtioConsoleDevice { consoleOutput.writeConsoleOutput($0) }, memory: memory, name: "virtio-console")
        }
    }

    /// The devices on the PCI bus besides the host bridge (empty off the PC platform).
    public func pciDevices() -> [PCIDeviceSummary] { pci?.deviceSummaries() ?? [] }

    /// Input for the guest's console (standard input): the virtio console's
    /// when the machine has one, else the UART's.
    public func consoleInput(_ bytes: [UInt8]) {
        if pci?.consoleInput(bytes) == true { return }
        devices.serialInput(bytes)
    }

    /// Puts a snapshot's state into a freshly built machine, in order: the
    /// VM-level state (PIT, kvmclock, PICs and IOAPIC), the devices, the
    /// user-space engines (emulated MSR values, page map), then every vCPU
    /// in the order `VCPUSnapshot.restore` documents (CPUID … vCPU events).
    /// The TSC rate cannot be set on a host without KVM_CAP_TSC_CONTROL: a
    /// snapshot from another rate is refused. A migration's state moves the
    /// guest's time on by the realtime since its capture: the kvmclock first
    /// (KVM_SET_CLOCK with KVM_CLOCK_REALTIME), then each TSC (the kernel
    /// documentation's order; KVM recomputes the kvmclock page from the new
    /// TSC, so the two stay consistent). Returns that advance.
    private static func restoreState(_ snapshot: LoadedSnapshot, vm: VirtualMachine, vcpus: [VCPU], devices: DeviceHub, pci: PCIHub?,
                                     msrRuntime: MSRRuntime?, hypercalls: HypercallHandler?,
                                     memorySize: UInt64) throws(MachineError) -> TSCAdvance? {
        do throws(KVMError) {
            try snapshot.vm.restore(to: vm, advanceClockByElapsedRealtime: snapshot.advancesGuestTime)
        } catch {
            throw .snapshot("restoring the VM state (PIT, clock, irqchip): \(error)")
        }
        do throws(DeviceStateError) {
            try devices.importDeviceStates(snapshot.devices)
        } catch {
            throw .snapshot("\(error)")
        }
        switch (snapshot.pci, pci) {
        case let (saved?, hub?): try hub.importState(saved)
        case (nil, let hub?) where hub.deviceCount > 0: throw .snapshot("the snapshot has no PCI state but names PCI devices")
        default: break
        }
        if let msrRuntime {
            do throws(MSRRuntimeError) {
                try msrRuntime.restore(snapshot.user.emulatedMSRs)
            } catch {
                throw .snapshot("emulated MSR values: \(error)")
            }
        } else if !snapshot.user.emulatedMSRs.isEmpty {
            throw .snapshot("the snapshot has emulated MSR values but no MSR policy")
        }
        if let map = try snapshot.user.rebuiltPageMap(memorySize: memorySize) {
            guard let hypercalls else { throw .snapshot("the snapshot has a page map but MAP_GPA_RANGE is not handled") }
            do throws(HypercallRestoreError) {
                try hypercalls.restore(map)
            } catch {
                throw .snapshot("page map: \(error)")
            }
        }
        var advance: TSCAdvance?
        if snapshot.advancesGuestTime, let captured = snapshot.user.vcpuCaptureRealtimeNanoseconds,
           let tscKHz = snapshot.vcpus.first?.tscKHz ?? vcpus.first.flatMap({ try? $0.tscKHz() }) {
            advance = TSCAdvance(capturedRealtime: captured, restoreRealtime: TSCAdvance.hostRealtimeNanoseconds(),
                                 tscKHz: tscKHz)
        }
        for (i, (vcpu, var saved)) in zip(vcpus, snapshot.vcpus).enumerated() {
            do throws(KVMError) {
                if let advance, !saved.advanceTSC(by: advance.ticks) {
                    throw KVMError.invalidArgument(request: "KVM_SET_MSRS", reason: "the state has no IA32_TSC to advance by the migration's pause")
                }
                if let mismatch = try saved.restore(to: vcpu) {
                    throw KVMError.invalidArgument(request: "KVM_SET_TSC_KHZ", reason: "\(mismatch)")
                }
            } catch {
                throw .snapshot("restoring vCPU \(i): \(error)")
            }
        }
        return advance
    }

    /// Turns on hypercall exits for KVM_HC_MAP_GPA_RANGE and creates the
    /// page map and the migration gate the configuration asks for.
    private static func setUpHypercalls(_ configuration: MachineConfiguration, system: KVMSystem, vm: VirtualMachine,
                                        migrationState: MigrationControlState?) throws -> (HypercallHandler?, MigrationGate?) {
        let setup = configuration.hypercalls
        var handler: HypercallHandler?
        if setup.mapGPARange {
            let mask = UInt64(max(0, try system.check(.exitHypercall)))
            guard mask & (1 << HypercallNumber.mapGPARange) != 0 else {
                throw MachineError.host("this host's KVM cannot send KVM_HC_MAP_GPA_RANGE to user space (KVM_CAP_EXIT_HYPERCALL mask 0x\(String(mask, radix: 16)))")
            }
            try vm.enable(.exitHypercall, arguments: [1 << HypercallNumber.mapGPARange])
            handler = HypercallHandler(ramRanges: configuration.ramRanges)
        }
        guard setup.migrationControl else { return (handler, nil) }
        return (handler, migrationState.map { MigrationGate(restoring: $0) } ?? MigrationGate(offered: true))
    }

    /// The origin of the rule that routes MSR_KVM_MIGRATION_CONTROL to the VMM.
    static let migrationControlRouteOrigin = "migration control (handled by the VMM)"

    /// The MSR setup with MSR_KVM_MIGRATION_CONTROL routed to user space when
    /// the VM offers migration control (the vCPU loop answers it before the policy).
    /// A CPU model's MSR rules come first, under the policy.
    static func effectiveMSRSetup(_ configuration: MachineConfiguration) throws -> MSRSetup {
        let msr = CPUModelSetup.layered(configuration.msr, model: configuration.cpuModel,
                                        rules: configuration.cpuModelMSRRules)
        guard configuration.hypercalls.migrationControl else { return msr }
        let index = MigrationControl.msrIndex
        let route = MSRRule(index, .deny, origin: migrationControlRouteOrigin)
        switch msr {
        case .kernelOnly:
            return .policy(MSRPolicy(rules: [route]))
        case let .policy(policy):
            if let clash = policy.rule(for: index) {
                throw MachineError.policy("the policy has a rule for MSR_KVM_MIGRATION_CONTROL (0x\(String(index, radix: 16)))\(clash.location.map { " at \($0)" } ?? ""), which migration control owns; remove it")
            }
            var rules = policy.rules
            rules.append(route)
            var combined = MSRPolicy(rules: rules, defaultAction: policy.defaultAction, defaultScope: policy.defaultScope,
                                     logDefault: policy.logDefault, profile: policy.profile)
            combined.profile = policy.profile
            return .policy(combined)
        case .trace:
            return .trace
        }
    }

    /// Turns on user-space MSR exits and installs the filter the policy compiles to.
    private static func setUpMSRs(_ configuration: MachineConfiguration, system: KVMSystem, vm: VirtualMachine,
                                  clock: GuestClock) throws -> (MSRService, MSRRuntime?, CompiledFilter?) {
        let filter: CompiledFilter
        let service: MSRService
        var runtime: MSRRuntime?
        switch try effectiveMSRSetup(configuration) {
        case .kernelOnly:
            return (.none, nil, nil)
        case let .policy(policy):
            do {
                filter = try FilterCompiler.compile(policy)
            } catch {
                throw MachineError.policy("\(error)")
            }
            do {
                let created = try MSRRuntime(policy: policy, vcpuCount: configuration.vcpuCount,
                                             hostReader: policy.rules.contains { $0.action == .host } ? DevCPUMSRReader() : nil,
                                             clock: clock.reader)
                runtime = created
                service = .policy(created)
            } catch {
                throw MachineError.policy("\(error)")
            }
        case .trace:
            let trace = TraceFilter { filter throws(KVMError) in try vm.setMSRFilter(filter.filter) }
            filter = trace.initialFilter
            service = .trace(trace)
        }
        guard try system.check(.x86UserSpaceMSR) != 0, try system.check(.x86MSRFilter) != 0 else {
            throw MachineError.host("this host's KVM cannot send MSR accesses to user space (KVM_CAP_X86_USER_SPACE_MSR / KVM_CAP_X86_MSR_FILTER missing)")
        }
        try vm.enable(.x86UserSpaceMSR, arguments: [UInt64(filter.exitReasons.rawValue)])
        try vm.setMSRFilter(filter.filter)
        return (service, runtime, filter)
    }

    /// Replaces the MSR policy while the guest runs, all or nothing: the new
    /// policy is checked and prepared first, then KVM gets the new exit reasons
    /// and filter (rolled back if KVM refuses either), and only then does the
    /// runtime switch. Between the filter and the runtime switch, an exit the
    /// old runtime would leave to KVM is re-executed by KVM once the switch is
    /// done (see `reexecuteAsGuestAccess`). Emulated values carry over where
    /// the new policy keeps the MSR. A control step: refused while a
    /// migration owns the machine (its state would mix two policies) and
    /// once the run is decided.
    public func replacePolicy(_ policy: MSRPolicy) throws(MachineError) {
        guard let msrRuntime else { throw .configuration("this machine was not started with an MSR policy") }
        try lifecycle.whileIn([.created, .running, .paused, .suspended],
                              refusal: { MachineError.configuration("the VM is \($0.rawValue); its policy cannot be replaced now") }) { () throws(MachineError) -> Void in
            try installPolicy(policy, into: msrRuntime)
        }
    }

    private func installPolicy(_ policy: MSRPolicy, into msrRuntime: MSRRuntime) throws(MachineError) {
        try installedFilter.withLock { (installed: inout CompiledFilter?) throws(MachineError) -> Void in
            let filter: CompiledFilter
            let prepared: MSRRuntime.PreparedMSRPolicy
            do {
                var wanted = configuration
                wanted.msr = .policy(policy)
                guard case let .policy(effective) = try Self.effectiveMSRSetup(wanted) else {
                    throw MachineError.policy("internal: a policy setup turned into another kind")
                }
                filter = try FilterCompiler.compile(effective)
                prepared = try msrRuntime.prepare(effective)
            } catch let error as MachineError {
                throw error
            } catch {
                throw .policy("\(error)")
            }
            let previousReasons = installed?.exitReasons
            do throws(KVMError) {
                if filter.exitReasons != previousReasons {
                    try vm.enable(.x86UserSpaceMSR, arguments: [UInt64(filter.exitReasons.rawValue)])
                }
                do throws(KVMError) {
                    try msrFilterInstaller.withLock { $0 }(filter)
                } catch {
                    if let previousReasons, previousReasons != filter.exitReasons {
                        try? vm.enable(.x86UserSpaceMSR, arguments: [UInt64(previousReasons.rawValue)])
                    }
                    throw error
                }
            } catch {
                throw .kvm(error)
            }
            msrRuntime.install(prepared)
            installed = filter
        }
    }

    /// Under `deflect trace`: true when the MSRs seen no longer fit in KVM's 16
    /// filter ranges, so later first accesses KVM accepted went unseen.
    public var traceFilterSaturated: Bool {
        if case let .trace(filter) = msrService { return filter.saturated }
        return false
    }

    /// Ends the run because output the user asked for cannot be written
    /// (wire a `FileDescriptorSink`'s `onFailure` here).
    public func stopBecauseOutputFailed(_ message: String) {
        controller.finish(.outputFailed(message))
    }

    /// KVM's binary statistics files (VM, then each vCPU), or why the host has none.
    private static func openKVMStatistics(system: KVMSystem, vm: VirtualMachine,
                                          vcpus: [VCPU]) -> Result<(vm: KVMStatsFile, vcpus: [KVMStatsFile]), MachineError> {
        guard ((try? system.check(.binaryStatsFD)) ?? 0) > 0 else {
            return .failure(.host("this host's KVM has no binary statistics (KVM_CAP_BINARY_STATS_FD)"))
        }
        do throws(KVMError) {
            return .success((try vm.statsFile(), try vcpus.map { vcpu throws(KVMError) in try vcpu.statsFile() }))
        } catch {
            return .failure(.kvm(error))
        }
    }

    /// KVM's own counters now (exits, io_exits, halt_exits, insn_emulation, …),
    /// for the VM and each vCPU; a one-line reason where the host lacks them.
    public func kvmStatistics() -> Result<(vm: [KVMStat], vcpus: [[KVMStat]]), MachineError> {
        switch kvmStatsFiles {
        case let .failure(error): return .failure(error)
        case let .success(files):
            do throws(KVMError) {
                return .success((try files.vm.read(), try files.vcpus.map { file throws(KVMError) in try file.read() }))
            } catch {
                return .failure(.kvm(error))
            }
        }
    }

    /// Where the run is (running, paused, ...).
    public var state: VMRunState {
        let state = lifecycle.current
        if controller.isFinished && state != .stopped { return .stopping }
        return state
    }

    /// Seconds since the vCPUs started (0 before `run()`).
    public var uptimeSeconds: Double { lifecycle.uptimeSeconds }

    /// Pauses the guest at a consistent point: every vCPU out of KVM_RUN with
    /// its pending exit completed, guest clocks stopped. Returns the seconds
    /// it took; idempotent. A control step.
    @discardableResult
    public func pause() throws(LifecycleError) -> Double { try lifecycle.pause() }

    /// Resumes a paused guest; idempotent. A control step.
    @discardableResult
    public func resume() throws(LifecycleError) -> Double { try lifecycle.resume() }

    /// Ends the run as stopped by the user (SIGINT, embedding code); nothing when it is decided already.
    public func requestStop() {
        controller.finish(.interruptedByUser)
    }

    /// Ends the run as stopped by the user; refused when it is already stopping or stopped.
    public func shutdown() throws(LifecycleError) {
        try lifecycle.requestStop(.interruptedByUser)
    }

    /// vCPU `index`'s registers, read while the VM is paused (a control step).
    public func registers(vcpu index: Int) throws(LifecycleError) -> (Registers, SpecialRegisters)? {
        try lifecycle.whileIn([.paused], refusal: { LifecycleError.conflict("vCPU registers can be read only while the VM is paused (it is \($0.rawValue))") }) { () throws(LifecycleError) -> (Registers, SpecialRegisters)? in
            guard vcpus.indices.contains(index) else { return nil }
            do throws(KVMError) {
                return (try vcpus[index].registers(), try vcpus[index].specialRegisters())
            } catch {
                throw .host("reading vCPU \(index)'s registers: \(error)")
            }
        }
    }

    /// Runs `body` on the control path as one step, without blocking the
    /// caller's thread: no other control request runs until it returns, and
    /// the machine's control requests called inside it (pause, snapshot,
    /// resume, …) run inline. For servers whose tasks must not block.
    public func controlStep<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await lifecycle.performDetached(body)
    }

    /// Runs every vCPU on its own thread until the run is decided or the
    /// timeout passes. `startingPaused`: every vCPU parks before its first
    /// guest instruction (`deflect restore --paused`) until `resume()`.
    /// `phaseHandler` is called on the vCPU's thread when the guest writes a
    /// phase to the sync port 0x500 (phase, vCPU index); the guest waits
    /// until it returns. A control request it makes (`replacePolicy`) waits
    /// for the control path, and a pause on it waits for this vCPU: do not
    /// pause from elsewhere while a handler makes requests.
    public func run(startingPaused: Bool = false, phaseHandler: (@Sendable (UInt32, Int) -> Void)? = nil) -> RunReport {
        let begin = DispatchTime.now()
        let pci = self.pci
        let runners = vcpus.enumerated().map { i, vcpu in
            VCPURunner(index: i, vcpu: vcpu, devices: devices, pci: pci, events: events, controller: controller,
                       msrService: msrService, registerSync: registerSync, phaseHandler: phaseHandler,
                       hypercalls: hypercallHandler, migrationGate: migrationGate,
                       readOnlyMemory: ram.readOnlyRanges, accounting: accounting[i], lifecycle: lifecycle)
        }
        defer { pci?.stop() }
        let started = lifecycle.start(paused: startingPaused) {
            do throws(MachineError) {
                try pci?.startWorkers()
            } catch {
                controller.finish(.hostError("\(error)"))
                return
            }
            for runner in runners {
                do {
                    try HostThread.start(name: "vcpu\(runner.index)", stackBytes: 1 << 20) { runner.loop() }
                } catch {
                    controller.finish(.hostError("vCPU \(runner.index): \(error)"))
                    break
                }
            }
        }
        guard started else {
            return .notStarted(.hostError("a machine runs once"))
        }

        let timeout = configuration.timeoutSeconds
        defer { lifecycle.stopped() }
        if !controller.waitForOutcome(seconds: timeout) {
            controller.finish(.timeout(seconds: timeout ?? 0, []))
        }
        // Every vCPU has been kicked; give them a moment to leave KVM_RUN.
        lifecycle.stopping()
        _ = controller.waitForThreads(runners.count, seconds: 3)
        let stuck = runners.filter { !$0.hasEnded }.map(\.index)

        controller.amend { outcome in
            guard case let .timeout(seconds, _) = outcome else { return outcome }
            let dumps = runners.map { runner -> VCPURegisterDump in
                // A vCPU still inside KVM_RUN holds its mutex: reading its registers would block.
                guard runner.hasEnded else {
                    return VCPURegisterDump(vcpu: runner.index, registers: nil, special: nil,
                                            unavailableReason: "vCPU did not leave KVM_RUN after the kick")
                }
                return runner.dump()
            }
            return .timeout(seconds: seconds, dumps)
        }
        devices.flushOutput()

        var total = ExitStatistics()
        var msrTotal = MSRStatistics()
        let snapshots = accounting.map(\.snapshot)
        let perVCPU = snapshots.map(\.statistics)
        for s in perVCPU { total.merge(s) }
        var profile = ExitProfile()
        for snapshot in snapshots {
            msrTotal.merge(snapshot.msrStatistics)
            profile.merge(snapshot.profile)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - begin.uptimeNanoseconds) / 1e9
        return RunReport(outcome: controller.outcome ?? .hostError("run ended without an outcome"),
                         statistics: total, perVCPU: perVCPU, stuckVCPUs: stuck, msrStatistics: msrTotal,
                         wallSeconds: elapsed, profile: profile)
    }
}
