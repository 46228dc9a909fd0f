// deflect: the command-line tool. One ParsableCommand per subcommand.
// Every command, nested ones too, gives its commandName: without it
// ArgumentParser derives the name with String(describing:) of the type,
// whose dynamic casts scan every protocol conformance in the binary, for
// every command of the tree, on every start (15% of a trivial run's CPU).
import ArgumentParser
import VMM

@main
struct Deflect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deflect",
        abstract: "A KVM virtual machine monitor in which user space owns MSRs, hypercalls and vCPU state.",
        subcommands: [RunCommand.self, TraceCommand.self, PolicyCommand.self, CPUCommand.self, DoctorCommand.self, CtlCommand.self,
                      TopCommand.self, RestoreCommand.self, SnapshotCommand.self, ReceiveCommand.self]
    )
}

/// Prints `deflect: error: message` and ends the process with `status`.
func fail(_ message: String, status: Int32) -> ExitCode {
    StandardStreams.writeError("deflect: error: \(message)\n")
    return ExitCode(status)
}
