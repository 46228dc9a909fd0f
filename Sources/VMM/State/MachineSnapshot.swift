// VMM: one owner for a VM's state. A snapshot is taken while the VM is
// paused (every vCPU out of KVM_RUN with its pending exit completed) and
// consists of a state file (sections, each with a CRC-64; see
// docs/snapshot-format.md) and a memory file beside it (raw guest-physical
// RAM, mapped MAP_PRIVATE by a restore) whose 1 MiB chunks have their CRC-64
// in the state file. Sections (`SnapshotSectionName`):
//
//   config        what the machine was built from (image, mode, RAM, vCPUs, platform, boot)
//   user          Deflect's own state: MSR policy and emulated values, page map,
//                 hypercall counts, migration control, the guest clock
//   devices       every port device's state (UART FIFOs, CMOS/RTC, PM timer …)
//   vm            the in-kernel PICs, IOAPIC, PIT and the kvmclock
//   vcpu.N        each vCPU, captured and restored in the documented order (VCPUSnapshot)
//   host          what a restoring host must offer: KVM capabilities, CPUID features
//                 (HostRequirements; optional, older snapshots lack it)
//   memory        the memory file's name, size, kind and chunk checksums
//
// Writing replaces the pair at PATH all or nothing (SnapshotReplacement).
import Devices
import CPUModel
import FoundationEssentials
import MSRPolicy
import Glibc
import KVM
import Loader
import Snapshot

/// What a restore rebuilds the machine from (the boot configuration).
public struct SavedConfiguration: Codable, Sendable, Equatable {
    public struct Module: Codable, Sendable, Equatable {
        public var size: UInt64
        public var commandLine: String
    }

    public var image: Data
    public var mode: BootMode
    public var memoryMiB: Int
    public var vcpuCount: Int
    public var platform: Platform
    public var kernelPath: String
    public var append: String
    /// Module bytes live in guest RAM; the loader needs only their sizes to
    /// lay the machine out again.
    public var modules: [Module]
    public var mapGPARange: Bool
    public var migrationControl: Bool
    /// The CPU model the guest was started with; absent in snapshots from
    /// before models (and for `host`): those restore with the host's CPUID.
    public var cpuModel: ResolvedCPUModel?
    /// Linux and PVH: the initrd's size (its bytes live in guest RAM); absent
    /// in snapshots from before Linux boot.
    public var initrdSize: UInt64?
    /// The PCI devices (absent in snapshots from before them): disks by path
    /// with their size (the files are not copied; a restore refuses a disk
    /// whose size changed), TAPs, vsock, entropy, the console.
    public var disks: [SavedDisk]?
    public var networks: [NetConfiguration]?
    public var vsock: VsockConfiguration?
    public var entropyDevice: Bool?
    public var console: ConsoleDevice?

    public struct SavedDisk: Codable, Sendable, Equatable {
        public var disk: DiskConfiguration
        /// The file's size when the snapshot was taken.
        public var bytes: UInt64
    }

    init(_ c: MachineConfiguration, diskSizes: [UInt64] = []) {
        image = Data(c.image); mode = c.mode; memoryMiB = c.memoryMiB; vcpuCount = c.vcpuCount
        platform = c.platform; kernelPath = c.kernelPath; append = c.append
        modules = c.modules.map { Module(size: UInt64($0.bytes.count), commandLine: $0.commandLine) }
        mapGPARange = c.hypercalls.mapGPARange; migrationControl = c.hypercalls.migrationControl
        cpuModel = c.cpuModel
        initrdSize = c.initrd.map { UInt64($0.count) }
        disks = c.disks.isEmpty ? nil : zip(c.disks, diskSizes).map { SavedDisk(disk: $0, bytes: $1) }
        networks = c.networks.isEmpty ? nil : c.networks
        vsock = c.vsock
        entropyDevice = c.entropyDevice ? true : nil
        console = c.console == .virtio ? .virtio : nil
    }

