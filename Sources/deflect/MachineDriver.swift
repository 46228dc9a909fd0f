// deflect: running a built machine the same way for `run` and `restore`:
// the control API on --api-socket, signals (SIGINT/SIGTERM stop, SIGHUP
// reloads the policy), stdin to the UART, the run on a thread of its own,
// then the closing line, output failures and --stats/--stats-json.
import ArgumentParser
import ControlAPI
import FoundationEssentials
import Glibc
import Hypercalls
import KVM
import MachineControl
import MSRPolicy
import ReadableErrors
import VMM

/// The options `run` and `restore` share for a running guest: events,
/// statistics, the closing line and the control API.
struct RuntimeOptions: ParsableArguments {
    @Option(help: "Write events as JSON lines to this file instead of readable lines on stderr.")
    var events: String?

    @Flag(help: "Print per-exit-kind and per-place counts with handling percentiles, and the per-MSR table, when the run ends.")
    var stats = false

    @Option(help: "Write the exit profile (counts and latency percentiles per exit kind and per port/MSR/hypercall) as JSON to this file when the run ends.")
    var statsJSON: String?

    @Flag(help: "Do not print the line that says how the run ended, unless it ended badly.")
    var quiet = false

    @Option(help: "Serve the control API (pause, resume, registers, live stats, policy, events, snapshot) on this Unix socket, mode 0600.")
    var apiSocket: String?
}

/// Runs `vm` to its end and reports it; returns the report (the caller adds
/// its own output, then exits with the report's status).
func drive(_ vm: Machine, serialSink: FileDescriptorSink, eventFile: JSONLinesEventSink?, serialIsStdio: Bool,
           policyPath: String?, runtime: RuntimeOptions, apiConfiguration: VMConfiguration,
           startingPaused: Bool = false) async throws -> RunReport {
    let (apiSocket, stats, statsJSON, quiet) = (runtime.apiSocket, runtime.stats, runtime.statsJSON, runtime.quiet)
    eventFile?.onFailure { [weak vm] message in vm?.stopBecauseOutputFailed(message) }
    var api: (server: ControlServer, control: MachineControl)?
    if let apiSocket {
        let control = MachineControl(machine: vm, configuration: apiConfiguration)
        let server = ControlServer(control: control, socketPath: apiSocket)
        do {
            try await server.start()
        } catch {
            throw fail("\(error)", status: ExitStatus.badInput)
        }
        api = (server, control)
    }
    let signals = SignalForwarder(machine: vm, policyPath: policyPath)
    if serialIsStdio { StandardInputPump.start(into: vm) }
    // The run blocks its thread for the guest's lifetime: not a thread of
    // the concurrency pool the API server's handlers need.
    let report = await withCheckedContinuation { continuation in
        do {
            try HostThread.start(name: "machine") { continuation.resume(returning: vm.run(startingPaused: startingPaused)) }
        } catch {
            continuation.resume(returning: RunReport.notStarted(.hostError("\(error)")))
        }
    }
    signals.cancel()
    if let api {
        // A client following the migration (deflect ctl migrate) gets a
        // moment to see it completed before the API goes away.
        if case .migrated = report.outcome { try? await Task.sleep(for: .seconds(1)) }
        api.control.finish()
        await api.server.stop()
    }

    reportRun(report, machine: vm, quiet: quiet)
    eventFile?.flush()
    if let failure = outputFailureAfterRun(report, outputs: [serialSink.failure, eventFile?.failure]) {
        throw fail(failure, status: ExitStatus.outputFailed)
    }
    if stats {
        StandardStreams.writeError(report.profile.table() + "\n")
        if !report.msrStatistics.entries.isEmpty {
            StandardStreams.writeError(report.msrStatistics.table(name: MSRCatalogue.name, limit: 40) + "\n")
        }
        if let hypercalls = vm.hypercallHandler {
            let counts = hypercalls.callCounts.sorted { $0.key < $1.key }
                .map { "  nr \($0.key)\($0.key == HypercallNumber.mapGPARange ? " (KVM_HC_MAP_GPA_RANGE)" : ""): \($0.value)" }
            StandardStreams.writeError((["hypercalls:"] + (counts.isEmpty ? ["  none"] : counts)).joined(separator: "\n") + "\n")
        }
        if let gate = vm.migrationGate {
            StandardStreams.writeError("migration control: \(gate.state.rawValue) (migration \(gate.migrationAllowed ? "allowed" : "refused"))\n")
        }
        StandardStreams.writeError("wall time \(report.wallSeconds.fixed(3)) s\n")
    }
    if let statsJSON {
        try writeOutputFile(report.profile.json() + "\n", to: statsJSON, option: "--stats-json")
    }
    return report
}
