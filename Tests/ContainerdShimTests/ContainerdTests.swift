// The shim under a real containerd (Debian's 1.6): a private containerd in
// a temporary directory, driven with ctr. Skipped, with the reason, where
// containerd, ctr, root or /dev/kvm is missing, or containerd cannot start.
import DeflectTestSupport
import Foundation
import Testing

/// The built shim (it runs the `deflect` built beside it).
let shimBinary = GuestImages.builtProduct("containerd-shim-deflect-v1")

struct Finished {
    var status: Int32
    var stdoutBytes: Data
    var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    var stderr: String
}

/// A process whose output is collected on background threads while it runs.
final class Running: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var out = Data(), err = Data()
    private let done = DispatchGroup()

    init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        try process.run()
        for (pipe, isOut) in [(outPipe, true), (errPipe, false)] {
            done.enter()
            Thread.detachNewThread { [self] in
                while case let chunk = pipe.fileHandleForReading.availableData, !chunk.isEmpty {
                    lock.withLock { if isOut { out.append(chunk) } else { err.append(chunk) } }
                }
                done.leave()
            }
        }
    }

    var stdout: String { lock.withLock { String(decoding: out, as: UTF8.self) } }

    /// Polls stdout for `fragment` for at most `limit` seconds.
    func waitFor(_ fragment: String, limit: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            if stdout.contains(fragment) { return true }
            if !process.isRunning { return stdout.contains(fragment) }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    /// Waits for the end (SIGKILL after `limit` seconds: a hang fails, it never blocks the suite).
    func finish(limit: Double = 120) -> Finished {
        let deadline = Date().addingTimeInterval(limit)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        done.wait()
        return lock.withLock { Finished(status: process.terminationStatus, stdoutBytes: out,
                                        stderr: String(decoding: err, as: UTF8.self)) }
    }
}

/// A containerd of its own: root, state, sockets and config in one temporary directory.
final class PrivateContainerd {
    let directory: String
    let socket: String
    private let daemon: Running

    init() throws {
        // Short: containerd's ttrpc socket is this path + ".ttrpc", within sun_path's 107 bytes.
        directory = "/tmp/dfc-" + UUID().uuidString.prefix(8)
        socket = directory + "/c.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/config.toml"
        try Data("""
            version = 2
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"

            """.utf8).write(to: URL(fileURLWithPath: config))
        daemon = try Running("/usr/bin/containerd", ["--config", config, "--root", directory + "/root",
                                                      "--state", directory + "/state", "--address", socket])
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try ctr(["version"]).status == 0 { return }
            guard daemon.process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let log = stop()
        throw ContainerdStartError(description: "containerd did not start: \(log.suffix(2000))")
    }

    /// Runs ctr against this containerd and waits for it.
    func ctr(_ arguments: [String], limit: Double = 120) throws -> Finished {
        try Running("/usr/bin/ctr", ["--address", socket] + arguments).finish(limit: limit)
    }

    func ctrInBackground(_ arguments: [String]) throws -> Running {
        try Running("/usr/bin/ctr", ["--address", socket] + arguments)
    }

    /// Stops containerd (and with it every shim it started is left to be cleaned up here); returns its log.
    @discardableResult
    func stop() -> String {
        daemon.process.terminate()
        let log = daemon.finish(limit: 20).stderr
        try? FileManager.default.removeItem(atPath: directory)
        return log
    }

    /// A root filesystem holding a built guest and its deflect.json.
    func rootfs(guest: String, description: String) throws -> String {
        let root = directory + "/rootfs-" + UUID().uuidString.prefix(6)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try GuestImages.path(guest), toPath: root + "/" + (guest as NSString).lastPathComponent)
        try Data(description.utf8).write(to: URL(fileURLWithPath: root + "/deflect.json"))
        return root
    }
}

struct ContainerdStartError: Error, CustomStringConvertible {
    let description: String
}

enum ContainerdAvailability {
    /// nil when a private containerd starts and answers here; otherwise why not.
    static let unusableReason: String? = {
        if let kvm = KVMAvailability.unusableReason { return kvm }
        guard getuid() == 0 else { return "containerd needs root: containerd test skipped" }
        for tool in ["/usr/bin/containerd", "/usr/bin/ctr"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing (apt-get install containerd): containerd test skipped"
        }
        guard FileManager.default.isExecutableFile(atPath: shimBinary) else { return "\(shimBinary) was not built: containerd test skipped" }
        do {
            try PrivateContainerd().stop()
            return nil
        } catch {
            return "\(error): containerd test skipped"
        }
    }()
}

