// CLITests: live migration between two `deflect` processes as a user runs
// it (`deflect receive`, `deflect ctl migrate`), over a Unix socket and over
// loopback TCP, with a guest that keeps writing memory and checks it after
// the move; the guest's migration-control word; and the failures a
// migration meets: the receiver killed mid-stream, a corrupted frame, a wrong key.
import DeflectTestSupport
import Foundation
import Migration
import Testing
import VMM

/// `deflect receive` on `listen`; returns it and the address it reports
/// (the port chosen for `tcp:...:0`).
private func startReceiver(_ listen: String, _ extra: [String] = []) throws -> (LiveDeflect, String) {
    let receiver = try LiveDeflect(["receive", "--listen", listen, "--timeout", "90"] + extra)
    guard receiver.waitFor("waiting for a VM on ", onStderr: true),
          let line = receiver.stderrSoFar.split(separator: "\n").first(where: { $0.contains("waiting for a VM on ") }),
          let address = line.split(separator: " ").last else {
        Issue.record("the receiver did not start listening: \(receiver.stderrSoFar)")
        return (receiver, listen)
    }
    return (receiver, String(address))
}

/// The ticking, memory-writing guest (Guests/long/migration_load.S) with an API socket.
private func startSource(socket: String, _ extra: [String] = []) throws -> LiveDeflect {
    try LiveDeflect(["run", try GuestImages.path("long/migration_load.bin"), "--mode", "long", "--memory", "64",
                     "--api-socket", socket, "--timeout", "90"] + extra)
}

/// The guest's whole output: TICK 0 … 299, its largest tick gap, the check.
private func expectCompleteTicks(_ output: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let lines = output.split(separator: "\n").map(String.init)
    let ticks = lines.filter { $0.hasPrefix("TICK ") }
    #expect(ticks == (0..<300).map { "TICK \($0)" }, "ticks missing or repeated:\n\(output)", sourceLocation: sourceLocation)
    #expect(lines.last == "CHECK ok", "\(output.suffix(300))", sourceLocation: sourceLocation)
}

/// Migrates the running source to the receiver with `deflect ctl migrate`
/// (`extra` options), then checks both ends: status 0 and "migrated to ..."
/// on the source, the guest finishing on the receiver with no tick lost or
/// repeated and its memory check passed. Returns ctl's summary line.
@discardableResult
private func migrateAndCheck(source: LiveDeflect, receiver: LiveDeflect, socket: String, to address: String,
                             _ extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let ctl = try deflect(["ctl", "--socket", socket, "migrate", address] + extra, limit: 60)
    #expect(ctl.status == 0, "\(ctl.stdout)\n\(ctl.stderr)", sourceLocation: sourceLocation)
    #expect(ctl.stdout.contains("migrated to \(address):"), "\(ctl.stdout)", sourceLocation: sourceLocation)
    // Not a terminal: plain lines, no carriage return, no escape sequence.
    #expect(!ctl.stdout.contains("\r") && !ctl.stdout.contains("\u{1B}"), "\(ctl.stdout.debugDescription)", sourceLocation: sourceLocation)
    #expect(ctl.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("migration ") || $0.hasPrefix("migrated to ") },
            "\(ctl.stdout)", sourceLocation: sourceLocation)
    let before = source.finish()
    #expect(before.status == 0, "\(before.stderr)", sourceLocation: sourceLocation)
    #expect(before.stderr.contains("deflect: migrated to \(address)"), "\(before.stderr)", sourceLocation: sourceLocation)
    let after = receiver.finish()
    #expect(after.status == 35, "\(after.stderr)", sourceLocation: sourceLocation)
    expectCompleteTicks(before.stdout + after.stdout, sourceLocation: sourceLocation)
    return String(ctl.stdout.split(separator: "\n").last ?? "") + (before.stderr.contains("forced") ? " (forced)" : "")
}

