// deflect run: load an image, run it under an optional MSR policy, report how it ended.
import ArgumentParser
import ControlAPI
import Dispatch
import FoundationEssentials
import Glibc
import Hypercalls
import KVM
import MachineControl
import MSRPolicy
import ReadableErrors
import VMM

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a guest image.",
        discussion: """
        Exit status: 0 when every vCPU halted; (value << 1) | 1 when the guest writes value to the \
        debug-exit port 0xf4; 2 guest reset; 4 triple fault; 6 KVM could not continue the guest; \
        8 timeout; 10 stopped by a signal; 64 usage error; 66 bad image, policy or API socket; 68 KVM unusable; \
        70 host error; 74 output could not be written.
        With --policy, SIGHUP reloads the policy file while the guest runs. With --api-socket, the VM is \
        driven through the control API (deflect ctl, docs/api.yaml) while it runs.
        """
    )

    @OptionGroup var machine: MachineOptions
    @OptionGroup var cpu: CPUModelOptions
    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "An MSR policy file (TOML) that decides every MSR access of this VM.")
    var policy: String?

    @Flag(help: "With --map-gpa-range: print the guest's shared regions as a table when the run ends.")
    var sharedRegions = false

    @Option(help: "With --map-gpa-range: write the guest's page map (shared regions) as JSON to this file.")
    var sharedRegionsJSON: String?

    func validate() throws {
        if (sharedRegions || sharedRegionsJSON != nil) && !machine.mapGPARange {
            throw ValidationError("--shared-regions and --shared-regions-json need --map-gpa-range")
        }
    }

    func run() async throws {
        let loaded = try policy.map { try loadPolicy($0) }
        var configuration = try machine.configuration(msr: loaded.map { .policy($0) } ?? .kernelOnly)
        try cpu.choice(kvmDevicePath: configuration.kvmDevicePath).apply(to: &configuration, policy: loaded)
        let (eventLog, eventFile) = try makeEventLog(runtime.events)
        let (vm, serialSink) = try machine.buildMachine(configuration, events: eventLog)
        let report = try await drive(vm, serialSink: serialSink, eventFile: eventFile, serialIsStdio: machine.serial == "stdio",
                                     policyPath: policy, runtime: runtime,
                                     apiConfiguration: VMConfiguration(
                                         image: machine.image, mode: configuration.mode.rawValue, memoryMib: configuration.memoryMiB,
                                         vcpus: configuration.vcpuCount, platform: configuration.platform.rawValue, policyPath: policy,
                                         cpuModel: configuration.cpuModel?.name ?? "host", cpuSpec: configuration.cpuModel?.spec ?? "host",
                                         cpuVendor: configuration.cpuModel?.vendor))
        if let hypercalls = vm.hypercallHandler {
            let map = hypercalls.snapshot()
            if sharedRegions { StandardStreams.writeError(SharedRegionsReport.table(map) + "\n") }
            if let sharedRegionsJSON {
                try writeOutputFile(SharedRegionsReport.json(map), to: sharedRegionsJSON, option: "--shared-regions-json")
            }
        }
        throw ExitCode(report.outcome.exitStatus)
    }
}

/// Why a policy file was not loaded.
enum PolicyFileError: Error {
    /// The file itself: completes "policy PATH …" ("does not exist", "is a directory, not a regular file").
    case file(String)
    /// The text has errors, each located as file:line:column.
    case invalid(PolicyErrors)
}

/// A policy text's largest size, as `PUT /policy` accepts.
let maximumPolicyFileBytes = 1 << 20

/// Reads and validates a policy file, with its CPU-model profile applied.
func readPolicy(_ path: String) throws(PolicyFileError) -> MSRPolicy {
    let bytes: [UInt8]
    do {
        bytes = try InputFiles.readRegularFile(path, limit: maximumPolicyFileBytes)
    } catch {
        throw .file("\(error)")
    }
    do {
        return try PolicyLoader.load(String(decoding: bytes, as: UTF8.self), file: path)
    } catch {
        throw .invalid(error)
    }
}

/// `readPolicy` for a command: one error line (status 66), or every
/// located error on its own line (file:line:column: error: message).
func loadPolicy(_ path: String) throws -> MSRPolicy {
    do {
        return try readPolicy(path)
    } catch {
        switch error {
        case .file(let reason):
            throw fail("policy \(path) \(reason)", status: ExitStatus.badInput)
        case .invalid(let errors):
            StandardStreams.writeError("\(errors)\n")
            throw ExitCode(ExitStatus.badInput)
        }
    }
}

/// SIGINT/SIGTERM stop the machine cleanly (statistics and output still
/// flushed); SIGHUP reloads the MSR policy file into the running machine.
final class SignalForwarder {
    private let sources = SignalSources()

    init(machine: Machine, policyPath: String?) {
        for signo in [SIGINT, SIGTERM] {
            sources.listen(signo) { machine.requestStop() }
        }
        if let policyPath {
            sources.listen(SIGHUP) {
                let reason: String
                do {
                    try machine.replacePolicy(try readPolicy(policyPath))
                    StandardStreams.writeError("deflect: policy \(policyPath) reloaded\n")
                    return
                } catch let error as PolicyFileError {
                    switch error {
                    case .file(let problem):
                        reason = "the file \(problem)"
                    case .invalid(let errors):
                        StandardStreams.writeError("\(errors)\n")
                        reason = errors.errors.count == 1 ? "it has an error" : "it has \(errors.errors.count) errors"
                    }
                } catch {
                    reason = ReadableError.reason(error)
                }
                StandardStreams.writeError("deflect: policy \(policyPath) not reloaded: \(reason); the previous policy stays\n")
            }
        }
    }

    func cancel() { sources.cancel() }
}

/// Signals handled on a Dispatch queue instead of by their default action.
final class SignalSources {
    private var sources: [any DispatchSourceSignal] = []

    func listen(_ signo: Int32, _ handler: @escaping @Sendable () -> Void) {
        signal(signo, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
        source.setEventHandler(handler: handler)
        source.resume()
        sources.append(source)
    }

    func cancel() { for s in sources { s.cancel() } }
}

/// Copies standard input to the guest's console (the UART's receive FIFO, or
/// the virtio console) on a background thread.
enum StandardInputPump {
    static func start(into machine: Machine) {
        // Without its pump the guest gets no input; the run goes on.
        try? HostThread.start(name: "stdin") {
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let n = buffer.withUnsafeMutableBytes { raw in read(0, raw.baseAddress, raw.count) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return }
                machine.consoleInput(Array(buffer[0..<n]))
            }
        }
    }
}
