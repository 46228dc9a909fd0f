// deflect ctl migrate: start a live migration through the API and follow it
// to its end: one updating line on a terminal, a plain line per phase or
// round otherwise; status 0 once the receiver runs the guest.
import ArgumentParser
import ControlAPI
import FoundationEssentials
import Glibc
import ReadableErrors
import VMM

extension CtlCommand {
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "migrate",
            abstract: "Migrate the VM to a waiting deflect receive (DEST: tcp:HOST:PORT or unix:PATH).",
            discussion: """
            Exit status: 0 when the receiver runs the guest (the source's run ends with "migrated to DEST"); \
            66 when the VM refuses (the guest has not agreed, a migration runs already); 70 when the migration \
            fails (the VM stays here, running or paused as before), is in doubt (go sent, no running-ack: the VM stays paused \
            here and may run on DEST) or the API cannot be reached.
            """)
        @OptionGroup var connection: CtlConnection
        @Argument(help: "Where deflect receive listens: tcp:HOST:PORT or unix:PATH.")
        var destination: String
        @Option(help: "The pause the guest may see at the end, in milliseconds.")
        var downtimeMs: Int = 300
        @Option(help: "Give up (the VM keeps running here) after this many seconds.")
        var timeoutS: Double = 600
        @Flag(help: "Not converged by --timeout-s: pause and send the rest anyway (the downtime exceeds the budget) instead of giving up.")
        var pauseAndCopy = false
        @Flag(help: "Migrate although the guest has not set KVM_MIGRATION_READY (logged by the VM).")
        var force = false
        @Option(help: "The pre-shared key file the receiver was started with (--psk-file).")
        var pskFile: String?
        @Flag(help: "Return once the migration has started instead of following it.")
        var noWait = false

        func run() async throws {
            let client = connection.client
            let key = pskFile.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
            let request = MigrationRequest(to: destination, downtimeMs: downtimeMs, timeoutS: timeoutS, force: force, pskFile: key,
                                           pauseAndCopy: pauseAndCopy ? true : nil)
            var status = try await ctl { () async throws(ControlClientError) in try await client.migrate(request) }
            if noWait {
                StandardStreams.writeOutput(Self.line(status) + "\n")
                return
            }
            let terminal = isatty(STDOUT_FILENO) == 1
            var lastShown = ""
            while !status.isFinished {
                try await Task.sleep(for: .milliseconds(100))
                do {
                    status = try await client.migration()
                } catch {
                    // The source's API closes shortly after its run ends.
                    if terminal { StandardStreams.writeOutput("\n") }
                    throw fail("lost the VM's API while the migration was \(status.phase.rawValue) (\(error)); check the receiver",
                               status: ExitStatus.hostError)
                }
                let line = Self.line(status)
                if terminal {
                    StandardStreams.writeOutput("\r\u{1B}[K" + line)
                } else if Self.milestone(status) != lastShown {
                    StandardStreams.writeOutput(line + "\n")
                }
                lastShown = Self.milestone(status)
            }
            if terminal { StandardStreams.writeOutput("\n") }
            if status.phase == .inDoubt {
                throw fail("migration to \(destination) is in doubt: \(status.lastError ?? "no running-ack after go")",
                           status: ExitStatus.hostError)
            }
            guard status.phase == .completed else {
                throw fail("migration to \(destination) failed: \(status.lastError ?? "no reason given")",
                           status: ExitStatus.hostError)
            }
            let overBudget = status.pausedBeforeConvergence == true
                ? " (paused and copied: not converged within \(timeoutS.fixed(0)) s, over the \(downtimeMs) ms budget)" : ""
            StandardStreams.writeOutput("migrated to \(destination): \((Double(status.bytesSent) / 1_048_576).fixed(1)) MiB sent in \(status.elapsedS.fixed(2)) s, \(status.iteration) rounds, downtime \((status.downtimeMs ?? 0).fixed(0)) ms\(overBudget)\n")
        }

        /// What changes often enough to be worth a plain line: phase and round.
        static func milestone(_ s: MigrationStatus) -> String { "\(s.phase.rawValue) \(s.iteration)" }

        static func line(_ s: MigrationStatus) -> String {
            "migration \(s.phase.rawValue): round \(s.iteration), \((Double(s.bytesSent) / 1_048_576).fixed(1)) MiB sent, bandwidth \((s.bandwidthBytesPerSecond / 1_048_576).fixed(1)) MiB/s, dirtying \((s.dirtyBytesPerSecond / 1_048_576).fixed(1)) MiB/s, estimated downtime \(s.estimatedDowntimeMs.fixed(0)) ms"
        }
    }
}
