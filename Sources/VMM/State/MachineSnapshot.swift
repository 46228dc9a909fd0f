// VMM: one owner for a VM's state. A snapshot is taken while the VM is
// paused (every vCPU out of KVM_RUN with its pending exit completed) and
// consists of a state file (sections, each with a CRC-64; see
// docs/snapshot-format.md) and a memory file beside it (raw guest-physical
// RAM, mapped MAP_PRIVATE by a restore). Sections:
//
//   config        what the machine was built from (image, mode, RAM, vCPUs, platform, boot)
//   user          Deflect's own state: MSR policy and emulated values, page map,
//                 hypercall counts, migration control, the guest clock
//   devices       every port device's state (UART FIFOs, CMOS/RTC, PM timer …)
//   vm            the in-kernel PICs, IOAPIC, PIT and the kvmclock
//   vcpu.N        each vCPU, captured and restored in the documented order (VCPUSnapshot)
//   host          what a restoring host must offer: KVM capabilities, CPUID features
//                 (HostRequirements; optional, older snapshots lack it)
//   memory        the memory file's name and size
//
// Both files are written atomically (temporary file, fsync, rename, fsync of
// the directory): a crash while writing leaves an earlier snapshot intact.
import Devices
import Foundation
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
    public var mode: String
    public var memoryMiB: Int
    public var vcpuCount: Int
    public var platform: String
    public var kernelPath: String
    public var append: String
    /// Module bytes live in guest RAM; the loader needs only their sizes to
    /// lay the machine out again.
    public var modules: [Module]
    public var mapGPARange: Bool
    public var migrationControl: Bool

    init(_ c: MachineConfiguration) {
        image = Data(c.image); mode = c.mode.rawValue; memoryMiB = c.memoryMiB; vcpuCount = c.vcpuCount
        platform = c.platform.rawValue; kernelPath = c.kernelPath; append = c.append
        modules = c.modules.map { Module(size: UInt64($0.bytes.count), commandLine: $0.commandLine) }
        mapGPARange = c.hypercalls.mapGPARange; migrationControl = c.hypercalls.migrationControl
    }

    /// The machine configuration, with `msr` from the saved policy.
    func configuration(msr: MSRSetup) throws(MachineError) -> MachineConfiguration {
        guard let bootMode = BootMode(rawValue: mode), let platform = Platform(rawValue: platform) else {
            throw .snapshot("the configuration names an unknown mode \"\(mode)\" or platform \"\(self.platform)\"")
        }
        var c = MachineConfiguration(image: [UInt8](image), mode: bootMode, memoryMiB: memoryMiB, vcpuCount: vcpuCount)
        c.platform = platform
        c.kernelPath = kernelPath
        c.append = append
        // Zero-filled placeholders of the right size (pages the OS never touches):
        // the loader lays modules out by size; their bytes are in the memory file.
        c.modules = modules.map { MultibootModuleContents(bytes: Data(count: Int(clamping: $0.size)), commandLine: $0.commandLine) }
        c.hypercalls = HypercallSetup(mapGPARange: mapGPARange, migrationControl: migrationControl)
        c.msr = msr
        return c
    }
}