@Suite("deflect live migration", .serialized, .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct MigrationCLITests {
    /// Over a Unix socket: the guest's ticks go on at the receiver with no
    /// gap and no repeat, its memory check passes there, the source ends
    /// with "migrated to ..." and status 0.
    @Test func aWritingGuestMovesOverAUnixSocket() throws {
        let directory = try scratchDirectory("deflect-mig")
        let (receiver, address) = try startReceiver("unix:\(directory)/mig.sock")
        #expect(address == "unix:\(directory)/mig.sock")
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 30\n"))
        try migrateAndCheck(source: source, receiver: receiver, socket: directory + "/vm.sock", to: address)
    }

    /// Over loopback TCP (port chosen by the receiver), with a pre-shared key:
    /// every frame authenticated, the same continuity.
    @Test func aWritingGuestMovesOverLoopbackTCPWithAKey() throws {
        let directory = try scratchDirectory("deflect-mig")
        let key = directory + "/psk"
        try Data("a pre-shared key for this test only\n".utf8).write(to: URL(fileURLWithPath: key))
        let (receiver, address) = try startReceiver("tcp:127.0.0.1:0", ["--psk-file", key])
        #expect(address.hasPrefix("tcp:127.0.0.1:") && !address.hasSuffix(":0"), "\(address)")
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 30\n"))
        try migrateAndCheck(source: source, receiver: receiver, socket: directory + "/vm.sock", to: address,
                                          ["--psk-file", key])
    }

    /// A VM that offers KVM_FEATURE_MIGRATION_CONTROL to a guest that never
    /// sets KVM_MIGRATION_READY: refused, saying so, the guest runs on;
    /// with --force it moves, and the source logs that it was forced.
    @Test func theGuestsWordGatesTheMigration() throws {
        let directory = try scratchDirectory("deflect-mig")
        let (receiver, address) = try startReceiver("unix:\(directory)/mig.sock")
        let source = try startSource(socket: directory + "/vm.sock", ["--migration-control"])
        #expect(source.waitFor("TICK 10\n"))
        let refused = try deflect(["ctl", "--socket", directory + "/vm.sock", "migrate", address])
        #expect(refused.status == ExitStatus.badInput)
        expectOneLineError(refused, "has not set KVM_MIGRATION_READY")
        #expect(source.waitFor("TICK 40\n"), "the guest stopped after the refusal")
        let summary = try migrateAndCheck(source: source, receiver: receiver, socket: directory + "/vm.sock", to: address, ["--force"])
        #expect(summary.hasSuffix("(forced)"), "the source did not log the forced migration")
    }

    /// On a terminal (`script` gives ctl a pseudo-terminal) the progress is
    /// one line rewritten in place (carriage return, erase to the end of the
    /// line) with the phase, round and bytes sent; the final line is plain.
    /// A proxy slows the stream so that the copy shows several updates.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "no /usr/bin/script (util-linux): test skipped"))
    func theProgressLineUpdatesInPlaceOnATerminal() throws {
        let directory = try scratchDirectory("deflect-mig")
        let (receiver, _) = try startReceiver("unix:\(directory)/mig.sock")
        let proxy = try StreamProxy(listen: directory + "/proxy.sock", to: directory + "/mig.sock", bytesPerSecond: 4 << 20)
        defer { proxy.stop() }
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 30\n"))
        let command = [deflectBinary, "ctl", "--socket", directory + "/vm.sock", "migrate", "unix:\(directory)/proxy.sock"]
            .map { "'\($0)'" }.joined(separator: " ")
        let terminal = try runProgram("/usr/bin/script", ["-qefc", command, "/dev/null"], limit: 60)
        #expect(terminal.status == 0, "\(terminal.stdout.debugDescription)")
        // The terminal turns each "\n" into "\r\n"; the updates are "\r ESC[K line".
        let lines = terminal.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.count == 2, "\(terminal.stdout.debugDescription)")
        let updates = (lines.first ?? "").components(separatedBy: "\r\u{1B}[K").filter { !$0.isEmpty }
        #expect(updates.count >= 2, "\(terminal.stdout.debugDescription)")
        #expect(updates.allSatisfy { $0.hasPrefix("migration ") && $0.contains(" MiB sent") && !$0.contains("\n") },
                "\(updates)")
        // The line follows the phases (which ones a 100 ms poll catches depends on the load).
        let phases = Set(updates.compactMap { $0.split(separator: ":").first })
        #expect(phases.count >= 2 && phases.contains("migration completed"), "\(updates)")
        let final = lines.last ?? ""
        #expect(final.hasPrefix("migrated to unix:\(directory)/proxy.sock: ") && final.contains("MiB sent in")
                    && !final.contains("\u{1B}") && !final.contains("\r"), "\(final.debugDescription)")
        #expect(source.finish().status == 0)
        #expect(receiver.finish().status == 35)
    }

    /// The receiver is killed while the sender copies (a proxy slows the
    /// stream down so that the copy takes seconds): the migration fails with
    /// the reason, the guest keeps running on the source and finishes there
    /// with its memory intact.
    @Test func killingTheReceiverMidStreamLeavesTheSourceRunning() throws {
        let directory = try scratchDirectory("deflect-mig")
        let (receiver, _) = try startReceiver("unix:\(directory)/mig.sock")
        let proxy = try StreamProxy(listen: directory + "/proxy.sock", to: directory + "/mig.sock", bytesPerSecond: 1 << 20)
        defer { proxy.stop() }
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 10\n"))
        let ctl = try LiveDeflect(["ctl", "--socket", directory + "/vm.sock", "migrate", "unix:\(directory)/proxy.sock"])
        #expect(ctl.waitFor("migration copying"), "\(ctl.stderrSoFar)")
        usleep(500_000)
        receiver.signal(SIGKILL)
        _ = receiver.finish()
        let failed = ctl.finish()
        #expect(failed.status == ExitStatus.hostError, "\(failed.stdout)")
        #expect(failed.stderr.contains("the VM keeps running on this host"), "\(failed.stderr)")
        let whole = source.finish()
        #expect(whole.status == 35, "\(whole.stderr)")
        expectCompleteTicks(whole.stdout)
    }

    /// The connection cut in the middle of a memory message: the receiver
    /// discards what it got and exits non-zero, the source runs on.
    @Test func aCutConnectionLeavesTheSourceRunning() throws {
        let cut = try migrateThroughBrokenProxy { try StreamProxy(listen: $0, to: $1, cutAt: 100_000) }
        #expect(cut.stderr.contains("the connection closed"), "\(cut.stderr)")
    }

    /// One bit of a memory message flipped on the way: the receiver refuses
    /// the stream with the CRC error and exits non-zero; the source runs on.
    @Test func aCorruptedFrameIsRefusedAndTheSourceRunsOn() throws {
        let refused = try migrateThroughBrokenProxy { try StreamProxy(listen: $0, to: $1, flipAt: 300) }
        #expect(refused.stderr.contains("failed its CRC-64 check"), "\(refused.stderr)")
    }

    /// The receiver's ready never reaches the sender (the proxy cuts the
    /// connection on it): no go is sent, the source resumes and finishes the
    /// guest, the receiver discards the built machine and runs nothing.
    @Test func aLostGoLeavesOnlyTheSourceRunning() throws {
        let discarded = try migrateThroughBrokenProxy { try StreamProxy(listen: $0, to: $1, cutAtReply: .ready) }
        let lines = discarded.stderr.split(separator: "\n")
        #expect(lines.count == 2 && lines[1].hasPrefix("deflect: error: ") && lines[1].contains("no go from the sender"),
                "\(discarded.stderr)")
    }

    /// The running-ack is lost after go (the proxy cuts the connection on
    /// it): the guest runs on the receiver, and the source cannot know, so
    /// it stays paused, in doubt, saying so; never both running: the ticks
    /// of both ends together have no gap and no repeat.
    @Test func aLostRunningAckLeavesTheSourcePausedInDoubt() throws {
        let directory = try scratchDirectory("deflect-mig")
        let (receiver, _) = try startReceiver("unix:\(directory)/mig.sock")
        let proxy = try StreamProxy(listen: directory + "/proxy.sock", to: directory + "/mig.sock", cutAtReply: .runningAck)
        defer { proxy.stop() }
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 10\n"))
        let ctl = try deflect(["ctl", "--socket", directory + "/vm.sock", "migrate", "unix:\(directory)/proxy.sock"], limit: 60)
        #expect(ctl.status == ExitStatus.hostError, "\(ctl.stdout)")
        #expect(ctl.stderr.contains("is in doubt") && ctl.stderr.contains("may be running on unix:\(directory)/proxy.sock")
                    && ctl.stderr.contains("deflect ctl resume here is only safe if it does not run there"), "\(ctl.stderr)")
        let moved = receiver.finish()
        #expect(moved.status == 35, "\(moved.stderr)")
        #expect(source.process.isRunning, "the source ended although it could not know where the guest runs")
        source.signal(SIGTERM)
        let paused = source.finish()
        #expect(paused.stderr.contains("migration in doubt"), "\(paused.stderr)")
        expectCompleteTicks(paused.stdout + moved.stdout)
    }

    /// Migrates the ticking guest through a proxy (`makeProxy(listen, receiver)`)
    /// that breaks the stream: the migration fails, the VM keeps running and
    /// finishes on the source, the receiver exits 66 having run nothing.
    /// Returns the receiver's result.
    private func migrateThroughBrokenProxy(_ makeProxy: (String, String) throws -> StreamProxy,
                                           sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
        let directory = try scratchDirectory("deflect-mig")
        let (receiver, _) = try startReceiver("unix:\(directory)/mig.sock")
        let proxy = try makeProxy(directory + "/proxy.sock", directory + "/mig.sock")
        defer { proxy.stop() }
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 10\n"), sourceLocation: sourceLocation)
        let ctl = try deflect(["ctl", "--socket", directory + "/vm.sock", "migrate", "unix:\(directory)/proxy.sock"], limit: 60)
        #expect(ctl.status == ExitStatus.hostError, "\(ctl.stdout)", sourceLocation: sourceLocation)
        #expect(ctl.stderr.contains("the VM keeps running on this host"), "\(ctl.stderr)", sourceLocation: sourceLocation)
        let broken = receiver.finish()
        #expect(broken.status == ExitStatus.badInput, sourceLocation: sourceLocation)
        #expect(broken.stdout.isEmpty, sourceLocation: sourceLocation)
        let whole = source.finish()
        #expect(whole.status == 35, "\(whole.stderr)", sourceLocation: sourceLocation)
        expectCompleteTicks(whole.stdout, sourceLocation: sourceLocation)
        return broken
    }

    /// Sender and receiver with different keys: the handshake fails on the
    /// HMAC, the receiver says so and exits, the sender reports the reason.
    @Test func aWrongKeyIsRefusedAtTheHandshake() throws {
        let directory = try scratchDirectory("deflect-mig")
        try Data("the receiver's key, long enough".utf8).write(to: URL(fileURLWithPath: directory + "/right"))
        try Data("another key entirely, also long".utf8).write(to: URL(fileURLWithPath: directory + "/wrong"))
        let (receiver, address) = try startReceiver("unix:\(directory)/mig.sock", ["--psk-file", directory + "/right"])
        let source = try startSource(socket: directory + "/vm.sock")
        #expect(source.waitFor("TICK 5\n"))
        let ctl = try deflect(["ctl", "--socket", directory + "/vm.sock", "migrate", address, "--psk-file", directory + "/wrong"])
        #expect(ctl.status == ExitStatus.hostError)
        #expect(ctl.stderr.contains("refused the VM") && ctl.stderr.contains("HMAC"), "\(ctl.stderr)")
        let refused = receiver.finish()
        #expect(refused.status == ExitStatus.badInput)
        // The line saying where it listened, then the one error line.
        let lines = refused.stderr.split(separator: "\n")
        #expect(lines.count == 2 && lines[1].hasPrefix("deflect: error: migration: refused the incoming VM: ") && lines[1].contains("HMAC"),
                "\(refused.stderr)")
        source.signal(SIGTERM)
        #expect(source.finish().stdout.contains("TICK 5\n"))
    }

    /// A key on one side only, over loopback TCP: the receiver's key check
    /// refuses at the handshake; ctl ends as the README says (status 70, one
    /// line "migration to DEST failed: the receiver refused the VM: ...; the
    /// VM keeps running on this host"), and the guest does run on.
    @Test func aKeyOnOneSideOnlyIsRefusedWithTheDocumentedLine() throws {
        let directory = try scratchDirectory("deflect-mig")
        let key = directory + "/key"
        try Data("a key only one side has, 32 bytes\n".utf8).write(to: URL(fileURLWithPath: key))
        let cases: [(receiver: [String], sender: [String], reason: String)] = [
            (["--psk-file", key], [], "this side needs every frame authenticated (--psk-file) but the peer sends them without a key"),
            ([], ["--psk-file", key], "the sender authenticates its frames with a pre-shared key but this side has none (--psk-file)"),
        ]
        for (index, test) in cases.enumerated() {
            let (receiver, address) = try startReceiver("tcp:127.0.0.1:0", test.receiver)
            let socket = directory + "/vm\(index).sock"
            let source = try startSource(socket: socket)
            #expect(source.waitFor("TICK 3\n"))
            let ctl = try deflect(["ctl", "--socket", socket, "migrate", address] + test.sender)
            #expect(ctl.status == ExitStatus.hostError, "\(ctl.stderr)")
            #expect(ctl.stderr == "deflect: error: migration to \(address) failed: the receiver refused the VM: \(test.reason); the VM keeps running on this host\n",
                    "\(ctl.stderr)")
            #expect(ctl.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("migration failed: ") }, "\(ctl.stdout)")
            let refused = receiver.finish()
            #expect(refused.status == ExitStatus.badInput)
            #expect(refused.stderr.hasSuffix("deflect: error: migration: refused the incoming VM: \(test.reason)\n"), "\(refused.stderr)")
            // The guest was never paused for long: it keeps ticking here.
            let next = Int(source.stdoutSoFar.split(separator: "\n").last?.split(separator: " ").last ?? "") ?? 0
            #expect(source.waitFor("TICK \(next + 3)\n"), "the guest stopped after the refusal")
            source.signal(SIGTERM)
            #expect(source.finish().status == ExitStatus.interrupted)
        }
    }
}

