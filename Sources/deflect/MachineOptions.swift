// deflect: the options every command that starts a guest shares (run, trace),
// and turning them into a MachineConfiguration with one-line errors.
import ArgumentParser
import FoundationEssentials
import Glibc
import KVM
import Loader
import VMM

extension BootMode: ExpressibleByArgument {}
extension Platform: ExpressibleByArgument {}
extension ConsoleDevice: ExpressibleByArgument {}

struct MachineOptions: ParsableArguments {
    @Argument(help: "The guest image: an ELF64 executable or a flat binary (give --mode).")
    var image: String

    @Option(help: "How to load and start the image: real (flat, 16-bit at 0x7c00), long (flat, 64-bit at 0x100000), elf (ELF64), multiboot (Multiboot v1, as QEMU's -kernel), linux (a bzImage through the 64-bit boot protocol) or pvh (an ELF vmlinux with the PVH entry note). Default: linux for a bzImage, multiboot when the file has a multiboot header, pvh for an ELF with the PVH note, else elf when it is ELF.")
    var mode: BootMode?

    // Both take the next argument whatever it starts with, as QEMU's -append
    // and -initrd do: a test kernel's arguments often start with "-".
    @Option(parsing: .unconditional,
            help: "The kernel command line (QEMU's -append). Multiboot: after the kernel path, the kernel sees \"IMAGE APPEND\", IMAGE as typed; Linux and PVH: the command line itself. Taken as given even when it starts with '-'.")
    var append: String = ""

    @Option(name: .customLong("module"), parsing: .unconditionalSingleValue, help: "Multiboot: a module, \"FILE [ARGS]\" (QEMU's -initrd; repeat for more). Its command line is the whole string. FILE must be a regular file; all modules together at most the guest's RAM.")
    var modules: [String] = []

    @Option(help: "Linux and PVH: the initial ramdisk (QEMU's -initrd): a regular file, placed as high as the kernel allows.")
    var initrd: String?

    @Option(help: "The platform: minimal (UART, debug-exit, i8042) or pc (adds in-kernel APIC/IOAPIC/PIT, fw_cfg, RTC/CMOS, ACPI tables and PM timer). Default: pc for multiboot, linux and pvh, minimal otherwise.")
    var platform: Platform?

    @Option(help: "Guest RAM in MiB (\(MachineConfiguration.memoryRangeMiB.lowerBound)–\(MachineConfiguration.memoryRangeMiB.upperBound)).")
    var memory: Int = 64

    @Option(help: "Number of vCPUs, one host thread each.")
    var vcpus: Int = 1

    @Option(help: "Where the COM1 UART's output goes: stdio, or a file path.")
    var serial: String = "stdio"

    @Option(help: "Stop the guest after this many seconds (exit status 8).")
    var timeout: Double?

    @Option(name: .customLong("disk"), help: "A virtio-blk disk on the PCI bus (PC platform): path=FILE[,readonly=on][,serial=ID][,direct=on][,ioeventfd=off] (repeat for more). FILE must be a regular file, readable and, unless readonly=on, writable; the guest sees its size in 512-byte sectors. direct=on opens it with O_DIRECT (the host page cache bypassed, as QEMU's cache=none); ioeventfd=off makes queue notifications exit to user space (to measure what ioeventfd saves).")
    var disks: [String] = []

    @Option(name: .customLong("net"), help: "A virtio-net device on the PCI bus (PC platform) over the TAP NAME: tap=NAME[,mac=MAC][,ioeventfd=off] (repeat for more; MAC default 52:54:00:12:34:56, counting up). The TAP must exist (ip tuntap add dev NAME mode tap; Deflect never creates one) and be openable (CAP_NET_ADMIN or a TAP this user owns); offloads are offered as the TAP takes them.")
    var networks: [String] = []

    @Option(help: "A virtio-vsock device on the PCI bus (PC platform): cid=N,socket=PATH. Host programs connect to the Unix socket PATH and write \"CONNECT PORT\\n\" (answered \"OK HOSTPORT\\n\") to reach guest port PORT; a guest connecting to host port P reaches the program listening on PATH_P (Firecracker's hybrid vsock). PATH must not exist yet.")
    var vsock: String?

    @Flag(help: "A virtio-rng device on the PCI bus (PC platform), filled from the host's getrandom.")
    var rng = false

    @Option(help: "The guest's console: serial (the COM1 UART) or virtio (a virtio-console, Linux's hvc0, on the same output as --serial; standard input goes to it). (values: serial, virtio)")
    var console: ConsoleDevice = .serial

