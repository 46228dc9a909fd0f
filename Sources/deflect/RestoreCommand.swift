// deflect restore: a new process from a snapshot: the state file is read and
// checked against this host, the memory file mapped MAP_PRIVATE, every piece
// of state put back, and the guest runs on as `deflect run` would run it.
import ArgumentParser
import ControlAPI
import FoundationEssentials
import Glibc
import KVM
import MachineControl
import Snapshot
import VMM

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Start a VM from a snapshot (deflect ctl snapshot / PUT /snapshot).",
        discussion: """
        The state file is checked (format, CRC-64 of every section, CPU vendor, KVM API version) before \
        anything runs, and the memory file beside it (its size, and the CRC-64 of every 1 MiB chunk that \
        holds data, unless --no-verify-memory); the memory is then mapped, not copied. Runtime options and \
        exit statuses are those of deflect run; 66 for a snapshot that is invalid, damaged or does not fit \
        this host.
        """
    )

    @Argument(help: "The snapshot's state file.")
    var state: String

    @Option(help: "Where the COM1 UART's output goes: stdio, or a file path.")
    var serial: String = "stdio"

    @Option(help: "Stop the guest after this many seconds (exit status 8).")
    var timeout: Double?

    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var cpu: CPUModelOptions

    @Flag(inversion: .prefixedNo,
          help: "Read the memory file and check every chunk's CRC-64 before the guest runs (the size is always checked).")
    var verifyMemory = true

    @Flag(help: "Start paused: no guest instruction runs until the API resumes it (needs --api-socket).")
    var paused = false

    @Option(help: .hidden)
    var kvmDevice: String = "/dev/kvm"

    func validate() throws {
        if paused && runtime.apiSocket == nil { throw ValidationError("--paused needs --api-socket (nothing else could resume the VM)") }
        try validateRestoredRun(timeout: timeout, serial: serial)
    }

    func run() async throws {
        let host = try thisHost(kvmDevice: kvmDevice)
        let loaded: LoadedSnapshot
        do {
            loaded = try LoadedSnapshot.load(state, on: host, verifyMemory: verifyMemory)
        } catch {
            throw fail("\(error)", status: ExitStatus.badInput)
        }
        if let mismatch = CPUModelSetup.mismatch(saved: loaded.configuration.cpuModel,
                                                   expected: try cpu.expectedModel(kvmDevicePath: kvmDevice)) {
            throw fail("\(state): \(mismatch)", status: ExitStatus.cpuModelUnavailable)
        }
        let report = try await runRestored(loaded, serial: serial, timeout: timeout, paused: paused, runtime: runtime,
                                           source: state)
        throw ExitCode(report.outcome.exitStatus)
    }
}

/// The runtime options a restored or received guest shares with `run`.
func validateRestoredRun(timeout: Double?, serial: String) throws {
    if let timeout, !(timeout > 0 && timeout <= 86_400) {
        throw ValidationError("--timeout must be more than 0 and at most 86400 seconds")
    }
    guard !serial.isEmpty else { throw ValidationError("--serial needs stdio or a file path") }
}

/// This host as a saved state is checked against: CPU, KVM API version,
/// KVM capabilities and supported CPUID.
func thisHost(kvmDevice: String) throws -> RestoreHost {
    let system: KVMSystem
    do {
        system = try KVMSystem(path: kvmDevice)
    } catch {
        throw fail("KVM is not usable: \(error)", status: ExitStatus.kvmUnavailable)
    }
    do {
        return try RestoreHost.current(system)
    } catch {
        throw fail("\(error)", status: ExitStatus.hostError)
    }
}

/// Builds the machine a checked state describes (`Machine(restoring:)`),
/// calls `ready` with it (an incoming migration acknowledges there) and
/// runs it as `deflect run` would: shared by `restore` and `receive`.
/// `source` names where the state came from in the API's configuration.
func runRestored(_ loaded: LoadedSnapshot, serial: String, timeout: Double?, paused: Bool, runtime: RuntimeOptions,
                 source: String, ready: (Machine) throws -> Void = { _ in }) async throws -> RunReport {
    let (eventLog, eventFile) = try makeEventLog(runtime.events)
    let sink: FileDescriptorSink
    do {
        sink = serial == "stdio" ? FileDescriptorSink.standardOutput(label: "standard output (--serial stdio)")
            : try FileDescriptorSink.file(serial, label: "--serial \(serial)")
    } catch {
        throw fail("\(error)", status: ExitStatus.badInput)
    }
    let vm: Machine
    do {
        vm = try Machine(restoring: loaded, timeout: timeout, serialOutput: sink, events: eventLog)
    } catch {
        throw fail("\(error)", status: error.exitStatus)
    }
    try ready(vm)
    sink.onFailure = { [weak vm] message in vm?.stopBecauseOutputFailed(message) }
    let c = vm.configuration
    return try await drive(vm, serialSink: sink, eventFile: eventFile, serialIsStdio: serial == "stdio",
                           policyPath: nil, runtime: runtime,
                           apiConfiguration: VMConfiguration(image: source, mode: c.mode.rawValue, memoryMib: c.memoryMiB,
                                                             vcpus: c.vcpuCount, platform: c.platform.rawValue,
                                                             policyPath: nil),
                           startingPaused: paused)
}