    /// The machine configuration, with `msr` from the saved policy.
    func configuration(msr: MSRSetup) -> MachineConfiguration {
        var c = MachineConfiguration(image: [UInt8](image), mode: mode, memoryMiB: memoryMiB, vcpuCount: vcpuCount)
        c.platform = platform
        c.kernelPath = kernelPath
        c.append = append
        // Zero-filled placeholders of the right size (pages the OS never touches):
        // the loader lays modules out by size; their bytes are in the memory file.
        c.modules = modules.map { MultibootModuleContents(bytes: Data(count: Int(clamping: $0.size)), commandLine: $0.commandLine) }
        c.hypercalls = HypercallSetup(mapGPARange: mapGPARange, migrationControl: migrationControl)
        c.msr = msr
        c.cpuModel = cpuModel
        // A placeholder of the right size: the loader lays the boot out by
        // size; the initrd's bytes are in the memory file.
        c.initrd = initrdSize.map { Data(count: Int(clamping: $0)) }
        c.disks = disks?.map(\.disk) ?? []
        c.networks = networks ?? []
        c.vsock = vsock
        c.entropyDevice = entropyDevice ?? false
        c.console = console ?? .serial
        // The saved policy already holds the rules layered at the start; a
        // later policy replacement layers the model's profile again.
        c.cpuModelMSRRules = cpuModel?.profileName.flatMap(CPUProfiles.named)?.rules ?? []
        return c
    }
}

/// Where the memory of a snapshot is, and how to check it.
public struct SavedMemory: Codable, Sendable, Equatable {
    /// What a memory file holds.
    public enum Kind: String, Codable, Sendable {
        /// The whole RAM (zero pages as holes).
        case full
        /// Only the pages written since the previous snapshot, the rest
        /// holes; `deflect snapshot merge BASE DIFF` folds it into the
        /// previous snapshot's memory before a restore.
        case diff
        /// A live migration's state message: RAM travels in the stream (no file).
        case migration
    }

    /// The memory file's name, relative to the state file's directory.
    public var file: String
    public var size: UInt64
    /// nil (older files) means full.
    public var kind: Kind?
    /// The chunk size of `chunkCRC64` in bytes; nil in files written before
    /// memory checksums (nothing is checked then).
    public var chunkBytes: UInt64?
    /// CRC-64 of each `chunkBytes` chunk of the file as it reads (holes as zeros).
    public var chunkCRC64: [UInt64]?

    public init(file: String, size: UInt64, kind: Kind?, chunkBytes: UInt64? = nil, chunkCRC64: [UInt64]? = nil) {
        self.file = file
        self.size = size
        self.kind = kind
        self.chunkBytes = chunkBytes
        self.chunkCRC64 = chunkCRC64
    }

    /// Checks the memory file `fd` (at `path`) against this description:
    /// its size, then — when `verify` and the state has them — every chunk's
    /// CRC-64. Errors name the file and say the snapshot is damaged.
    public func check(fd: CInt, path: String, verify: Bool) throws(MachineError) {
        let actual: UInt64
        do {
            actual = try SparseFile.size(of: fd, what: path)
        } catch {
            throw .snapshot("the memory file \(path) cannot be examined: \(error)")
        }
        guard actual == size else {
            throw .snapshot("the memory file \(path) is \(actual) bytes, the state file says \(size): the snapshot is damaged")
        }
        guard verify, let chunkCRC64 else { return }
        guard let chunkBytes, chunkBytes > 0, chunkBytes % 4096 == 0,
              chunkCRC64.count == MemoryChecksums.chunkCount(size: size, chunkBytes: chunkBytes) else {
            throw .snapshot("the memory section's checksums do not cover \(size) bytes in chunks of \(chunkBytes ?? 0): the state file is damaged")
        }
        let mismatch: MemoryChunkMismatch?
        do {
            mismatch = try MemoryChecksums.firstMismatch(fd: fd, size: size, chunkBytes: chunkBytes, expected: chunkCRC64, what: path)
        } catch {
            throw .snapshot("the memory file \(path) cannot be read: \(error)")
        }
        if let mismatch {
            throw .snapshot("the memory file \(path) is damaged: \(mismatch)")
        }
    }
}

