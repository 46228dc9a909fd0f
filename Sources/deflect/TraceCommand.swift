// deflect trace: run a guest with every filterable MSR exiting to user space,
// serve each access the way KVM would, and report every MSR it touched.
import ArgumentParser
import FoundationEssentials
import Glibc
import MSRPolicy
import VMM

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Run a guest and report every MSR it touches.",
        discussion: """
        Every MSR outside the x2APIC range (which KVM never filters) exits to Deflect on the guest's first \
        access in each direction. Deflect records it, lets that MSR and direction through KVM's MSR filter and \
        has the guest execute the instruction again, so KVM carries out the guest's own access with the checks \
        it applies to guests: the guest sees exactly what it would see with KVM alone. Accesses KVM refuses \
        keep coming to Deflect (as KVM_MSR_EXIT_REASON_UNKNOWN/INVAL exits) and are answered with #GP, as KVM \
        would. The table goes to stderr; --json writes the same as JSON; --write-policy writes a policy that \
        reproduces what the guest saw (reads answered with the first value seen, refused MSRs denied).
        """
    )

    @OptionGroup var machine: MachineOptions
    @OptionGroup var cpu: CPUModelOptions

    @Option(help: "Write the trace as JSON to this file.")
    var json: String?

    @Option(help: "Write a policy (TOML) reproducing what the guest saw to this file.")
    var writePolicy: String?

    @Flag(help: "Do not print the line that says how the run ended, unless it ended badly.")
    var quiet = false

    func run() throws {
        var configuration = try machine.configuration(msr: .trace)
        try cpu.choice(kvmDevicePath: configuration.kvmDevicePath).apply(to: &configuration, policy: nil)
        let (vm, serialSink) = try machine.buildMachine(configuration, events: EventLog())
        let signals = SignalForwarder(machine: vm, policyPath: nil)
        let report = vm.run()
        signals.cancel()

        reportRun(report, machine: vm, quiet: quiet)
        if let failure = outputFailureAfterRun(report, outputs: [serialSink.failure]) {
            throw fail(failure, status: ExitStatus.outputFailed)
        }
        let trace = report.msrStatistics
        StandardStreams.writeError(trace.table(name: MSRCatalogue.name) + "\n")
        if vm.traceFilterSaturated {
            StandardStreams.writeError("deflect: note: the MSRs seen stopped fitting in KVM's 16 filter ranges; after that only accesses KVM refused were seen\n")
        }
        if let json {
            try writeOutputFile(trace.json(name: MSRCatalogue.name), to: json, option: "--json")
        }
        if let writePolicy {
            // MSRs KVM saves and restores stay KVM's: emulating EFER or the
            // TSC in user space would change what the guest runs on.
            let kernelHandled = Set((try? vm.system.msrIndexList()) ?? [])
            try writeOutputFile(PolicyWriter.toml(TracePolicy.reproducing(trace, kernelHandled: kernelHandled)),
                                to: writePolicy, option: "--write-policy")
        }
        throw ExitCode(report.outcome.exitStatus)
    }
}
