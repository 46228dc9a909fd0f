// VMM: the receiving side of a live migration. The hello is checked against
// this host and its limits (vendor, KVM API, RAM and vCPUs a hostile peer
// may claim) and refused with the reason sent back; pages go into a memfd as
// they come (each range checked to lie inside the RAM the hello declared);
// the state message is decoded exactly as a restore decodes a state file,
// with the filled memfd as the memory. The caller builds the machine with
// `Machine(restoring:)`, says ready and waits for the sender's go: only on
// go may the guest run here (then the running-ack). Any failure before go:
// the sender hears why when it still can, and everything received is
// discarded with the memfd; the source resumes the guest.
import CPUModel
import Devices
import FoundationEssentials
import KVM
import Migration
import Snapshot

public enum IncomingMigration {
    /// The memory section's kind in a migration's state message.
    public static let memoryKind = SavedMemory.Kind.migration

    /// What this Deflect accepts from a sender.
    public static let limits = MigrationLimits(
        memoryBytes: UInt64(MachineConfiguration.memoryRangeMiB.lowerBound) << 20 ... UInt64(MachineConfiguration.memoryRangeMiB.upperBound) << 20,
        vcpuCount: UInt32(MachineConfiguration.vcpuRange.lowerBound)...UInt32(MachineConfiguration.vcpuRange.upperBound),
        maximumStateBytes: LoadedSnapshot.maximumStateBytes)

    /// Why this host cannot give the guest its CPU model (the hello's JSON;
    /// empty: the sender's host CPUID, checked with the state as before).
    /// `expected`: the model `--cpu` names on this receiver (`.none`: any).
    static func cpuModelRefusal(_ bytes: [UInt8], host: RestoreHost, expected: ResolvedCPUModel??) -> String? {
        var model: ResolvedCPUModel?
        if !bytes.isEmpty {
            do {
                model = try JSONDecoder().decode(ResolvedCPUModel.self, from: Data(bytes))
            } catch {
                return "the hello's CPU model is not readable: \(error)"
            }
        }
        if let mismatch = CPUModelSetup.mismatch(saved: model, expected: expected) { return mismatch }
        return model.flatMap { CPUModelSetup.refusal($0, host: host.supportedCPUID.map(CPUIDLeaf.init)) }
    }

    /// Why this host's guests cannot address `memoryBytes` of RAM (before a
    /// memfd is made for it); the machine's build checks the exact CPU model.
    static func addressWidthRefusal(memoryBytes: UInt64, host: RestoreHost) -> String? {
        let bits = CPUModelSetup.physicalAddressBits(host.supportedCPUID)
        let maximum = MachineConfiguration.memoryLayout.maximumMemoryMiB(physicalAddressBits: bits)
        guard memoryBytes >> 20 > UInt64(maximum) else { return nil }
        return "guest RAM of \(memoryBytes >> 20) MiB is more than this host's \(bits)-bit guest-physical addresses reach (at most \(maximum) MiB)"
    }