struct NamespaceSetupError: Error, CustomStringConvertible {
    let description: String
}

/// Two network namespaces joined by a veth pair, made for one test and
/// removed after it; nil (and the reason) where this process may not.
final class NetworkNamespacePair {
    let names: (source: String, receiver: String)
    let receiverAddress: String
    private static let ip = "/usr/sbin/ip"

    /// Whether namespaces can be made here (root, a kernel and container that allow it), or why not.
    static let unavailableReason: String? = {
        guard FileManager.default.isExecutableFile(atPath: ip) else { return "no \(ip): veth/netns test skipped" }
        let probe = "dfl-probe-\(getpid())"
        guard run(["netns", "add", probe]) else { return "ip netns add is not permitted here: veth/netns test skipped" }
        _ = run(["netns", "delete", probe])
        return nil
    }()

    init() throws {
        let tag = String(UInt32.random(in: 0..<0xFFFFFF), radix: 16)
        let octet = Int.random(in: 1...250)
        names = ("dfl-s-\(tag)", "dfl-r-\(tag)")
        receiverAddress = "10.251.\(octet).2"
        let steps: [[String]] = [
            ["netns", "add", names.source], ["netns", "add", names.receiver],
            ["link", "add", "dfs\(tag)", "netns", names.source, "type", "veth", "peer", "name", "dfr\(tag)", "netns", names.receiver],
            ["-n", names.source, "addr", "add", "10.251.\(octet).1/30", "dev", "dfs\(tag)"],
            ["-n", names.receiver, "addr", "add", "\(receiverAddress)/30", "dev", "dfr\(tag)"],
            ["-n", names.source, "link", "set", "dfs\(tag)", "up"], ["-n", names.receiver, "link", "set", "dfr\(tag)", "up"],
            ["-n", names.source, "link", "set", "lo", "up"], ["-n", names.receiver, "link", "set", "lo", "up"],
        ]
        for step in steps where !Self.run(step) {
            remove()
            throw NamespaceSetupError(description: "ip \(step.joined(separator: " ")) failed")
        }
    }