/// What `Machine.snapshot` wrote.
public struct SnapshotSummary: Sendable, Equatable {
    public var statePath: String
    public var memoryPath: String
    public var stateBytes: Int
    public var memoryBytes: UInt64
    public var seconds: Double
}

/// A state file read and checked against this host, ready for a restore.
public struct LoadedSnapshot: Sendable {
    /// Where the guest RAM of a restore comes from.
    public enum MemorySource: Sendable {
        /// A snapshot's memory file (opened and checked by `load`), mapped
        /// MAP_PRIVATE (the file never changes).
        case file(path: String, memory: MemoryFile)
        /// A memfd already filled (an incoming migration), mapped MAP_SHARED.
        case filled(MemoryFile)
    }

    public var file: SnapshotFile
    public var configuration: SavedConfiguration
    public var user: UserSpaceState
    public var devices: [String: DeviceState]
    /// The PCI bus and devices, nil for a VM without them.
    public var pci: PCIState?
    public var vm: VMSnapshot
    public var vcpus: [VCPUSnapshot]
    public var memory: SavedMemory
    public var memorySource: MemorySource
    /// A migration's state: the restore advances the guest's kvmclock
    /// (KVM_CLOCK_REALTIME) and every vCPU's TSC by the host realtime elapsed
    /// since the capture, so the guest sees its pause. False for a snapshot
    /// file: the guest's time continues from the saved values (as QEMU's
    /// loadvm and Firecracker do).
    public var advancesGuestTime = false

    /// The memory file's path (resolved next to the state file), nil for a filled memfd.
    public var memoryPath: String? {
        if case let .file(path, _) = memorySource { return path }
        return nil
    }

    /// Largest state file accepted (guest RAM is in the memory file).
    public static let maximumStateBytes = 256 << 20

    /// Reads and checks `path`: format, CRCs, host CPU vendor and KVM API
    /// version, every section present and decodable, sizes consistent, and
    /// what the `host` section (when there is one) says the snapshot needs:
    /// KVM capabilities and CPUID features `host` must have. Then the memory
    /// file: a regular file of the recorded size, and with `verifyMemory`
    /// every chunk against its CRC-64 (when the state records them). Only
    /// regular files are opened, and never in a way that blocks (a FIFO).
    public static func load(_ path: String, on host: RestoreHost, verifyMemory: Bool = true) throws(MachineError) -> LoadedSnapshot {
        let bytes: [UInt8]
        do {
            bytes = try AtomicFile.read(path, limit: maximumStateBytes)
        } catch {
            throw .snapshot("\(error)")
        }
        return try decode(bytes, origin: path, on: host) { memory throws(MachineError) in
            let memoryPath = try memory.path(besideStateFile: path)
            guard memory.kind != .diff else {
                throw .snapshot("\(path) is a diff snapshot (only the pages written since the one before); fold it into that one first: deflect snapshot merge BASE \(path)")
            }
            let file: MemoryFile
            do {
                file = try MemoryFile.open(path: memoryPath)
            } catch {
                throw .snapshot("\(path): the memory file is missing or unreadable: \(error)")
            }
            try memory.check(fd: file.fileDescriptor, path: memoryPath, verify: verifyMemory)
            return .file(path: memoryPath, memory: file)
        }
    }