    /// Receives one VM on `connection`, up to and including the sender's
    /// complete message: the state checked for this host, RAM in a memfd.
    public static func receive(_ connection: MigrationConnection, on host: RestoreHost,
                               expecting expected: ResolvedCPUModel?? = .none) throws(MachineError) -> LoadedSnapshot {
        let hello: MigrationHello
        do {
            hello = try MigrationHello(decoding: try connection.expect(.hello, during: "the handshake").payload)
        } catch {
            // Tell the sender (a wrong key, no key, a malformed hello) before giving up.
            try? connection.send(.refuse, ReasonText.encode("\(error)"), authenticate: false)
            throw .migration("refused the incoming VM: \(error)")
        }
        if let reason = hello.refusal(host: host.cpu, kvmAPIVersion: host.kvmAPIVersion, limits: limits, keyed: connection.authenticated)
            ?? cpuModelRefusal(hello.cpuModel, host: host, expected: expected)
            ?? addressWidthRefusal(memoryBytes: hello.memoryBytes, host: host) {
            try? connection.send(.refuse, ReasonText.encode(reason), authenticate: false)
            throw .migration("refused the incoming VM: \(reason)")
        }
        do {
            // The receiver builds the sender's layout: RAM below the PCI hole and from 4 GiB,
            // in a memfd that holds it at file offset = guest address (the hole never written).
            let layout = MachineConfiguration.memoryLayout
            let ram = layout.ramRanges(memoryBytes: hello.memoryBytes), ramEnd = layout.ramEnd(memoryBytes: hello.memoryBytes)
            let memory = try MemoryFile.anonymous(size: ramEnd, name: "deflect-incoming-ram")
            try connection.accept(hello)
            var state: [UInt8]?
            receiving: while true {
                let frame = try connection.receive(during: "the memory and state")
                switch frame.kind {
                case .pages:
                    for range in try PagesMessage.decode(frame.payload, ram: ram) {
                        try memory.write(range.bytes, at: range.guestPhysicalAddress)
                    }
                case .state:
                    guard state == nil else { throw MigrationError.unexpectedMessage(expected: "pages or complete", received: "a second state") }
                    state = try connection.receiveState(startingWith: frame, limit: limits.maximumStateBytes)
                case .complete:
                    break receiving
                default:
                    _ = try MigrationConnection.checked(frame, is: [.pages, .state, .complete])
                }
            }
            guard let state else { throw MigrationError.unexpectedMessage(expected: "state", received: "complete") }
            var loaded = try LoadedSnapshot.decode(state, origin: "the incoming state", on: host) { saved throws(MachineError) in
                guard saved.kind == memoryKind, saved.size == ramEnd else {
                    throw .migration("the incoming state describes a memory file of \(saved.size) bytes (\((saved.kind ?? .full).rawValue)), the hello's RAM of \(hello.memoryBytes) bytes ends at \(ramEnd)")
                }
                return .filled(memory)
            }
            guard loaded.configuration.vcpuCount == Int(hello.vcpuCount) else {
                throw MachineError.migration("the incoming state has \(loaded.configuration.vcpuCount) vCPUs, the hello \(hello.vcpuCount)")
            }
            loaded.advancesGuestTime = true   // the guest's TSC and kvmclock see the pause
            return loaded
        } catch let error as MachineError {
            connection.abort("\(error)")
            throw error
        } catch let error as MigrationError {
            if case .aborted = error {} else { connection.abort("\(error)") }
            throw .migration("\(error)")
        } catch {
            connection.abort("\(error)")
            throw .migration("\(error)")
        }
    }

    /// `receive`, then the machine built from it (`Machine(restoring:)`),
    /// the sender's go awaited and the running-ack sent: the caller runs
    /// the machine. For embedding code; `deflect receive` builds the
    /// machine through its runtime options.
    public static func receiveMachine(_ connection: MigrationConnection, system: KVMSystem, timeout: Double?,
                                      serialOutput: sending any ByteSink) throws(MachineError) -> Machine {
        let loaded = try receive(connection, on: try RestoreHost.current(system))
        let machine: Machine
        do throws(MachineError) {
            machine = try Machine(restoring: loaded, timeout: timeout, serialOutput: serialOutput)
        } catch {
            connection.abort("the receiver could not build the machine: \(error)")
            throw error
        }
        try awaitGo(connection)
        acknowledge(connection)
        return machine
    }

    /// Tells the sender the machine is built (ready) and waits for its go.
    /// Without go (the sender gave up, the connection closed, the wait timed
    /// out) the guest must not run here: the source resumes it.
    public static func awaitGo(_ connection: MigrationConnection) throws(MachineError) {
        do throws(MigrationError) {
            try connection.send(.ready)
            _ = try connection.expect(.go, during: "the wait for the sender's go")
        } catch {
            switch error {
            case .aborted, .connectionClosed: break   // nothing to tell the peer
            default: connection.abort("\(error)")
            }
            throw .migration("no go from the sender, the incoming VM is discarded: \(error)")
        }
    }

    /// Tells the sender the guest runs here (it ends its run on this). After
    /// go the guest runs here whatever happens to the ack: a sender that
    /// does not get it keeps its copy paused (in doubt), never running.
    public static func acknowledge(_ connection: MigrationConnection) {
        do {
            try connection.send(.runningAck)
        } catch {
            StandardStreams.writeError("deflect: warning: the running-ack could not be sent (\(error)); the guest runs here, the sender keeps its copy paused\n")
        }
    }
}
