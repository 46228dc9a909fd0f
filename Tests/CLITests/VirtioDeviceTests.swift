// CLITests: Deflect's virtio devices judged by the virtio test guest
// (Guests/multiboot/virtio.c, the same kernel VirtioGuestQEMUTests passes
// against QEMU's devices): a read-write disk, entropy and the console both
// ways with hostile queues in between; a read-only disk whose BARs the guest
// moves, with INTx instead of MSI-X. The host file holds what the guest wrote.
import ControlAPI
import DeflectTestSupport
import Foundation
import Testing

@Suite("deflect: virtio devices under the virtio test guest", .serialized,
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct VirtioDeviceTests {
    static let serial = "DEFLECT0001", sectors = 2048

    /// scripts/vsock-host-echo listening on SOCKET_PORT, as a host program
    /// a guest connects to.
    private func startVsockEcho(socket: String, port: Int) throws -> Process {
        let echo = Process()
        echo.executableURL = GuestImages.repositoryRoot.appendingPathComponent("scripts/vsock-host-echo")
        echo.arguments = [socket, String(port)]
        echo.standardOutput = FileHandle.nullDevice
        echo.standardError = FileHandle.nullDevice
        try echo.run()
        return echo
    }

    private func scratchDisk() throws -> String {
        let path = NSTemporaryDirectory() + "deflect-virtio-\(UUID().uuidString.prefix(8)).img"
        try Data(count: Self.sectors * 512).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The guest's pattern_byte: what it writes at byte `offset` of `sector` with `seed`.
    static func patternByte(sector: UInt32, offset: UInt32, seed: UInt32) -> UInt8 {
        let x = sector &* 2_654_435_761 ^ (offset &* 40503) ^ seed
        return UInt8(truncatingIfNeeded: x ^ (x >> 11) ^ (x >> 19))
    }

    @Test func diskEntropyAndConsoleServeTheGuest() throws {
        let kernel = try GuestImages.path("multiboot/virtio.elf")
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let token = "tok-\(UInt32.random(in: 1000...9999))"
        let vm = try LiveDeflect(["run", kernel, "--memory", "128", "--disk", "path=\(disk),serial=\(Self.serial)",
                                  "--rng", "--console", "virtio", "--timeout", "120",
                                  "--append", "blk rng console console-echo hostile serial=\(Self.serial) sectors=\(Self.sectors)"],
                                 input: true)
        // The guest asks for its line once the console is up.
        #expect(vm.waitFor("VIRTIO-CONSOLE-OK", limit: 120))
        vm.sendInput(token + "\n")
        let result = vm.finish()
        #expect(result.status == 3, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("RESULT pass"), "\(result.stdout)")
        #expect(!result.stdout.contains("FAIL "), "\(result.stdout)")
        for line in ["PASS blk-rw-indirect", "PASS blk-msix-mask", "PASS blk-event-idx", "PASS blk-batch",
                     "PASS blk-hostile-loop-recovered", "PASS blk-get-id", "PASS blk-read-past-end", "PASS rng-differ",
                     "PASS console-tx", "INFO console received \(token)", "PASS console-rx"] {
            #expect(result.stdout.contains(line), "\(line):\n\(result.stdout)")
        }
        // rw-4k wrote sectors 8–15 with seed 0x22: the host file has them.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: disk))
        let sector8 = Array(bytes[(8 * 512)..<(9 * 512)])
        #expect(sector8 == (0..<512).map { Self.patternByte(sector: 8, offset: UInt32($0), seed: 0x22) })
    }

    @Test func aReadOnlyDiskWithINTxAndGuestPlacedBARs() throws {
        let kernel = try GuestImages.path("multiboot/virtio.elf")
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let before = try Data(contentsOf: URL(fileURLWithPath: disk))
        let result = try deflect(["run", kernel, "--memory", "128", "--disk", "path=\(disk),readonly=on,serial=\(Self.serial)",
                                  "--timeout", "120",
                                  "--append", "blk ro assign-bars intx serial=\(Self.serial) sectors=\(Self.sectors)"], limit: 150)
        #expect(result.status == 3, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("RESULT pass") && !result.stdout.contains("FAIL "), "\(result.stdout)")
        for line in ["PASS blk-ro-write-refused", "PASS blk-intx", "INFO bars of 00:01.0 cleared (assign-bars)"] {
            #expect(result.stdout.contains(line), "\(line):\n\(result.stdout)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: disk)) == before, "a read-only disk is not written")
    }

    /// direct=on (O_DIRECT) and ioeventfd=off together: the guest's
    /// read-write checks pass, the host file holds what it wrote, and the
    /// notifications now exit: the run has at least one more MMIO-write
    /// exit per request than the same run with ioeventfds.
    @Test func aDirectDiskWithIOEventFDOff() throws {
        let kernel = try GuestImages.path("multiboot/virtio.elf")
        // Not NSTemporaryDirectory(): /tmp may be a tmpfs, and the point is O_DIRECT on a disk's file system.
        let disk = "/var/tmp/deflect-virtio-direct-\(UUID().uuidString.prefix(8)).img"
        try Data(count: Self.sectors * 512).write(to: URL(fileURLWithPath: disk))
        defer { try? FileManager.default.removeItem(atPath: disk) }
        func run(_ keys: String) throws -> (CommandResult, UInt64) {
            let result = try deflect(["run", kernel, "--memory", "128", "--disk", "path=\(disk),serial=\(Self.serial)\(keys)",
                                      "--timeout", "120", "--stats", "--append", "blk serial=\(Self.serial) sectors=\(Self.sectors)"], limit: 150)
            let row = result.stderr.split(separator: "\n").first { $0.hasPrefix("mmio-write ") }
            return (result, row.flatMap { $0.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } } ?? 0)
        }
        let (off, offWrites) = try run(",direct=on,ioeventfd=off")
        #expect(off.status == 3 && off.stdout.contains("RESULT pass") && !off.stdout.contains("FAIL "), "\(off.stdout)\n\(off.stderr)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: disk))
        #expect(Array(bytes[(8 * 512)..<(9 * 512)]) == (0..<512).map { Self.patternByte(sector: 8, offset: UInt32($0), seed: 0x22) })
        let (on, onWrites) = try run(",direct=on")
        #expect(on.status == 3 && on.stdout.contains("RESULT pass"), "\(on.stdout)\n\(on.stderr)")
        let requests = UInt64(off.stdout.components(separatedBy: "PASS blk-rw-").count - 1) * 2
        #expect(requests >= 10 && offWrites >= onWrites + requests, "MMIO writes: ioeventfd=off \(offWrites), on \(onWrites); at least \(requests) notifications")
    }

    /// The guest's benchmark mode (deflect-bench --virtio's guest) on a
    /// file laid out as the bench writes it: every phase reports, every
    /// block read is the one asked for; one block with the wrong number is
    /// found by the sequential reads.
    @Test func theBenchModeReadsTheBlocksItAskedFor() throws {
        let kernel = try GuestImages.path("multiboot/virtio.elf")
        let disk = "/var/tmp/deflect-virtio-bench-\(UUID().uuidString.prefix(8)).img"
        var bytes = [UInt8]()
        for block in 0..<UInt32(1024) {   // 4 MiB
            bytes += withUnsafeBytes(of: block.littleEndian, Array.init) + withUnsafeBytes(of: UInt32(0x4843_4E42).littleEndian, Array.init)
            bytes += [UInt8](repeating: UInt8(truncatingIfNeeded: block | 1), count: 4088)
        }
        try Data(bytes).write(to: URL(fileURLWithPath: disk))
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let append = "blk-bench blk-verify blk-ops=64 blk-seq-mib=1"
        let result = try deflect(["run", kernel, "--memory", "128", "--disk", "path=\(disk),direct=on", "--timeout", "120",
                                  "--append", append], limit: 150)
        #expect(result.status == 3 && result.stdout.contains("RESULT pass") && !result.stdout.contains("FAIL "), "\(result.stdout)")
        for phase in ["blk-randread-qd1", "blk-randread-qd16"] {
            #expect(result.stdout.contains("BENCH end \(phase) ops=64 bytes=262144 cycles="), "\(phase):\n\(result.stdout)")
        }
        #expect(result.stdout.contains("BENCH end blk-seqread-qd4 ops=8 bytes=1048576 cycles="), "\(result.stdout)")
        #expect(result.stdout.contains("PASS blk-randread-qd16 interrupts delivered"), "\(result.stdout)")
        // Block 3 now carries another number.
        bytes[3 * 4096] = 9
        try Data(bytes).write(to: URL(fileURLWithPath: disk))
        let wrong = try deflect(["run", kernel, "--memory", "128", "--disk", "path=\(disk)", "--timeout", "120",
                                 "--append", append], limit: 150)
        #expect(wrong.status == 5, "\(wrong.stdout)")
        #expect(wrong.stdout.contains("FAIL blk-seqread-qd1 8 reads, status not OK 0, 4 KiB blocks with the wrong contents 1"), "\(wrong.stdout)")
    }

    /// A guest that keeps 16 disk requests in flight for thousands of
    /// requests (the bench mode's depth-16 random reads, then sequential
    /// reads) neither grows the VMM — its resident memory stays within a few
    /// MiB of where it was when the storm began — nor blocks its control:
    /// `deflect ctl vm` answers within a second throughout, and the guest
    /// finishes every request.
    @Test func aQueueStormNeitherGrowsTheVMMNorBlocksItsControl() throws {
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let socket = NSTemporaryDirectory() + "deflect-storm-\(UUID().uuidString.prefix(8)).sock"
        let vm = try LiveDeflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--memory", "128",
                                  "--disk", "path=\(disk)", "--api-socket", socket, "--timeout", "240", "--quiet",
                                  "--append", "blk-bench blk-ops=6000 blk-seq-mib=1"])
        #expect(vm.waitFor("BENCH begin blk-randread-qd16", limit: 120), "\(vm.stdoutSoFar)")
        let pid = vm.process.processIdentifier
        func residentKiB() -> Int? {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
            return Int(line.split(separator: " ").dropFirst().first ?? "")
        }
        let start = try #require(residentKiB(), "the VMM's /proc status")
        var peak = start, slowest = 0.0, answers = 0
        while vm.process.isRunning && !vm.stdoutSoFar.contains("BENCH end blk-seqread-qd4") {
            let asked = Date()
            let answer = try deflect(["ctl", "--socket", socket, "vm"], limit: 10)
            if answer.status == 0 { answers += 1; slowest = max(slowest, Date().timeIntervalSince(asked)) }
            peak = max(peak, residentKiB() ?? peak)
            Thread.sleep(forTimeInterval: 0.1)
        }
        let result = vm.finish()
        print("VirtioDeviceTests: during the queue storm the VMM's resident memory went from \(start) to at most \(peak) KiB; deflect ctl vm answered \(answers) times, the slowest in \(Int(slowest * 1000)) ms")
        #expect(result.status == 3 && result.stdout.contains("RESULT pass") && !result.stdout.contains("FAIL "), "\(result.stdout)")
        #expect(result.stdout.contains("BENCH end blk-randread-qd16 ops=6000 "), "\(result.stdout)")
        #expect(answers >= 3, "deflect ctl vm answered \(answers) times during the storm")
        #expect(slowest < 1.0, "deflect ctl vm took \(slowest) s during the storm")
        #expect(peak - start < 8 * 1024, "resident memory grew from \(start) KiB to \(peak) KiB during the storm")
    }

    /// `GET /vm` lists the PCI devices with their host side; full and diff
    /// snapshots of a VM with devices are taken and the VM runs on.
    @Test func theControlAPIListsTheDevices() throws {
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let socket = NSTemporaryDirectory() + "deflect-virtio-\(UUID().uuidString.prefix(8)).sock"
        let vm = try LiveDeflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long", "--platform", "pc",
                                  "--disk", "path=\(disk),readonly=on", "--rng", "--console", "virtio",
                                  "--api-socket", socket, "--timeout", "60", "--quiet"])
        #expect(vm.waitFor("SEQ 20\n"))
        // Through `deflect ctl vm`: a client in this busy test process could
        // miss the server's 5 s deadline for a request head.
        let answer = try deflect(["ctl", "--socket", socket, "vm", "--json"])
        #expect(answer.status == 0, "\(answer.stderr)")
        let info = try ControlJSON.decoder().decode(VMInfo.self, from: Data(answer.stdout.utf8))
        let text = try deflect(["ctl", "--socket", socket, "vm"])
        #expect(text.stdout.contains("00:01.0 virtio-blk \(disk) (read-only), driver status 0x0"), "\(text.stdout)")
        #expect(info.devices.map(\.address) == ["00:01.0", "00:02.0", "00:03.0"])
        #expect(info.devices.map(\.type) == ["virtio-blk", "virtio-rng", "virtio-console"])
        #expect(info.devices.first?.backing == disk && info.devices.first?.readOnly == true)
        #expect(info.devices.allSatisfy { $0.driverStatus == 0 && $0.broken == nil })
        let state = socket + ".snap"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let full = try deflect(["ctl", "--socket", socket, "snapshot", state])
        #expect(full.status == 0, "\(full.stderr)")
        let diff = try deflect(["ctl", "--socket", socket, "snapshot", state + ".diff", "--diff"])
        defer { try? FileManager.default.removeItem(atPath: state + ".diff") }
        #expect(diff.status == 0, "\(diff.stderr)")
        #expect(vm.waitFor("SEQ 400\n"), "the VM runs on")
        vm.signal(SIGTERM)
        _ = vm.finish()
    }

    /// A snapshot while the guest waits on its console, after its disk,
    /// entropy and console work, restored in a new process: the devices'
    /// queues, MSI-X tables and BARs come back, the guest's pending receive
    /// buffers take the line typed into the new process, and it finishes.
    /// A disk whose size changed is refused at restore.
    @Test func aGuestWithDevicesContinuesInANewProcess() throws {
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let directory = try scratchDirectory("deflect-virtio-snap")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/vm.sock", state = directory + "/vm.snap"
        let vm = try LiveDeflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--memory", "128",
                                  "--disk", "path=\(disk),serial=\(Self.serial)", "--rng", "--console", "virtio",
                                  "--api-socket", socket, "--timeout", "120", "--quiet",
                                  "--append", "blk rng console console-echo serial=\(Self.serial) sectors=\(Self.sectors)"],
                                 input: true)
        #expect(vm.waitFor("VIRTIO-CONSOLE-OK", limit: 120))
        let snapshot = try deflect(["ctl", "--socket", socket, "snapshot", state, "--then", "stop"])
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let first = vm.finish()
        #expect(!first.stdout.contains("FAIL "), "\(first.stdout)")

        let token = "tok-\(UInt32.random(in: 1000...9999))"
        let restored = try LiveDeflect(["restore", state, "--timeout", "60", "--quiet"], input: true)
        restored.sendInput(token + "\n")
        let second = restored.finish()
        #expect(second.status == 3, "\(second.stdout)\n\(second.stderr)")
        #expect(second.stdout.contains("INFO console received \(token)"), "\(second.stdout)")
        #expect(second.stdout.contains("RESULT pass") && !second.stdout.contains("FAIL "), "\(first.stdout)\n---\n\(second.stdout)")

        // The disk file grown by a sector: not the disk the guest had.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: disk))
        try handle.truncate(atOffset: UInt64(Self.sectors + 1) * 512)
        try handle.close()
        let refused = try deflect(["restore", state, "--timeout", "5"])
        #expect(refused.status == 66, "\(refused.stderr)")
        expectOneLineError(refused, "--disk path=\(disk) is \((Self.sectors + 1) * 512) bytes; the snapshot's disk was \(Self.sectors * 512) bytes")
    }

    /// The churning guest's run split across two processes (`first` up to
    /// a snapshot or a migration, `second` from there): `second` ends it,
    /// passing, with every sector and page as written, and the progress
    /// lines of the two together name each round once, in order.
    private func expectChurnCompleted(first: CommandResult, then second: CommandResult, rounds: Int,
                                      sourceLocation: SourceLocation = #_sourceLocation) {
        func progress(_ output: String) -> [Int] {
            output.split(separator: "\n").compactMap { line in
                line.hasPrefix("INFO churn round ") ? Int(line.dropFirst("INFO churn round ".count)) : nil
            }
        }
        #expect(!first.stdout.contains("FAIL "), "\(first.stdout)", sourceLocation: sourceLocation)
        #expect(second.status == 3, "\(second.stdout)\n\(second.stderr)", sourceLocation: sourceLocation)
        #expect(second.stdout.contains("PASS blk-churn rounds \(rounds), pages and region checked"), "\(second.stdout)",
                sourceLocation: sourceLocation)
        #expect(second.stdout.contains("RESULT pass") && !second.stdout.contains("FAIL "), "\(first.stdout)\n---\n\(second.stdout)",
                sourceLocation: sourceLocation)
        let seen = progress(first.stdout) + progress(second.stdout)
        #expect(seen == Array(stride(from: 100, through: rounds, by: 100)), "rounds lost or repeated: \(seen)", sourceLocation: sourceLocation)
    }

    /// `deflect receive` on `address`, listening.
    private func startReceiver(_ address: String) throws -> LiveDeflect {
        let receiver = try LiveDeflect(["receive", "--listen", address, "--timeout", "240", "--quiet"])
        #expect(receiver.waitFor("waiting for a VM on ", onStderr: true), "\(receiver.stderrSoFar)")
        return receiver
    }

    /// `deflect ctl migrate` of the VM behind `api` to `address`: the
    /// migration completes and the source's run ends saying so.
    private func migrate(_ vm: LiveDeflect, api: String, to address: String) throws -> CommandResult {
        let ctl = try deflect(["ctl", "--socket", api, "migrate", address], limit: 120)
        #expect(ctl.status == 0, "\(ctl.stdout)\n\(ctl.stderr)")
        let source = vm.finish()
        #expect(source.stderr.contains("deflect: migrated to \(address)"), "\(source.stderr)")
        return source
    }

    /// The guest rewrites its disk while a full snapshot is taken, then a diff
    /// (with the machine stopped): merged and restored in a new process on the
    /// same disk file, the guest goes on and finds every sector it wrote —
    /// the diff carried the pages the device wrote (data read from the disk,
    /// used rings) though KVM's dirty log never saw them, and no request was
    /// in flight or lost at either point.
    @Test func aDiskWritingGuestContinuesFromADiffSnapshot() throws {
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let directory = try scratchDirectory("deflect-virtio-churn")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/vm.sock", base = directory + "/base.snap", diff = directory + "/diff.snap"
        let vm = try LiveDeflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--memory", "128",
                                  "--disk", "path=\(disk)", "--api-socket", socket, "--timeout", "240", "--quiet",
                                  "--append", "blk churn=600 sectors=\(Self.sectors)"])
        #expect(vm.waitFor("INFO churn round 100", limit: 120))
        let full = try deflect(["ctl", "--socket", socket, "snapshot", base])
        #expect(full.status == 0, "\(full.stderr)")
        #expect(vm.waitFor("INFO churn round 200", limit: 120))
        let second = try deflect(["ctl", "--socket", socket, "snapshot", diff, "--diff", "--then", "stop"])
        #expect(second.status == 0, "\(second.stderr)")
        let first = vm.finish()
        let merged = try deflect(["snapshot", "merge", base, diff])
        #expect(merged.status == 0, "\(merged.stderr)")

        let restored = try deflect(["restore", diff, "--timeout", "180", "--quiet"], limit: 200)
        expectChurnCompleted(first: first, then: restored, rounds: 600)
    }

    /// The same disk-rewriting guest moved by live migration to a second
    /// process mid-run: the device's last requests are finished and its
    /// writes to guest RAM sent before the state, so the guest finishes on
    /// the receiver with every sector as it wrote it.
    @Test func aDiskWritingGuestMigratesToANewProcess() throws {
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let directory = try scratchDirectory("deflect-virtio-mig")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/vm.sock", address = "unix:" + directory + "/mig.sock"
        let receiver = try startReceiver(address)
        let vm = try LiveDeflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--memory", "128",
                                  "--disk", "path=\(disk)", "--api-socket", socket, "--timeout", "240", "--quiet",
                                  "--append", "blk churn=500 sectors=\(Self.sectors)"])
        #expect(vm.waitFor("INFO churn round 100", limit: 120))
        let source = try migrate(vm, api: socket, to: address)
        expectChurnCompleted(first: source, then: receiver.finish(), rounds: 500)
    }

    /// A migration between two processes on this host hands the vsock
    /// socket over: the sender closes and removes PATH before the receiver
    /// builds its machine, which listens there; the guest, moved mid-churn,
    /// then connects out through the receiver and accepts a host program's
    /// CONNECT on PATH there.
    @Test func aSameHostMigrationHandsTheVsockSocketOver() throws {
        let root = GuestImages.repositoryRoot.path
        let disk = try scratchDisk()
        defer { try? FileManager.default.removeItem(atPath: disk) }
        let directory = try scratchDirectory("dfl-vsm")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let vsock = directory + "/v.sock", api = directory + "/vm.sock", address = "unix:" + directory + "/mig.sock"
        let echo = try startVsockEcho(socket: vsock, port: 1234)
        defer { echo.terminate() }
        let receiver = try startReceiver(address)
        let vm = try LiveDeflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--memory", "128",
                                  "--disk", "path=\(disk)", "--vsock", "cid=3,socket=\(vsock)", "--api-socket", api,
                                  "--timeout", "240", "--quiet",
                                  "--append", "blk churn=300 sectors=\(Self.sectors) vsock cid=3 vsock-connect=1234 vsock-listen=5678"])
        #expect(vm.waitFor("INFO churn round 100", limit: 120))
        let source = try migrate(vm, api: api, to: address)
        #expect(receiver.waitFor("INFO vsock listening 5678", limit: 120))
        let host = try runProgram(root + "/scripts/vsock-host-connect", ["--expect", "HELLO GUEST", vsock, "5678", "hello guest"],
                                  limit: 60, directory: root)
        #expect(host.status == 0, "\(host.stdout)\(host.stderr)")
        let after = receiver.finish()
        expectChurnCompleted(first: source, then: after, rounds: 300)
        for line in ["PASS vsock-connect", "PASS vsock-echo", "PASS vsock-accept", "PASS vsock-host-echo",
                     "RESULT pass"] {
            #expect(after.stdout.contains(line), "\(line):\n\(after.stdout)")
        }
        #expect(!after.stdout.contains("FAIL "), "\(after.stdout)")
        #expect(!FileManager.default.fileExists(atPath: vsock), "the receiver removes the socket at its end")
    }

    /// virtio-net over a TAP in a network namespace the test creates
    /// (scripts/netns-tap-ping: namespace, TAP 10.0.2.2/24, Deflect inside
    /// it, `ping` to the guest): the guest answers ARP and ICMP echo and
    /// resolves its peer. Needs root and `ip`; skipped, saying so, otherwise.
    @Test func theGuestAnswersPingsOverATap() throws {
        let root = GuestImages.repositoryRoot.path
        let result = try runProgram(root + "/scripts/netns-tap-ping",
                                    ["--want-status", "3", "--", deflectBinary, "run", try GuestImages.path("multiboot/virtio.elf"),
                                     "--memory", "128", "--net", "tap=vgqtap0,mac=52:54:00:12:34:56", "--timeout", "60",
                                     "--append", "net ip=10.0.2.15 peer=10.0.2.2 pings=3 mac=52:54:00:12:34:56"],
                                    limit: 120, directory: root)
        if result.status == 77 {
            print("VirtioDeviceTests: virtio-net not checked: \(result.stdout)\(result.stderr)")
            return
        }
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        for line in ["PASS net-config", "PASS net-arp-reply", "PASS net-echo-reply n=3 of 3", "PASS net-arp-peer",
                     "RESULT pass", "netns-tap-ping: pass"] {
            #expect((result.stdout + result.stderr).contains(line), "\(line):\n\(result.stdout)")
        }
    }

    /// virtio-vsock both ways over Unix sockets (Firecracker's hybrid vsock):
    /// the guest connects to host port 1234 (scripts/vsock-host-echo on
    /// PATH_1234 echoes its line, with the guest's credit at 16 bytes so the
    /// reply comes in pieces), is refused on a port nobody listens on, and
    /// accepts a host program's `CONNECT 5678` (scripts/vsock-host-connect),
    /// answering its line uppercased. The socket is gone after the run, and a
    /// path already in use is refused in one line.
    @Test func vsockConnectsBothWaysOverUnixSockets() throws {
        let root = GuestImages.repositoryRoot.path
        let socket = NSTemporaryDirectory() + "dfl-vs-\(UInt32.random(in: 1000...9999)).sock"
        let echo = try startVsockEcho(socket: socket, port: 1234)
        defer { echo.terminate(); try? FileManager.default.removeItem(atPath: socket + "_1234") }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket + "_1234") { Thread.sleep(forTimeInterval: 0.05) }
        let vm = try LiveDeflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--memory", "128",
                                  "--vsock", "cid=3,socket=\(socket)", "--timeout", "90",
                                  "--append", "vsock cid=3 vsock-connect=1234 vsock-listen=5678 vsock-refused=4321"])
        #expect(vm.waitFor("INFO vsock listening 5678", limit: 60))
        let inUse = try deflect(["run", try GuestImages.path("multiboot/virtio.elf"), "--vsock", "cid=4,socket=\(socket)", "--timeout", "5"])
        #expect(inUse.status == 66, "\(inUse.stderr)")
        expectOneLineError(inUse, "--vsock socket=\(socket): ")
        let host = try runProgram(root + "/scripts/vsock-host-connect", ["--expect", "HELLO GUEST", socket, "5678", "hello guest"],
                                  limit: 60, directory: root)
        #expect(host.status == 0, "\(host.stdout)\(host.stderr)")
        let result = vm.finish()
        #expect(result.status == 3, "\(result.stdout)\n\(result.stderr)")
        for line in ["PASS vsock-config cid 3", "PASS vsock-connect", "PASS vsock-echo", "PASS vsock-close", "PASS vsock-refused",
                     "PASS vsock-accept", "PASS vsock-host-echo", "PASS vsock-host-close", "RESULT pass"] {
            #expect(result.stdout.contains(line), "\(line):\n\(result.stdout)")
        }
        #expect(!FileManager.default.fileExists(atPath: socket), "deflect removes its socket")
    }
}

