// deflect run: load an image, run it, report how it ended.
import ArgumentParser
import Dispatch
import Foundation
import Loader
import VMM

extension BootMode: ExpressibleByArgument {}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a guest image.",
        discussion: """
        Exit status: 0 when every vCPU halted; (value << 1) | 1 when the guest writes value to the \
        debug-exit port 0xf4; 2 guest reset; 4 triple fault; 6 KVM could not continue the guest; \
        8 timeout; 10 stopped by a signal; 64 usage error; 66 bad image; 68 KVM unusable; 70 host error.
        """
    )

    @Argument(help: "The guest image: an ELF64 executable or a flat binary (give --mode).")
    var image: String

    @Option(help: "How to load and start the image: real (flat, 16-bit at 0x7c00), long (flat, 64-bit at 0x100000) or elf. Default: elf when the file is ELF.")
    var mode: BootMode?

    @Option(help: "Guest RAM in MiB (\(MachineConfiguration.memoryRangeMiB.lowerBound)–\(MachineConfiguration.memoryRangeMiB.upperBound)).")
    var memory: Int = 64

    @Option(help: "Number of vCPUs, one host thread each.")
    var vcpus: Int = 1

    @Option(help: "Where the COM1 UART's output goes: stdio, or a file path.")
    var serial: String = "stdio"

    @Option(help: "Stop the guest after this many seconds (exit status 8).")
    var timeout: Double?

    @Flag(help: "Print per-exit-kind counts and handling times when the run ends.")
    var stats = false

    @Flag(help: "Do not print the line that says how the run ended, unless it ended badly.")
    var quiet = false

    @Option(help: .hidden)
    var kvmDevice: String = "/dev/kvm"

    func validate() throws {
        guard MachineConfiguration.memoryRangeMiB.contains(memory) else {
            throw ValidationError("--memory \(memory) is out of range \(MachineConfiguration.memoryRangeMiB.lowerBound)–\(MachineConfiguration.memoryRangeMiB.upperBound) MiB")
        }
        guard MachineConfiguration.vcpuRange.contains(vcpus) else {
            throw ValidationError("--vcpus \(vcpus) is out of range \(MachineConfiguration.vcpuRange.lowerBound)–\(MachineConfiguration.vcpuRange.upperBound)")
        }
        if let timeout, !(timeout > 0 && timeout <= 86_400) {
            throw ValidationError("--timeout must be more than 0 and at most 86400 seconds")
        }
        guard !serial.isEmpty else { throw ValidationError("--serial needs stdio or a file path") }
    }

    func run() throws {
        guard let bytes = FileManager.default.contents(atPath: image) else {
            let reason = FileManager.default.fileExists(atPath: image) ? "cannot be read" : "does not exist"
            throw fail("image \(image) \(reason)", status: ExitStatus.badInput)
        }
        let imageBytes = [UInt8](bytes)
        guard !imageBytes.isEmpty else { throw fail("image \(image) is empty", status: ExitStatus.badInput) }
        guard let bootMode = mode ?? ImageLoader.detectMode(imageBytes) else {
            throw fail("image \(image) is not an ELF file; give --mode real or --mode long for a flat binary", status: ExitStatus.badInput)
        }

        let sink: FileDescriptorSink
        do {
            sink = serial == "stdio" ? FileDescriptorSink.standardOutput() : try FileDescriptorSink.file(serial)
        } catch {
            throw fail("\(error)", status: ExitStatus.badInput)
        }

        let configuration = MachineConfiguration(image: imageBytes, mode: bootMode, memoryMiB: memory,
                                                 vcpuCount: vcpus, timeoutSeconds: timeout, kvmDevicePath: kvmDevice)
        let machine: Machine
        do {
            machine = try Machine(configuration: configuration, serialOutput: sink)
        } catch {
            throw fail("\(error)", status: error.exitStatus)
        }

        let signals = SignalForwarder(machine: machine)
        if serial == "stdio" { StandardInputPump.start(into: machine.devices) }
        let report = machine.run()
        signals.cancel()

        if !quiet || !report.outcome.isGuestRequested {
            StandardStreams.writeError(report.outcome.report.split(separator: "\n", omittingEmptySubsequences: false)
                .map { "deflect: \($0)" }.joined(separator: "\n") + "\n")
        }
        if !report.stuckVCPUs.isEmpty {
            StandardStreams.writeError("deflect: vCPUs \(report.stuckVCPUs) did not leave KVM_RUN after being kicked\n")
        }
        if let summary = machine.events.summary() { StandardStreams.writeError("deflect: \(summary)\n") }
        if stats {
            StandardStreams.writeError(report.statistics.table() + "\n")
            StandardStreams.writeError(String(format: "wall time %.3f s\n", report.wallSeconds))
        }
        throw ExitCode(report.outcome.exitStatus)
    }
}

extension MachineError {
    /// The process status for a machine that could not be built.
    var exitStatus: Int32 {
        switch self {
        case .configuration: return ExitStatus.usage
        case .image: return ExitStatus.badInput
        case .kvmUnavailable: return ExitStatus.kvmUnavailable
        case .kvm, .host: return ExitStatus.hostError
        }
    }
}

/// SIGINT/SIGTERM stop the machine cleanly (statistics and output still flushed).
final class SignalForwarder {
    private let sources: [any DispatchSourceSignal]

    init(machine: Machine) {
        var made: [any DispatchSourceSignal] = []
        for signo in [SIGINT, SIGTERM] {
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler { machine.requestStop() }
            source.resume()
            made.append(source)
        }
        sources = made
    }

    func cancel() { for s in sources { s.cancel() } }
}

/// Copies standard input into the UART's receive FIFO on a background thread.
enum StandardInputPump {
    static func start(into devices: DeviceHub) {
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let n = buffer.withUnsafeMutableBytes { raw in read(0, raw.baseAddress, raw.count) }
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { return }
                devices.serialInput(Array(buffer[0..<n]))
            }
        }
        thread.name = "stdin"
        thread.start()
    }
}