    /// Checks the state in `bytes` (a state file's, or the state message of
    /// an incoming migration, `origin` naming it in errors) as `load` does;
    /// `memorySource` checks the memory section and says where RAM comes from.
    public static func decode(_ bytes: [UInt8], origin: String, on host: RestoreHost,
                              memorySource: (SavedMemory) throws(MachineError) -> MemorySource) throws(MachineError) -> LoadedSnapshot {
        func format<T>(_ body: () throws(SnapshotFormatError) -> T) throws(MachineError) -> T {
            do {
                return try body()
            } catch {
                throw .snapshot("\(origin): \(error)")
            }
        }
        let file = try format { () throws(SnapshotFormatError) in try SnapshotFile(parsing: bytes) }
        guard file.host.vendor == host.cpu.vendor else {
            throw .snapshot("\(origin): taken on a \(file.host.vendor) CPU; this host is \(host.cpu.vendor)")
        }
        guard file.kvmAPIVersion == host.kvmAPIVersion else {
            throw .snapshot("\(origin): taken with KVM API \(file.kvmAPIVersion); this host has \(host.kvmAPIVersion)")
        }
        let configuration = try format { () throws(SnapshotFormatError) in try file.decode(SavedConfiguration.self, section: .config) }
        // The guest has seen its CPU model's features: a host that cannot give
        // every one is refused, by name, before any memory is read or vCPU created.
        if let model = configuration.cpuModel,
           let refusal = CPUModelSetup.refusal(model, host: host.supportedCPUID.map(CPUIDLeaf.init)) {
            throw .snapshot("\(origin): \(refusal)")
        }
        if file.section(named: .host) != nil {
            let needs = try format { () throws(SnapshotFormatError) in
                try file.decode(HostRequirements.self, section: .host)
            }
            if let unmet = needs.firstUnmet(capabilityValue: host.capabilityValue, supportedCPUID: host.supportedCPUID) {
                throw .snapshot("\(origin): \(unmet)")
            }
        }
        let memory = try format { () throws(SnapshotFormatError) in try file.decode(SavedMemory.self, section: .memory) }
        // The memory file holds RAM at file offset = guest address: it ends where RAM does.
        guard configuration.vcpuCount >= 1, configuration.vcpuCount <= MachineConfiguration.vcpuRange.upperBound,
              MachineConfiguration.memoryRangeMiB.contains(configuration.memoryMiB),
              memory.size == MachineConfiguration.memoryLayout.ramEnd(memoryBytes: UInt64(configuration.memoryMiB) << 20) else {
            throw .snapshot("\(origin): the configuration (\(configuration.vcpuCount) vCPUs, \(configuration.memoryMiB) MiB) does not match the memory section (\(memory.size) bytes)")
        }
        let source = try memorySource(memory)
        let vcpus = try format { () throws(SnapshotFormatError) in
            try (0..<configuration.vcpuCount).map { i throws(SnapshotFormatError) in
                try file.decode(VCPUSnapshot.self, section: .vcpu(i))
            }
        }
        let user = try format { () throws(SnapshotFormatError) in try file.decode(UserSpaceState.self, section: .user) }
        let devices = try format { () throws(SnapshotFormatError) in try file.decode([String: DeviceState].self, section: .devices) }
        let vm = try format { () throws(SnapshotFormatError) in try file.decode(VMSnapshot.self, section: .vm) }
        let pci = file.section(named: .pci) == nil ? nil
            : try format { () throws(SnapshotFormatError) in try file.decode(PCIState.self, section: .pci) }
        return LoadedSnapshot(file: file, configuration: configuration, user: user, devices: devices, pci: pci, vm: vm,
                              vcpus: vcpus, memory: memory, memorySource: source)
    }
}

extension SavedMemory {
    /// The memory file's path: `file` (a plain name) in the state file's directory.
    public func path(besideStateFile statePath: String) throws(MachineError) -> String {
        guard !file.contains("/"), !file.isEmpty, file != ".", file != ".." else {
            throw .snapshot("\(statePath): the memory file name \"\(file)\" must be a plain file name")
        }
        return AtomicFile.split(statePath).directory + "/" + file
    }
}