    @Flag(help: "Send KVM_HC_MAP_GPA_RANGE hypercalls to Deflect, keep the guest's shared/private page map, and advertise KVM_FEATURE_HC_MAP_GPA_RANGE.")
    var mapGPARange = false

    @Flag(help: "Offer KVM_FEATURE_MIGRATION_CONTROL and handle MSR_KVM_MIGRATION_CONTROL (0x4b564d08) in Deflect.")
    var migrationControl = false

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

    /// Reads the image and builds the configuration; every failure is a one-line error.
    /// Files are checked against guest RAM before a byte is read, then mapped, not copied.
    func configuration(msr: MSRSetup) throws -> MachineConfiguration {
        let memoryBytes = UInt64(memory) << 20
        let imageBytes: [UInt8]
        do {
            imageBytes = [UInt8](try InputFiles.mapRegularFile(image, limit: memoryBytes))
        } catch {
            throw fail("image \(image) \(explain(error))", status: ExitStatus.badInput)
        }
        guard !imageBytes.isEmpty else { throw fail("image \(image) is empty", status: ExitStatus.badInput) }
        guard let bootMode = mode ?? ImageLoader.detectMode(imageBytes) else {
            throw fail("image \(image) is not an ELF file and has no multiboot header; give --mode real or --mode long for a flat binary", status: ExitStatus.badInput)
        }
        let linux = bootMode == .linux || bootMode == .pvh
        if bootMode != .multiboot, !modules.isEmpty {
            throw fail("--module needs a multiboot kernel (--mode multiboot); a Linux kernel takes --initrd", status: ExitStatus.usage)
        }
        if !linux, bootMode != .multiboot, !append.isEmpty {
            throw fail("--append needs a multiboot or Linux kernel (--mode multiboot, linux or pvh)", status: ExitStatus.usage)
        }
        if !linux, initrd != nil {
            throw fail("--initrd needs a Linux kernel (--mode linux or pvh)", status: ExitStatus.usage)
        }
        var configuration = MachineConfiguration(image: imageBytes, mode: bootMode, memoryMiB: memory,
                                                 vcpuCount: vcpus, timeoutSeconds: timeout, kvmDevicePath: kvmDevice)
        configuration.platform = platform ?? (bootMode == .multiboot || linux ? .pc : .minimal)
        // QEMU's command line: the kernel path exactly as typed, then --append.
        configuration.kernelPath = image
        configuration.append = append
        configuration.modules = try mapModules(memoryBytes: memoryBytes)
        if let initrd {
            do throws(InputFileError) {
                configuration.initrd = try InputFiles.mapRegularFile(initrd, limit: memoryBytes)
            } catch {
                throw fail("--initrd \(initrd) \(explain(error))", status: ExitStatus.badInput)
            }
        }
        do throws(DeviceOptionError) {
            configuration.disks = try disks.map { text throws(DeviceOptionError) in try DiskConfiguration.parse(text) }
            configuration.networks = try networks.enumerated().map { index, text throws(DeviceOptionError) in
                try NetConfiguration.parse(text, index: index)
            }
            configuration.vsock = try vsock.map { text throws(DeviceOptionError) in try VsockConfiguration.parse(text) }
        } catch {
            throw fail("\(error)", status: ExitStatus.usage)
        }
        configuration.entropyDevice = rng
        configuration.console = console
        configuration.msr = msr
        configuration.hypercalls = HypercallSetup(mapGPARange: mapGPARange, migrationControl: migrationControl)
        return configuration
    }

