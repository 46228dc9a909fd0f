// deflect ctl: a client of a running VM's control API (`--api-socket`):
// pause, resume, stats, metrics, policy, events, registers, shutdown,
// snapshot, migrate.
import ArgumentParser
import ControlAPI
import FoundationEssentials
import Glibc
import ReadableErrors
import VMM

struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Control a running VM through its API socket (deflect run --api-socket PATH).",
        discussion: """
        Exit status: 0 done; 64 usage error; 66 the policy file cannot be read, or the VM refused \
        the request (e.g. registers while running, a policy with errors); 70 the API socket cannot \
        be reached or the API failed.
        """,
        subcommands: [Pause.self, Resume.self, VM.self, Stats.self, CPUID.self, MSRs.self, Metrics.self, Policy.self, Events.self, Registers.self, Shutdown.self,
                      Snapshot.self, Migrate.self]
    )

    // Declared here too so that `deflect ctl --socket PATH pause` parses (the
    // subcommands read the same option group).
    @OptionGroup var connection: CtlConnection
}

/// The socket every `deflect ctl` command talks to.
struct CtlConnection: ParsableArguments {
    @Option(help: "The VM's API socket (the PATH given to deflect run --api-socket).")
    var socket: String

    var client: ControlClient { ControlClient(socketPath: socket) }
}

/// Runs one client call, turning its error into `deflect: error: …` and a status.
func ctl<T>(_ body: () async throws(ControlClientError) -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        throw ctlFailure(error)
    }
}

/// Runs a call that answers the VM's state and prints it in one line.
func ctlPrintingVM(_ call: () async throws(ControlClientError) -> VMInfo) async throws {
    let info = try await ctl(call)
    StandardStreams.writeOutput(ControlReportText.vm(info) + "\n")
}

/// Prints a report: the API's JSON as it came (`--json`), or its text.
func ctlReport<Report: Decodable>(json: Bool, render: (Report) -> String,
                                  fetch: () async throws(ControlClientError) -> Data) async throws {
    let data = try await ctl(fetch)
    if json {
        StandardStreams.writeOutput(String(decoding: data, as: UTF8.self))
        return
    }
    do {
        StandardStreams.writeOutput(render(try ControlJSON.decoder().decode(Report.self, from: data)) + "\n")
    } catch let error as DecodingError {
        throw ctlFailure(.malformedResponse("\(Report.self) could not be decoded: \(ControlJSON.describe(error))"))
    } catch {
        throw ctlFailure(.malformedResponse("\(Report.self) could not be decoded: \(error)"))
    }
}

func ctlFailure(_ error: ControlClientError) -> ExitCode {
    if case .api(let status, _) = error, (400..<500).contains(status) {
        return fail(error.description, status: ExitStatus.badInput)
    }
    return fail(error.description, status: ExitStatus.hostError)
}

extension CtlCommand {
    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause every vCPU at a consistent point.")
        @OptionGroup var connection: CtlConnection

        func run() async throws {
            try await ctlPrintingVM { () async throws(ControlClientError) in try await connection.client.setState(.paused) }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused VM.")
        @OptionGroup var connection: CtlConnection

        func run() async throws {
            try await ctlPrintingVM { () async throws(ControlClientError) in try await connection.client.setState(.running) }
        }
    }