    func launcher(_ name: String) -> [String] { [Self.ip, "netns", "exec", name] }

    func remove() {
        _ = Self.run(["netns", "delete", names.source])   // the veth pair goes with its namespaces
        _ = Self.run(["netns", "delete", names.receiver])
    }

    @discardableResult
    private static func run(_ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ip)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }
}

@Suite("deflect live migration between network namespaces", .serialized,
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)),
       .enabled(if: NetworkNamespacePair.unavailableReason == nil,
                Comment(rawValue: NetworkNamespacePair.unavailableReason ?? "")))
struct NamespaceMigrationTests {
    /// The receiver in one namespace listens on its veth address (so it
    /// needs --allow-remote and a key), the source runs in the other: the
    /// guest moves across the veth pair with every frame authenticated.
    @Test func aGuestMovesAcrossAVethPair() throws {
        let namespaces = try NetworkNamespacePair()
        defer { namespaces.remove() }
        let directory = try scratchDirectory("deflect-mig")
        let key = directory + "/psk"
        try Data("a key for the veth test, 32 bytes".utf8).write(to: URL(fileURLWithPath: key))
        let receiver = try LiveDeflect(["receive", "--listen", "tcp:\(namespaces.receiverAddress):0", "--allow-remote",
                                        "--psk-file", key, "--timeout", "90"], launcher: namespaces.launcher(namespaces.names.receiver))
        #expect(receiver.waitFor("waiting for a VM on ", onStderr: true), "\(receiver.stderrSoFar)")
        let address = try #require(receiver.stderrSoFar.split(separator: "\n").first { $0.contains("waiting for a VM on ") }?
            .split(separator: " ").last.map(String.init))
        let source = try LiveDeflect(["run", try GuestImages.path("long/migration_load.bin"), "--mode", "long",
                                      "--api-socket", directory + "/vm.sock", "--timeout", "90"],
                                     launcher: namespaces.launcher(namespaces.names.source))
        #expect(source.waitFor("TICK 30\n"))
        try migrateAndCheck(source: source, receiver: receiver, socket: directory + "/vm.sock", to: address,
                                          ["--psk-file", key])
    }
}