    /// Each --module "FILE ARGS": FILE checked alone and, with the modules
    /// before it, against guest RAM, then mapped. The whole string is its command line.
    private func mapModules(memoryBytes: UInt64) throws -> [MultibootModuleContents] {
        var total: UInt64 = 0
        return try modules.map { spec in
            let path = String(spec.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            guard !path.isEmpty else {
                throw fail("--module \"\(spec)\" names no file (\"FILE [ARGS]\")", status: ExitStatus.badInput)
            }
            let bytes: Data
            do {
                let size = try InputFiles.regularFileSize(path)
                if total > 0, size <= memoryBytes, size > memoryBytes - total {
                    throw fail("--module \(path) is \(size) bytes; with the \(total) bytes of the modules before it that is more than the guest's \(memoryBytes) bytes of RAM (--memory \(memory))", status: ExitStatus.badInput)
                }
                bytes = try InputFiles.mapRegularFile(path, limit: memoryBytes - total)
            } catch let error as InputFileError {
                throw fail("--module \(path) \(explain(error))", status: ExitStatus.badInput)
            }
            total += UInt64(bytes.count)
            return MultibootModuleContents(bytes: bytes, commandLine: spec)
        }
    }

    /// An input file's problem, naming --memory when RAM is the limit.
    private func explain(_ error: InputFileError) -> String {
        guard case .tooLarge = error else { return "\(error)" }
        return "\(error) (--memory \(memory))"
    }

    /// The serial sink the options ask for.
    func serialSink() throws -> FileDescriptorSink {
        do {
            return serial == "stdio" ? FileDescriptorSink.standardOutput(label: "standard output (--serial stdio)")
                : try FileDescriptorSink.file(serial, label: "--serial \(serial)")
        } catch {
            throw fail("\(error)", status: ExitStatus.badInput)
        }
    }

    /// Builds the machine, mapping each failure to its exit status. A serial
    /// output that stops accepting writes ends the run (status 74).
    func buildMachine(_ configuration: MachineConfiguration, events: EventLog) throws -> (Machine, FileDescriptorSink) {
        let sink = try serialSink()
        let machine: Machine
        do {
            machine = try Machine(configuration: configuration, serialOutput: sink, events: events)
        } catch {
            // An image the loader refuses: name the file, as for every input file.
            if case let .image(loaderError) = error, !loaderError.concernsModules {
                throw fail("invalid image \(image): \(loaderError)", status: error.exitStatus)
            }
            throw fail("\(error)", status: error.exitStatus)
        }
        sink.onFailure = { [weak machine] message in machine?.stopBecauseOutputFailed(message) }
        return (machine, sink)
    }
}

/// The event log for --events FILE (JSON lines) or stderr, and the file sink if any.
func makeEventLog(_ path: String?) throws -> (EventLog, JSONLinesEventSink?) {
    guard let path else { return (EventLog(), nil) }
    do {
        let sink = try JSONLinesEventSink(path: path, label: "--events \(path)")
        return (EventLog(sink: sink), sink)
    } catch {
        throw fail("\(error)", status: ExitStatus.badInput)
    }
}

/// A write that failed after the run was decided (the final flush) still
/// decides the status: the user's output is incomplete.
func outputFailureAfterRun(_ report: RunReport, outputs: [String?]) -> String? {
    if case .outputFailed = report.outcome { return nil }
    return outputs.compactMap { $0 }.first
}

extension MachineError {
    /// The process status for a machine that could not be built.
    var exitStatus: Int32 {
        switch self {
        case .configuration: return ExitStatus.usage
        case .image, .policy: return ExitStatus.badInput
        case .kvmUnavailable: return ExitStatus.kvmUnavailable
        case .kvm, .host: return ExitStatus.hostError
        case .output, .snapshot, .migration, .device: return ExitStatus.badInput
        }
    }
}

/// Prints how the run ended (and its warnings) the same way for every command.
func reportRun(_ report: RunReport, machine: Machine, quiet: Bool) {
    if !quiet || !report.outcome.isGuestRequested {
        StandardStreams.writeError(report.outcome.report.split(separator: "\n", omittingEmptySubsequences: false)
            .map { "deflect: \($0)" }.joined(separator: "\n") + "\n")
    }
    if !report.stuckVCPUs.isEmpty {
        StandardStreams.writeError("deflect: vCPUs \(report.stuckVCPUs) did not leave KVM_RUN after being kicked\n")
    }
    if let summary = machine.events.summary() { StandardStreams.writeError("deflect: \(summary)\n") }
}

/// Writes a report file an option asked for (`--json`, `--write-policy`,
/// `--shared-regions-json`, `--stats-json`); a failure is one line naming
/// the option, the path and the cause, with status 74. A regular file (or a
/// new one) is replaced atomically (`AtomicFile`: a reader sees the old
/// report or the whole new one); anything else the path names — standard
/// output, a pipe, a terminal — is written to as it is.
func writeOutputFile(_ text: String, to path: String, option: String) throws {
    if let kind = FileKind.of(path), kind == .missing || kind == .regular {
        do {
            try AtomicFile.write(Array(text.utf8), to: path)
        } catch {
            throw fail("cannot write \(option) \(path): \(error)", status: ExitStatus.outputFailed)
        }
        return
    }
    let sink: FileDescriptorSink
    do {
        sink = try FileDescriptorSink.file(path, label: "\(option) \(path)")
    } catch {
        throw fail("\(error)", status: ExitStatus.outputFailed)
    }
    for byte in text.utf8 { sink.write(byte) }
    sink.flush()
    if let failure = sink.failure { throw fail(failure, status: ExitStatus.outputFailed) }
}