/// Where the memory of a snapshot is.
public struct SavedMemory: Codable, Sendable, Equatable {
    /// The memory file's name, relative to the state file's directory.
    public var file: String
    public var size: UInt64
    /// nil or "full": the whole RAM. "diff": only the pages written since the
    /// previous snapshot, the rest holes; `deflect snapshot merge BASE DIFF`
    /// folds it into the previous snapshot's memory before a restore.
    public var kind: String?
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
        /// A snapshot's memory file, mapped MAP_PRIVATE (the file never changes).
        case file(path: String)
        /// A memfd already filled (an incoming migration), mapped MAP_SHARED.
        case filled(MemoryFile)
    }

    public var file: SnapshotFile
    public var configuration: SavedConfiguration
    public var user: UserSpaceState
    public var devices: [String: DeviceState]
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
        if case let .file(path) = memorySource { return path }
        return nil
    }

    /// Largest state file accepted (guest RAM is in the memory file).
    public static let maximumStateBytes = 256 << 20

    /// Reads and checks `path`: format, CRCs, host CPU vendor and KVM API
    /// version, every section present and decodable, sizes consistent, and
    /// what the `host` section (when there is one) says the snapshot needs:
    /// KVM capabilities and CPUID features `host` must have.
    public static func load(_ path: String, on host: RestoreHost) throws(MachineError) -> LoadedSnapshot {
        let bytes: [UInt8]
        do {
            bytes = try AtomicFile.read(path, limit: maximumStateBytes)
        } catch {
            throw .snapshot("\(error)")
        }
        return try decode(bytes, origin: path, on: host) { memory throws(MachineError) in
            guard !memory.file.contains("/"), !memory.file.isEmpty, memory.file != ".", memory.file != ".." else {
                throw .snapshot("\(path): the memory file name \"\(memory.file)\" must be a plain file name")
            }
            guard memory.kind != "diff" else {
                throw .snapshot("\(path) is a diff snapshot (only the pages written since the one before); fold it into that one first: deflect snapshot merge BASE \(path)")
            }
            let directory = (path as NSString).deletingLastPathComponent
            return .file(path: (directory.isEmpty ? "." : directory) + "/" + memory.file)
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
        if file.section(named: HostRequirements.sectionName) != nil {
            let needs = try format { () throws(SnapshotFormatError) in
                try file.decode(HostRequirements.self, section: HostRequirements.sectionName)
            }
            if let unmet = needs.firstUnmet(capabilityValue: host.capabilityValue, supportedCPUID: host.supportedCPUID) {
                throw .snapshot("\(origin): \(unmet)")
            }
        }
        let configuration = try format { () throws(SnapshotFormatError) in try file.decode(SavedConfiguration.self, section: "config") }
        let memory = try format { () throws(SnapshotFormatError) in try file.decode(SavedMemory.self, section: "memory") }
        guard configuration.vcpuCount >= 1, configuration.vcpuCount <= MachineConfiguration.vcpuRange.upperBound,
              MachineConfiguration.memoryRangeMiB.contains(configuration.memoryMiB),
              memory.size == UInt64(configuration.memoryMiB) << 20 else {
            throw .snapshot("\(origin): the configuration (\(configuration.vcpuCount) vCPUs, \(configuration.memoryMiB) MiB) does not match the memory section (\(memory.size) bytes)")
        }
        let source = try memorySource(memory)
        let vcpus = try format { () throws(SnapshotFormatError) in
            try (0..<configuration.vcpuCount).map { i throws(SnapshotFormatError) in
                try file.decode(VCPUSnapshot.self, section: "vcpu.\(i)")
            }
        }
        let user = try format { () throws(SnapshotFormatError) in try file.decode(UserSpaceState.self, section: "user") }
        let devices = try format { () throws(SnapshotFormatError) in try file.decode([String: DeviceState].self, section: "devices") }
        let vm = try format { () throws(SnapshotFormatError) in try file.decode(VMSnapshot.self, section: "vm") }
        return LoadedSnapshot(file: file, configuration: configuration, user: user, devices: devices, vm: vm, vcpus: vcpus,
                              memory: memory, memorySource: source)
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
    /// this as a control step): the memory file first (`PATH.mem`), then the
    /// state file at `path`, each atomically. A full snapshot turns on dirty
    /// logging, so that the next can be a diff: only the pages written since,
    /// as a sparse memory file.
    func writeSnapshot(to path: String, diff: Bool) throws(MachineError) -> SnapshotSummary {
        let begin = Date()
        let memoryName = (path as NSString).lastPathComponent + ".mem"
        let memoryPath = path + ".mem"
        let file = try captureState(memory: SavedMemory(file: memoryName, size: configuration.memoryBytes,
                                                        kind: diff ? "diff" : "full"))
        let memoryBytes = try writeMemoryFile(memoryPath, of: path, diff: diff)
        let bytes: [UInt8]
        do {
            bytes = try file.serialized()
            try AtomicFile.write(bytes, to: path)
        } catch {
            throw .snapshot("\(error)")
        }
        return SnapshotSummary(statePath: path, memoryPath: memoryPath, stateBytes: bytes.count,
                               memoryBytes: memoryBytes, seconds: Date().timeIntervalSince(begin))
    }

    /// Every section but the memory itself (config, user, devices, vm,
    /// vcpu.N, memory), captured from the paused machine: what a snapshot's
    /// state file holds and what a migration sends as its state message.
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
            try file.append(section: "config", encoding: SavedConfiguration(configuration))
            try file.append(section: "user", encoding: user)
            try file.append(section: "devices", encoding: devices.exportDeviceStates())
            try file.append(section: "vm", encoding: vmState)
            for (i, vcpuState) in vcpuStates.enumerated() {
                try file.append(section: "vcpu.\(i)", encoding: vcpuState)
            }
            let needs = HostRequirements.needed(vm: vmState, vcpus: vcpuStates, supportedCPUID: try system.supportedCPUID())
            try file.append(section: HostRequirements.sectionName, encoding: needs)
            try file.append(section: "memory", encoding: memory)
        } catch let error as MachineError {
            throw error
        } catch {
            throw .snapshot("capturing the state: \(error)")
        }
        return file
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

    /// Guest RAM into `path` (temporary file, fsync, rename): each slot's
    /// mapping written at its guest-physical offset, straight from memory —
    /// every page that is not all zeros (zero pages are holes), or for a diff
    /// only the pages KVM's dirty log reports (holes elsewhere). Returns the
    /// bytes of RAM written.
    private func writeMemoryFile(_ path: String, of statePath: String, diff: Bool) throws(MachineError) -> UInt64 {
        let writable = ram.regions.filter { !$0.readOnly }
        if diff && !dirtyLogging.withLock({ $0 }) {
            throw .snapshot("a diff snapshot needs a full snapshot of this machine first (dirty logging starts with it)")
        }
        let temporary = path + ".tmp-\(getpid())"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            // The first file a snapshot creates: name the path the user gave, and why not.
            let reason = String(cString: strerror(errno))
            throw .snapshot("cannot write \(statePath): cannot create \(temporary): \(reason)")
        }
        var closed = false
        defer { if !closed { _ = Glibc.close(fd); _ = unlink(temporary) } }
        guard ftruncate(fd, off_t(configuration.memoryBytes)) == 0 else {
            throw .snapshot("cannot size \(temporary): \(String(cString: strerror(errno)))")
        }
        var written: UInt64 = 0
        do throws(KVMError) {
            for region in ram.regions {
                if diff {
                    guard !region.readOnly else { continue }   // the BIOS area never changes
                    written += try region.writeDirtyPages(try vm.dirtyPages(slot: region.slot), to: fd,
                                                          fileOffset: region.start.rawValue)
                } else {
                    written += try region.writeContents(to: fd, fileOffset: region.start.rawValue)
                }
            }
            if !diff {
                // From now on KVM records written pages: the next snapshot may
                // be a diff. A log already running (an earlier snapshot or
                // migration) is drained: this snapshot is the new base.
                if !(try startDirtyLog()) {
                    for region in writable { _ = try vm.dirtyPages(slot: region.slot) }
                }
                dirtyLogging.withLock { $0 = true }
            }
        } catch {
            throw .snapshot("writing guest memory to \(temporary): \(error)")
        }
        guard fsync(fd) == 0 else { throw .snapshot("fsync \(temporary): \(String(cString: strerror(errno)))") }
        _ = Glibc.close(fd)
        closed = true
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = unlink(temporary)
            throw .snapshot("cannot rename \(temporary) to \(path): \(reason)")
        }
        return written
    }
}