@Suite("deflect receive: bad addresses")
struct ReceiveAddressTests {
    @Test func aRemoteListenAddressNeedsTheFlagAndAKey() throws {
        let r = try deflect(["receive", "--listen", "tcp:0.0.0.0:0"])
        #expect(r.status == ExitStatus.usage)
        #expect(r.stderr.contains("needs --allow-remote and --psk-file"), "\(r.stderr)")
        let withFlagOnly = try deflect(["receive", "--listen", "tcp:0.0.0.0:0", "--allow-remote"])
        #expect(withFlagOnly.status == ExitStatus.usage)
    }

    @Test func aMalformedAddressSaysWhatIsWrong() throws {
        for (address, reason) in [("127.0.0.1:4444", "expected tcp:HOST:PORT or unix:PATH"), ("tcp:localhost:99999", "not a number"),
                                  ("unix:", "path is empty")] {
            let r = try deflect(["receive", "--listen", address])
            #expect(r.status == ExitStatus.usage)
            #expect(r.stderr.contains(reason), "\(address): \(r.stderr)")
        }
    }
}

/// A Unix-socket proxy (python3) between sender and receiver: forwards both
/// directions, flips one bit of the byte at `flipAt` of the sender's stream,
/// forwards that stream at most `bytesPerSecond` fast, and cuts both
/// connections once `cutAt` bytes of it have passed, or when the receiver
/// sends a frame of type `cutAtReply` (that frame is not forwarded).
final class StreamProxy {
    private let process = Process()