@Suite(.serialized, .enabled(if: ContainerdAvailability.unusableReason == nil, Comment(rawValue: ContainerdAvailability.unusableReason ?? "")))
struct ContainerdTests {
    @Test func ctrRunPrintsTheGuestsOutputAndReturnsItsStatus() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/hello.bin", description: #"{"image": "hello.bin", "mode": "real"}"#)
        let run = try containerd.ctr(["run", "--rm", "--rootfs", "--runtime", shimBinary, root, "hello"])
        #expect(run.status == 85, "\(run.stderr)")
        #expect(run.stdout == "hello from real mode\n", "\(run.stdout)")
        // --rm deleted the task and the container, and the shim has gone.
        #expect(try containerd.ctr(["task", "ls", "-q"]).stdout.isEmpty)
        #expect(try containerd.ctr(["container", "ls", "-q"]).stdout.isEmpty)
    }

    @Test func aBadDeflectJSONIsAnErrorNamingTheField() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/hello.bin", description: #"{"image": "../../../etc/passwd", "vcpus": 0}"#)
        let run = try containerd.ctr(["run", "--rm", "--rootfs", "--runtime", shimBinary, root, "bad"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("deflect.json: image: '../../../etc/passwd' resolves to /etc/passwd, outside the root filesystem"),
                "\(run.stderr)")
        #expect(run.stderr.contains("vcpus: 0 is outside 1–64"), "\(run.stderr)")
        #expect(try containerd.ctr(["task", "ls", "-q"]).stdout.isEmpty)
    }

    @Test func pauseAndResumeLoseNothing() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "long/sequence.bin", description: #"{"image": "sequence.bin", "mode": "long"}"#)
        let events = try containerd.ctrInBackground(["events"])
        let run = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary, root, "seq"])
        #expect(run.waitFor("SEQ 3\n"))
        let pause = try containerd.ctr(["task", "pause", "seq"])
        #expect(pause.status == 0, "\(pause.stderr)")
        let listed = try containerd.ctr(["task", "ls"])
        #expect(listed.stdout.contains("PAUSED"), "\(listed.stdout)")
        // Nothing is printed while paused.
        let before = run.stdout
        Thread.sleep(forTimeInterval: 0.5)
        #expect(run.stdout == before)
        #expect(try containerd.ctr(["task", "resume", "seq"]).status == 0)
        let finished = run.finish()
        #expect(finished.status == 35, "\(finished.stderr)")
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(finished.stdout == expected, "\(finished.stdout.suffix(200))")
        // The shim forwarded its task events to containerd, which published them.
        #expect(events.waitFor("/tasks/delete", limit: 10))
        events.process.terminate()
        let published = events.finish().stdout
        for topic in ["/tasks/create", "/tasks/start", "/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"] {
            #expect(published.contains(topic), "\(topic) missing from:\n\(published)")
        }
    }

    @Test func killEndsARunningGuestThroughTheAPI() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        let run = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary, root, "spin"])
        #expect(try waitUntilRunning(containerd, "spin") != nil)
        let kill = try containerd.ctr(["task", "kill", "spin"])
        #expect(kill.status == 0, "\(kill.stderr)")
        let finished = run.finish()
        #expect(finished.status == 10, "\(finished.stderr)")   // deflect's status for a clean stop
    }
}

extension ContainerdTests {
    /// The VM's pid once `ctr task ls` shows the task RUNNING (nil after 10 s).
    func waitUntilRunning(_ containerd: PrivateContainerd, _ id: String) throws -> Int32? {
        for _ in 0..<200 {
            if let pid = try runningPid(containerd, id) { return pid }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// The VM's pid from `ctr task ls`, nil while the task is not RUNNING.
    private func runningPid(_ containerd: PrivateContainerd, _ id: String) throws -> Int32? {
        let columns = try containerd.ctr(["task", "ls"]).stdout.split(separator: "\n")
            .map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            .first { $0.first.map(String.init) == id }
        guard let columns, columns.count >= 3, columns[2] == "RUNNING" else { return nil }
        return Int32(columns[1])
    }

    @Test func aShimKilledWithSIGKILLIsCleanedUpByDelete() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        let run = try containerd.ctr(["run", "-d", "--rootfs", "--runtime", shimBinary, root, "orphan"])
        #expect(run.status == 0, "\(run.stderr)")
        let pid = try #require(try waitUntilRunning(containerd, "orphan"))
        // The shim is the VM's parent (field 4 of /proc/PID/stat).
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let shim = try #require(stat.split(separator: ")").last?.split(separator: " ").dropFirst().first.flatMap { Int32($0) })
        #expect(kill(shim, SIGKILL) == 0)
        // containerd notices, runs the shim's `delete`, which ends the VM.
        var gone = false
        for _ in 0..<200 where !gone {
            let listed = try containerd.ctr(["task", "ls", "-q"]).stdout
            gone = kill(pid, 0) != 0 && listed.isEmpty
            if !gone { Thread.sleep(forTimeInterval: 0.05) }
        }
        if !gone { kill(pid, SIGKILL) }
        #expect(gone, "the VM \(pid) outlived its shim")
        #expect(try containerd.ctr(["container", "rm", "orphan"]).status == 0)
    }
}
