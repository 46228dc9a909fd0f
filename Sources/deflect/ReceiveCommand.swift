// deflect receive: the receiving side of a live migration: listen on one
// address, take one incoming VM (docs/migration-protocol.md), build it as a
// restore builds a snapshot, say ready, and on the sender's go run it as
// `deflect run` would (acknowledged with running-ack).
import ArgumentParser
import FoundationEssentials
import Glibc
import KVM
import Migration
import Snapshot
import VMM

struct ReceiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Wait for one VM migrated from another Deflect (deflect ctl migrate / PUT /migrate) and run it.",
        discussion: """
        Listens on a Unix socket or a loopback TCP address; any other address needs --allow-remote and \
        --psk-file (every frame then carries an HMAC-SHA256). The sender's hello is checked against this \
        host (CPU vendor, KVM API, RAM and vCPU limits) and refused with the reason sent back. The machine \
        is built, then runs only on the sender's go (a lost go: discarded); once it runs the sender is \
        told, and its run ends. Runtime options and exit statuses are those \
        of deflect run; 66 when the incoming VM is refused or the stream fails before the guest runs.
        """
    )

    @Option(help: "Where to wait: tcp:HOST:PORT (port 0 picks one) or unix:PATH.")
    var listen: String

    @Flag(help: "Allow a listen address other hosts can reach (needs --psk-file).")
    var allowRemote = false

    @Option(help: "A file holding the pre-shared key (at least 16 bytes) the sender must use.")
    var pskFile: String?

    @Option(help: "Where the COM1 UART's output goes: stdio, or a file path.")
    var serial: String = "stdio"

    @Option(help: "Stop the guest after this many seconds of running here (exit status 8).")
    var timeout: Double?

    @Option(help: "Seconds the sender may stay silent before the transfer is given up.")
    var ioTimeout: Double = MigrationTransport.defaultIOTimeout

    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var cpu: CPUModelOptions

    @Option(help: .hidden)
    var kvmDevice: String = "/dev/kvm"

    func validate() throws {
        let address: MigrationAddress
        do {
            address = try MigrationAddress(parsing: listen)
        } catch {
            throw ValidationError("\(error)")
        }
        if !address.isLocalOnly && !(allowRemote && pskFile != nil) {
            throw ValidationError("listening on \(address) lets other hosts connect: that needs --allow-remote and --psk-file")
        }
        guard ioTimeout > 0 && ioTimeout <= 3600 else { throw ValidationError("--io-timeout must be more than 0 and at most 3600 seconds") }
        try validateRestoredRun(timeout: timeout, serial: serial)
    }

    func run() async throws {
        let address: MigrationAddress
        do {
            address = try MigrationAddress(parsing: listen)
        } catch {
            throw fail("\(error)", status: ExitStatus.usage)
        }
        let host = try thisHost(kvmDevice: kvmDevice)
        let expected = try cpu.expectedModel(kvmDevicePath: kvmDevice)
        var key: MigrationKey?
        if let pskFile {
            do {
                key = try MigrationTransport.loadKey(pskFile)
            } catch {
                throw fail("\(error)", status: ExitStatus.badInput)
            }
        }
        let connection = try accept(on: address, key: key)
        let loaded: LoadedSnapshot
        do {
            loaded = try IncomingMigration.receive(connection, on: host, expecting: expected)
        } catch {
            throw fail("\(error)", status: error.exitStatus)
        }
        var committed = false
        let report: RunReport
        do {
            report = try await runRestored(loaded, serial: serial, timeout: timeout, paused: false, runtime: runtime,
                                           source: "migration on \(address)") { machine in
                if let advance = machine.guestTimeAdvance, advance.clampedNanoseconds > 0 {
                    StandardStreams.writeError("deflect: warning: this host's clock is \(advance.clampedNanoseconds / 1_000_000) ms behind the sender's; the guest's TSC continues from the sent value (it never moves backwards)\n")
                }
                // The machine is built: the guest runs only once the sender says go.
                do throws(MachineError) {
                    try IncomingMigration.awaitGo(connection)
                } catch {
                    throw fail("\(error)", status: error.exitStatus)
                }
                committed = true
                IncomingMigration.acknowledge(connection)
            }
        } catch {
            if !committed { connection.abort("the receiver could not start the guest") }
            throw error
        }
        throw ExitCode(report.outcome.exitStatus)
    }

    /// Listens, says where on stderr, and takes the first connection (the
    /// listener closes then: one VM per receive).
    private func accept(on address: MigrationAddress, key: MigrationKey?) throws -> MigrationConnection {
        let listener: StreamSocket
        do {
            listener = try MigrationTransport.listen(on: address)
        } catch {
            throw fail("\(error)", status: ExitStatus.hostError)
        }
        var shown = address
        if case let .tcp(host, 0) = address { shown = .tcp(host: host, port: listener.localPort) }
        StandardStreams.writeError("deflect: waiting for a VM on \(shown)\n")
        defer { if case let .unix(path) = address { unlink(path) } }
        do {
            let peer = try listener.accept(timeoutSeconds: nil)
            try peer.setTimeout(seconds: ioTimeout)
            return MigrationConnection(stream: SocketStream(peer), key: key)
        } catch {
            throw fail("\(error)", status: ExitStatus.hostError)
        }
    }
}