extension SnapshotHost {
    /// This host as a snapshot records it (CPUID leaves 0 and 1 as KVM reports them).
    public static func current(_ system: KVMSystem) throws(MachineError) -> SnapshotHost {
        do throws(KVMError) {
            let cpuid = try system.supportedCPUID()
            guard let leaf0 = cpuid.first(where: { $0.function == 0 }), let leaf1 = cpuid.first(where: { $0.function == 1 }) else {
                throw KVMError.invalidArgument(request: "KVM_GET_SUPPORTED_CPUID", reason: "no leaf 0 or 1")
            }
            return SnapshotHost(leaf0EBX: leaf0.ebx, leaf0ECX: leaf0.ecx, leaf0EDX: leaf0.edx, leaf1EAX: leaf1.eax)
        } catch {
            throw .kvm(error)
        }
    }
}

extension Machine {
    /// Writes a snapshot of the paused machine (`snapshot(to:diff:)` runs
    /// this as a control step) to `path`, replacing the snapshot there all
    /// or nothing (SnapshotReplacement): the memory file (`PATH.mem-<16 hex>`,
    /// its chunk checksums computed from the written file), then the state
    /// file naming it. A full snapshot turns on dirty logging, so that the
    /// next can be a diff: only the pages written since, as a sparse memory file.
    func writeSnapshot(to path: String, diff: Bool) throws(MachineError) -> SnapshotSummary {
        if diff && !dirtyLogging.withLock({ $0 }) {
            throw .snapshot("a diff snapshot needs a full snapshot of this machine first (dirty logging starts with it)")
        }
        let begin = Date()
        // The devices finish what the guest made available and then wait:
        // memory and their state are taken with no request in flight.
        pci?.quiesce()
        defer { pci?.resumeWorkers() }
        let replacement = try SnapshotReplacement.begin(path)
        let (memory, memoryName) = try replacement.pendingMemory()
        let memoryBytes: UInt64
        let bytes: [UInt8]
        do {
            memoryBytes = try writeMemory(to: memory.fileDescriptor, diff: diff)
            let checksums = try MemoryChecksums.compute(fd: memory.fileDescriptor, size: configuration.ramEnd,
                                                        what: "the new memory file of \(path)")
            let file = try captureState(memory: SavedMemory(file: memoryName, size: configuration.ramEnd,
                                                            kind: diff ? .diff : .full,
                                                            chunkBytes: MemoryChecksums.chunkBytes, chunkCRC64: checksums))
            bytes = try file.serialized()
            try replacement.commit(memory: memory, memoryName: memoryName, state: bytes)
        } catch {
            // A diff took its pages out of KVM's dirty log: after a failure
            // the next diff would miss them, so the next snapshot must be full.
            if diff { dirtyLogging.withLock { $0 = false } }
            switch error {
            case let error as MachineError: throw error
            case let error as KVMError: throw .snapshot("writing guest memory for \(path): \(error)")
            default: throw .snapshot("cannot write \(path): \(error)")
            }
        }
        if !diff { try startDirtyLogAfterFullSnapshot() }
        return SnapshotSummary(statePath: path, memoryPath: replacement.directory + "/" + memoryName, stateBytes: bytes.count,
                               memoryBytes: memoryBytes, seconds: Date().timeIntervalSince(begin))
    }