    init(listen: String, to target: String, flipAt: Int = -1, bytesPerSecond: Int = 0, cutAt: Int = -1,
         cutAtReply: MessageKind? = nil) throws {
        let script = """
        import socket, struct, sys, threading, time
        listen, target, flip, rate, cut = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        cut_reply = int(sys.argv[6])
        server = socket.socket(socket.AF_UNIX); server.bind(listen); server.listen(1)
        print("ready", flush=True)
        client, _ = server.accept()
        upstream = socket.socket(socket.AF_UNIX); upstream.connect(target)
        def whole_frames(pending):
            # Splits the receiver's stream into frames: header 16, payload, CRC 8, HMAC 32 when flag bit 0.
            frames = []
            while len(pending) >= 16:
                kind, flags, length = struct.unpack_from("<HHI", pending)
                size = 16 + length + 8 + (32 if flags & 1 else 0)
                if len(pending) < size: break
                frames.append((kind, pending[:size])); pending = pending[size:]
            return frames, pending
        def pump(a, b, sender):
            seen = 0
            pending = b""
            try:
                while True:
                    data = a.recv(16384)
                    if not data: break
                    if not sender and cut_reply >= 0:
                        frames, pending = whole_frames(pending + data)
                        if any(kind == cut_reply for kind, _ in frames):
                            b.sendall(b"".join(f for kind, f in frames[:[k for k, _ in frames].index(cut_reply)])); break
                        b.sendall(b"".join(f for _, f in frames)); continue
                    if sender and seen <= flip < seen + len(data):
                        data = bytearray(data); data[flip - seen] ^= 0x01; data = bytes(data)
                    if sender and cut >= 0 and seen + len(data) > cut:
                        b.sendall(data[:cut - seen]); break
                    seen += len(data)
                    b.sendall(data)
                    if sender and rate > 0: time.sleep(len(data) / rate)
            except OSError: pass
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
        t = threading.Thread(target=pump, args=(upstream, client, False)); t.start()
        pump(client, upstream, True); t.join()
        """
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, listen, target, String(flipAt), String(bytesPerSecond), String(cutAt),
                             String(cutAtReply.map { Int($0.rawValue) } ?? -1)]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait for "ready": the socket exists before the sender connects.
        _ = out.fileHandleForReading.readData(ofLength: 6)
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}