    struct Shutdown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "shutdown", abstract: "Stop the VM (as SIGTERM would).")
        @OptionGroup var connection: CtlConnection

        func run() async throws {
            try await ctlPrintingVM { () async throws(ControlClientError) in try await connection.client.shutdown() }
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stats", abstract: "Exit counts and latency percentiles, live.")
        @OptionGroup var connection: CtlConnection
        @Flag(help: "Print the API's JSON instead of tables.")
        var json = false

        func run() async throws {
            try await ctlReport(json: json, render: ControlReportText.stats) { () async throws(ControlClientError) in
                try await connection.client.statsJSON()
            }
        }
    }

    struct VM: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vm",
                                                        abstract: "The VM's state, configuration and PCI devices (GET /vm).")
        @OptionGroup var connection: CtlConnection
        @Flag(help: "Print the API's JSON instead of text.")
        var json = false

        func run() async throws {
            try await ctlReport(json: json, render: ControlReportText.vmDetails) { () async throws(ControlClientError) in
                try await connection.client.infoJSON()
            }
        }
    }

    struct CPUID: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cpuid",
                                                        abstract: "The guest's CPU model and the CPUID table vCPU 0 started with.")
        @OptionGroup var connection: CtlConnection
        @Flag(help: "Print the API's JSON instead of a table.")
        var json = false

        func run() async throws {
            try await ctlReport(json: json, render: ControlReportText.cpuid) { () async throws(ControlClientError) in
                try await connection.client.cpuidJSON()
            }
        }
    }

    struct MSRs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "msrs", abstract: "The per-MSR table, live.")
        @OptionGroup var connection: CtlConnection
        @Flag(help: "Print the API's JSON instead of a table.")
        var json = false

        func run() async throws {
            try await ctlReport(json: json, render: ControlReportText.msrs) { () async throws(ControlClientError) in
                try await connection.client.msrsJSON()
            }
        }
    }

    struct Metrics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "metrics", abstract: "The statistics in the Prometheus text format.")
        @OptionGroup var connection: CtlConnection

        func run() async throws {
            let text = try await ctl { () async throws(ControlClientError) in try await connection.client.metrics() }
            StandardStreams.writeOutput(text)
        }
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "policy",
            abstract: "Replace the VM's MSR policy with FILE (the previous policy stays if FILE has errors).")
        @OptionGroup var connection: CtlConnection
        @Argument(help: "An MSR policy file (TOML).")
        var file: String

        func run() async throws {
            let bytes: [UInt8]
            do {
                bytes = try InputFiles.readRegularFile(file, limit: maximumPolicyFileBytes)
            } catch {
                throw fail("policy \(file) \(error)", status: ExitStatus.badInput)
            }
            do {
                try await connection.client.replacePolicy(text: String(decoding: bytes, as: UTF8.self))
            } catch {
                guard case .api(_, let body) = error, let diagnostics = body.diagnostics, !diagnostics.isEmpty else {
                    throw ctlFailure(error)
                }
                // One line per problem, located like `deflect policy check`.
                for diagnostic in diagnostics {
                    let place = [diagnostic.line, diagnostic.column].compactMap { $0 }.map(String.init).joined(separator: ":")
                    StandardStreams.writeError("\(file)\(place.isEmpty ? "" : ":" + place): error: \(diagnostic.message)\n")
                }
                throw ExitCode(ExitStatus.badInput)
            }
            StandardStreams.writeOutput("policy \(file) installed\n")
        }
    }

    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "events",
            abstract: "Print the VM's events (JSON lines) as they happen, until the VM stops.")
        @OptionGroup var connection: CtlConnection

        func run() async throws {
            try await ctl { () async throws(ControlClientError) in
                try await connection.client.events { line in
                    StandardStreams.writeOutput(line + "\n")
                    return true
                }
            }
        }
    }

    struct Registers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "registers", abstract: "The registers of vCPU N (the VM must be paused).")
        @OptionGroup var connection: CtlConnection
        @Argument(help: "The vCPU index, from 0.")
        var vcpu: Int
        @Flag(help: "Print the API's JSON instead of text.")
        var json = false

        func run() async throws {
            let report = try await ctl { () async throws(ControlClientError) in try await connection.client.registers(vcpu: vcpu) }
            if json {
                let data = (try? ControlJSON.encoder().encode(report)) ?? Data()
                StandardStreams.writeOutput(String(decoding: data, as: UTF8.self) + "\n")
            } else {
                StandardStreams.writeOutput(ControlReportText.registers(report) + "\n")
            }
        }
    }
}

extension CtlCommand {
    struct Snapshot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "snapshot",
            abstract: "Pause, write a snapshot to PATH (memory in PATH.mem-<16 hex>), then resume, stay paused or stop.")
        @OptionGroup var connection: CtlConnection
        @Argument(help: "The state file to write (deflect restore PATH starts the VM again).")
        var path: String
        @Flag(help: "Write only the pages dirtied since the last snapshot.")
        var diff = false
        @Option(help: "What the VM does afterwards: resume, pause or stop.")
        var then: SnapshotRequest.Then = .resume

        func run() async throws {
            let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            let report = try await ctl { () async throws(ControlClientError) in
                try await connection.client.snapshot(SnapshotRequest(path: absolute, type: diff ? .diff : .full, then: then))
            }
            StandardStreams.writeOutput("snapshot \(report.path) (\(report.stateBytes) bytes) and \(report.memoryPath) (\(report.memoryBytes) bytes) in \(report.seconds.fixed(3)) s; VM \(report.state.rawValue)\n")
        }
    }
}

extension SnapshotRequest.Then: ExpressibleByArgument {}