    /// Every section but the memory itself (config, user, devices, vm,
    /// vcpu.N, host, memory, pci), captured from the paused machine: what a
    /// snapshot's state file holds and what a migration sends as its state message.
    func captureState(memory: SavedMemory) throws(MachineError) -> SnapshotFile {
        var file = SnapshotFile(kvmAPIVersion: UInt32(clamping: (try? system.apiVersion()) ?? 12), host: try SnapshotHost.current(system))
        do {
            var user = try captureUserSpaceState()
            let vmState = try VMSnapshot.capture(vm)
            let cpuid = try vcpus.first.map { try $0.cpuid() } ?? []
            let msrs = try saveableMSRs(system: system, cpuid: cpuid)
            // Taken just before the TSCs are read: a receiver's advance then
            // covers the whole pause (microseconds too much rather than too little).
            user.vcpuCaptureRealtimeNanoseconds = TSCAdvance.hostRealtimeNanoseconds()
            let vcpuStates = try vcpus.map { vcpu throws in try VCPUSnapshot.capture(vcpu, msrIndices: msrs) }
            try file.append(.config, encoding: SavedConfiguration(configuration, diskSizes: pci?.diskSizes ?? []))
            if let pci, pci.deviceCount > 0 { try file.append(.pci, encoding: pci.exportState()) }
            try file.append(.user, encoding: user)
            try file.append(.devices, encoding: devices.exportDeviceStates())
            try file.append(.vm, encoding: vmState)
            for (i, vcpuState) in vcpuStates.enumerated() {
                try file.append(.vcpu(i), encoding: vcpuState)
            }
            let needs = HostRequirements.needed(vm: vmState, vcpus: vcpuStates, supportedCPUID: try system.supportedCPUID())
            try file.append(.host, encoding: needs)
            try file.append(.memory, encoding: memory)
        } catch let error as MachineError {
            throw error
        } catch {
            throw .snapshot("capturing the state: \(error)")
        }
        return file
    }

    /// The pages of `region` written since the last call: by the guest
    /// (KVM's dirty log, which must run) or by Deflect's devices (RAMWriteLog).
    func dirtyPages(_ region: GuestMemory) throws(KVMError) -> DirtyPageBitmap {
        let guestWrites = try vm.dirtyPages(slot: region.slot)
        return ram.writeLog.take(slot: region.slot).map(guestWrites.union) ?? guestWrites
    }

    /// Starts KVM's dirty log on the writable slots unless it runs already;
    /// true when it was started now (nothing recorded yet).
    @discardableResult
    func startDirtyLog() throws(KVMError) -> Bool {
        try kvmDirtyLog.withLock { (on: inout Bool) throws(KVMError) -> Bool in
            guard !on else { return false }
            _ = try vm.enableManualDirtyLogProtect()
            for region in ram.regions where !region.readOnly { try vm.setDirtyLogging(slot: region.slot, enabled: true) }
            on = true
            return true
        }
    }

    /// After a full snapshot is committed KVM records written pages, so the
    /// next snapshot may be a diff. A log already running (an earlier
    /// snapshot or migration) is drained: this snapshot is the new base.
    /// (Only after the commit: a failed snapshot leaves the log as it was.)
    private func startDirtyLogAfterFullSnapshot() throws(MachineError) {
        do throws(KVMError) {
            if !(try startDirtyLog()) {
                for region in ram.regions where !region.readOnly { _ = try dirtyPages(region) }
            }
            dirtyLogging.withLock { $0 = true }
        } catch {
            dirtyLogging.withLock { $0 = false }
            throw .snapshot("the snapshot is written, but dirty logging for the next diff did not start: \(error)")
        }
    }

    /// Guest RAM into `fd` (a pending memory file): each slot's mapping
    /// written at its guest-physical offset, straight from memory — every
    /// page that is not all zeros (zero pages are holes), or for a diff only
    /// the pages KVM's dirty log reports (holes elsewhere). Returns the
    /// bytes of RAM written.
    private func writeMemory(to fd: CInt, diff: Bool) throws(KVMError) -> UInt64 {
        var written: UInt64 = 0
        for region in ram.regions {
            if diff {
                guard !region.readOnly else { continue }   // the BIOS area never changes
                written += try region.writeDirtyPages(try dirtyPages(region), to: fd,
                                                      fileOffset: region.start.rawValue)
            } else {
                written += try region.writeContents(to: fd, fileOffset: region.start.rawValue)
            }
        }
        try SparseFile.ensureSize(fd, configuration.ramEnd, what: "memory file")
        return written
    }
}
