// The shim under a real containerd (Debian's 1.6): a private containerd in
// a temporary directory, driven with ctr. Skipped, with the reason, where
// containerd, ctr, root or /dev/kvm is missing, or containerd cannot start.
import DeflectTestSupport
import Foundation
import SwiftProtobuf
import Testing
import TTRPC
@testable import ContainerdShim

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

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
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

    /// `plugins`: the config's plugin tables (given `directory`); without them the CRI plugin is disabled.
    /// `path`: directories put first on containerd's PATH (where it finds shims by name).
    init(plugins: ((String) -> String)? = nil, path: [String] = []) throws {
        // Short: containerd's ttrpc socket is this path + ".ttrpc", within sun_path's 107 bytes.
        directory = "/tmp/dfc-" + UUID().uuidString.prefix(8)
        socket = directory + "/c.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = directory + "/config.toml"
        try Data("""
            version = 2
            \(plugins == nil ? #"disabled_plugins = ["io.containerd.grpc.v1.cri"]"# : "")
            [grpc]
              address = "\(socket)"
            \(plugins?(directory) ?? "")

            """.utf8).write(to: URL(fileURLWithPath: config))
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = (path + [environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"]).joined(separator: ":")
        daemon = try Running("/usr/bin/containerd", ["--config", config, "--root", directory + "/root",
                                                      "--state", directory + "/state", "--address", socket], environment: environment)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try ctr(["version"]).status == 0 { return }
            guard daemon.process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        let log = stop()
        throw ContainerdStartError(description: "containerd did not start: \(log.suffix(2000))")
    }

    var pid: Int32 { daemon.process.processIdentifier }

    /// The task's pid once `ctr task ls` (in containerd namespace `namespace`) shows it RUNNING (nil after 10 s).
    func waitUntilRunning(_ id: String, namespace: String = "default") throws -> Int32? {
        for _ in 0..<200 {
            let columns = try ctr(["-n", namespace, "task", "ls"]).stdout.split(separator: "\n")
                .map { $0.split(separator: " ", omittingEmptySubsequences: true) }
                .first { $0.first.map(String.init) == id }
            if let columns, columns.count >= 3, columns[2] == "RUNNING" { return Int32(columns[1]) }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// Runs ctr against this containerd and waits for it.
    func ctr(_ arguments: [String], limit: Double = 120) throws -> Finished {
        try Running("/usr/bin/ctr", ["--address", socket] + arguments).finish(limit: limit)
    }

    func ctrInBackground(_ arguments: [String]) throws -> Running {
        try Running("/usr/bin/ctr", ["--address", socket] + arguments)
    }

    /// Kills containerd at once (SIGKILL), leaving its shims running, as a crash would.
    func killDaemon() {
        kill(daemon.process.processIdentifier, SIGKILL)
        daemon.process.waitUntilExit()
    }

    /// Stops containerd, then removes what a failed test may have left of it:
    /// processes started for it (shims name its socket, VMs its directory),
    /// mounts under its directory, the directory. Returns containerd's log.
    @discardableResult
    func stop() -> String {
        daemon.process.terminate()
        let log = daemon.finish(limit: 20).stderr
        for leftover in LeftoverProcesses.mentioning([directory]) { kill(leftover, SIGKILL) }
        LeftoverMounts.unmount(under: directory)
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
        #expect(run.stderr.contains("deflect.json: image: '../../../etc/passwd' leads outside the root filesystem"),
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
    func waitUntilRunning(_ containerd: PrivateContainerd, _ id: String) throws -> Int32? {
        try containerd.waitUntilRunning(id)
    }

    @Test func aShimKilledWithSIGKILLIsCleanedUpByDelete() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        let run = try containerd.ctr(["run", "-d", "--rootfs", "--runtime", shimBinary, root, "orphan"])
        #expect(run.status == 0, "\(run.stderr)")
        let pid = try #require(try waitUntilRunning(containerd, "orphan"))
        // The shim is the VM's parent.
        let shim = try #require(parentPid(of: pid))
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

/// Processes whose command line mentions one of some strings (this one's excepted).
enum LeftoverProcesses {
    /// Whether process `pid` has ended: gone, or a zombie its new parent has not reaped yet.
    static func hasEnded(_ pid: Int32) -> Bool {
        guard Foundation.kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }

    static func commandLine(_ pid: Int32) -> String {
        String(decoding: FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data(), as: UTF8.self)
            .replacingOccurrences(of: "\0", with: " ")
    }

    static func mentioning(_ fragments: [String]) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard pid != getpid(), let command = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let text = String(decoding: command, as: UTF8.self)
            return fragments.contains { text.contains($0) }
        }
    }
}

/// Mount points under a directory, from /proc/self/mountinfo.
enum LeftoverMounts {
    static func list(under directory: String) -> [String] {
        let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = String(fields[4])
            return point.hasPrefix(directory + "/") ? point : nil
        }
    }

    /// Detaches them, deepest first.
    static func unmount(under directory: String) {
        for point in list(under: directory).sorted(by: { $0.count > $1.count }) { umount2(point, Int32(MNT_DETACH)) }
    }
}

/// An OCI image archive built here, with no registry: one uncompressed layer
/// holding `files`, a config (whose command is `command`), a manifest and an index naming it `name`.
enum OCIImageArchive {
    static func build(name: String, files root: String, into directory: String, command: [String] = ["/deflect.json"]) throws -> String {
        let layout = directory + "/layout-" + UUID().uuidString.prefix(6)
        let blobs = layout + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        let layerTar = layout + "-layer.tar"
        try tar(["-C", root, "-cf", layerTar, "."])
        let layer = try blob(Data(contentsOf: URL(fileURLWithPath: layerTar)), in: blobs)
        let config = try blob(json([
            "architecture": "amd64", "os": "linux",
            "config": ["Cmd": command],
            "rootfs": ["type": "layers", "diff_ids": [layer.digest]],
        ]), in: blobs)
        let manifest = try blob(json([
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.size],
            "layers": [["mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest, "size": layer.size]],
        ]), in: blobs)
        try json([
            "schemaVersion": 2,
            "manifests": [["mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest.digest, "size": manifest.size,
                           "annotations": ["io.containerd.image.name": name]]],
        ]).write(to: URL(fileURLWithPath: layout + "/index.json"))
        try Data(#"{"imageLayoutVersion": "1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: layout + "/oci-layout"))
        let archive = layout + ".tar"
        try tar(["-C", layout, "-cf", archive, "oci-layout", "index.json", "blobs"])
        return archive
    }

    private static func json(_ object: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    /// Stores `data` under its SHA-256 (sha256sum: Foundation has no hash here).
    private static func blob(_ data: Data, in blobs: String) throws -> (digest: String, size: Int) {
        let staged = blobs + "/staged"
        try data.write(to: URL(fileURLWithPath: staged))
        let sum = try Running("/usr/bin/sha256sum", [staged]).finish(limit: 30)
        guard sum.status == 0, let hex = sum.stdout.split(separator: " ").first, hex.count == 64 else {
            throw ContainerdStartError(description: "sha256sum failed: \(sum.stderr)")
        }
        try FileManager.default.moveItem(atPath: staged, toPath: blobs + "/" + hex)
        return ("sha256:" + hex, data.count)
    }

    private static func tar(_ arguments: [String]) throws {
        let run = try Running("/bin/tar", arguments).finish(limit: 60)
        guard run.status == 0 else { throw ContainerdStartError(description: "tar \(arguments) failed: \(run.stderr)") }
    }
}

enum OverlayAvailability {
    /// nil when an overlay mount works here (containerd's overlayfs snapshotter needs it); otherwise why not.
    static let unusableReason: String? = {
        let base = NSTemporaryDirectory() + "deflect-overlay-probe-" + UUID().uuidString.prefix(6)
        defer { try? FileManager.default.removeItem(atPath: base) }
        for part in ["lower", "upper", "work", "merged"] {
            try? FileManager.default.createDirectory(atPath: "\(base)/\(part)", withIntermediateDirectories: true)
        }
        let options = "lowerdir=\(base)/lower,upperdir=\(base)/upper,workdir=\(base)/work"
        guard mount("overlay", base + "/merged", "overlay", 0, options) == 0 else {
            return "overlay mounts are not permitted here (\(String(cString: strerror(errno)))): image test skipped"
        }
        umount2(base + "/merged", 0)
        return nil
    }()
}

extension ContainerdTests {
    @Test(.enabled(if: OverlayAvailability.unusableReason == nil, Comment(rawValue: OverlayAvailability.unusableReason ?? "")))
    func ctrRunsAnImportedImageFromItsSnapshotterLayers() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let files = try containerd.rootfs(guest: "real/hello.bin", description: #"{"image": "hello.bin", "mode": "real"}"#)
        let archive = try OCIImageArchive.build(name: "deflect.test/hello:1", files: files, into: containerd.directory)
        let imported = try containerd.ctr(["image", "import", archive])
        #expect(imported.status == 0, "\(imported.stderr)")
        let run = try containerd.ctr(["run", "--rm", "--runtime", shimBinary, "deflect.test/hello:1", "fromimage"])
        #expect(run.status == 85, "\(run.stderr)")
        #expect(run.stdout == "hello from real mode\n", "\(run.stdout)")
        #expect(try containerd.ctr(["task", "ls", "-q"]).stdout.isEmpty)
        // The overlay the shim mounted on the bundle's rootfs is gone with the task.
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        #expect(!mounts.split(separator: "\n").contains { $0.contains(containerd.directory) && $0.contains("fromimage") }, "\(mounts)")
    }
}

extension ContainerdTests {
    /// The numbers `ctr task metrics` prints, by metric name.
    private func metrics(_ containerd: PrivateContainerd, _ id: String) throws -> [String: UInt64] {
        let printed = try containerd.ctr(["task", "metrics", id])
        #expect(printed.status == 0, "\(printed.stderr)")
        var values: [String: UInt64] = [:]
        for line in printed.stdout.split(separator: "\n") {
            let columns = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if columns.count == 2, let value = UInt64(columns[1]) { values[String(columns[0])] = value }
        }
        return values
    }

    /// ps and metrics name the VM process; SIGKILL ends it at once with status 137.
    @Test func ctrTaskMetricsPsAndSIGKILLOfARunningVM() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        let run = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary, root, "busy"])
        let pid = try #require(try waitUntilRunning(containerd, "busy"))
        let ps = try containerd.ctr(["task", "ps", "busy"])
        #expect(ps.status == 0, "\(ps.stderr)")
        #expect(ps.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: " ").first.map(String.init) } == ["\(pid)"],
                "\(ps.stdout)")
        Thread.sleep(forTimeInterval: 0.3)   // the spinning guest accumulates CPU time
        let values = try metrics(containerd, "busy")
        let usage = try #require(ProcessUsage.of(pid: pid))
        #expect((values["pids.current"] ?? 0) >= 2, "\(values)")   // Deflect's main thread and a vCPU thread at least
        #expect((values["cpu.usage_usec"] ?? 0) > 0, "\(values)")
        // Resident memory as /proc says, within what a moment's difference can change.
        let resident = Double(values["memory.usage"] ?? 0)
        #expect(resident > 0 && abs(resident - Double(usage.residentBytes)) < 0.2 * Double(usage.residentBytes), "\(values) vs \(usage)")
        let kill = try containerd.ctr(["task", "kill", "-s", "SIGKILL", "busy"])
        #expect(kill.status == 0, "\(kill.stderr)")
        let finished = run.finish()
        #expect(finished.status == 137, "\(finished.stderr)")
        #expect(Foundation.kill(pid, 0) != 0, "the VM \(pid) outlived SIGKILL")
        #expect(try containerd.ctr(["task", "ls", "-q"]).stdout.isEmpty)
    }

    @Test func ctrTaskCheckpointWritesADeflectSnapshotThatRestores() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "long/sequence.bin", description: #"{"image": "sequence.bin", "mode": "long", "memory": 16}"#)
        let run = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary, root, "cp"])
        #expect(run.waitFor("SEQ 3\n"))
        let checkpoint = try containerd.ctr(["task", "checkpoint", "cp"])
        #expect(checkpoint.status == 0, "\(checkpoint.stderr)")
        // The task ran on after the checkpoint (ctr resumes it): the whole sequence, nothing lost.
        let finished = run.finish()
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(finished.status == 35, "\(finished.stderr)")
        #expect(finished.stdout == expected, "\(finished.stdout.suffix(200))")
        // containerd stored the checkpoint directory as a tar in a checkpoint image.
        let name = checkpoint.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let image = try containerd.ctr(["image", "ls"]).stdout.split(separator: "\n")
            .map { $0.split(separator: " ", omittingEmptySubsequences: true) }.first { $0.first.map(String.init) == name }
        let indexDigest = try #require(image?.first { $0.hasPrefix("sha256:") }, "no image \(name)")
        let index = try containerd.ctr(["content", "get", String(indexDigest)]).stdoutBytes
        let manifests = (try JSONSerialization.jsonObject(with: index) as? [String: Any])?["manifests"] as? [[String: Any]] ?? []
        let tarDigest = try #require(manifests.first { ($0["mediaType"] as? String)?.contains("checkpoint") == true }?["digest"] as? String,
                                     "\(String(decoding: index, as: UTF8.self))")
        let directory = containerd.directory + "/restored"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let tarFile = containerd.directory + "/checkpoint.tar"
        try containerd.ctr(["content", "get", tarDigest]).stdoutBytes.write(to: URL(fileURLWithPath: tarFile))
        #expect(try Running("/bin/tar", ["-C", directory, "-xf", tarFile]).finish(limit: 60).status == 0)
        // The snapshot restores in a new process: it continues where the checkpoint was taken.
        let restored = try Running(GuestImages.builtProduct("deflect"), ["restore", directory + "/deflect.snap"]).finish(limit: 60)
        #expect(restored.status == 35, "\(restored.stderr)")
        #expect(restored.stdout.hasSuffix("END\n") && expected.hasSuffix(restored.stdout) && restored.stdout.count < expected.count - 20,
                "\(restored.stdout.prefix(200))")
    }

    @Test func aShimOutlivesContainerdAndStillEndsItsVM() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        #expect(try containerd.ctr(["run", "-d", "--rootfs", "--runtime", shimBinary, root, "lost"]).status == 0)
        let pid = try #require(try waitUntilRunning(containerd, "lost"))
        let shim = try #require(parentPid(of: pid))
        // A failed call below must not leave either process behind.
        defer { for leftover in [pid, shim] where Foundation.kill(leftover, 0) == 0 { Foundation.kill(leftover, SIGKILL) } }
        let bundle = containerd.directory + "/state/io.containerd.runtime.v2.task/default/lost"
        let address = try String(contentsOfFile: bundle + "/address", encoding: .utf8)
        containerd.killDaemon()
        // containerd is gone: the shim still answers on its socket, and its events are dropped, not waited for.
        let client = try TTRPCClient(path: String(address.dropFirst("unix://".count)), timeoutSeconds: 20)
        let service = "containerd.task.v2.Task"
        var state = Containerd_Task_V2_StateRequest()
        state.id = "lost"
        #expect(try client.call(service: service, method: "State", state, as: Containerd_Task_V2_StateResponse.self).status == .running)
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "lost"
        kill.signal = UInt32(SIGKILL)
        _ = try client.call(service: service, method: "Kill", kill, as: Google_Protobuf_Empty.self)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "lost"
        #expect(try client.call(service: service, method: "Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus == 137)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "lost"
        _ = try client.call(service: service, method: "Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        _ = try client.call(service: service, method: "Shutdown", Containerd_Task_V2_ShutdownRequest(), as: Google_Protobuf_Empty.self)
        // Neither the VM nor the shim is left.
        var gone = false
        for _ in 0..<200 where !gone {
            gone = Foundation.kill(pid, 0) != 0 && Foundation.kill(shim, 0) != 0
            if !gone { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(gone, "VM \(pid) or shim \(shim) left running")
    }

    func hasEnded(_ pid: Int32) -> Bool { LeftoverProcesses.hasEnded(pid) }

    /// Field 4 of /proc/PID/stat.
    func parentPid(of pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return stat.split(separator: ")").last?.split(separator: " ").dropFirst().first.flatMap { Int32($0) }
    }
}

/// A pod as the CRI plugin creates it, through ctr with the CRI's annotations:
/// the sandbox (no deflect.json, no VM) and a VM container that is its member.
extension ContainerdTests {
    private static func podAnnotations(_ type: String, sandbox: String) -> [String] {
        ["--annotation", "io.kubernetes.cri.container-type=\(type)", "--annotation", "io.kubernetes.cri.sandbox-id=\(sandbox)"]
    }

    @Test func aPodSandboxAndItsVMContainerRunSideBySide() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        // The pause image's place: a root filesystem with no deflect.json.
        let empty = containerd.directory + "/pause-rootfs"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let sandbox = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary]
                                                     + Self.podAnnotations("sandbox", sandbox: "pod1") + [empty, "pod1"])
        let holder = try #require(try waitUntilRunning(containerd, "pod1"), "the sandbox did not run: \(sandbox.finish(limit: 5).stderr)")
        let root = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        let app = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary]
                                                 + Self.podAnnotations("container", sandbox: "pod1") + [root, "app1"])
        let vm = try #require(try waitUntilRunning(containerd, "app1"), "the VM did not run: \(app.finish(limit: 5).stderr)")
        let shims = [parentPid(of: holder), parentPid(of: vm)].compactMap { $0 }
        defer { for leftover in [holder, vm] + shims where Foundation.kill(leftover, 0) == 0 { Foundation.kill(leftover, SIGKILL) } }
        // The sandbox's process is the shim's placeholder, the app's a Deflect VM.
        let holderCommand = try String(contentsOfFile: "/proc/\(holder)/cmdline", encoding: .utf8).split(separator: "\0")
        #expect(holderCommand.last == "pause", "\(holderCommand)")
        let vmCommand = try String(contentsOfFile: "/proc/\(vm)/cmdline", encoding: .utf8).split(separator: "\0")
        #expect(vmCommand.contains("run"), "\(vmCommand)")
        let listed = try containerd.ctr(["task", "ls"]).stdout
        #expect(listed.contains("pod1") && listed.contains("app1"), "\(listed)")
        // As the CRI stops a pod: its containers first, then the sandbox, each with SIGTERM.
        #expect(try containerd.ctr(["task", "kill", "app1"]).status == 0)
        #expect(app.finish().status == 10)   // a clean stop of the VM
        #expect(try containerd.ctr(["task", "kill", "pod1"]).status == 0)
        let sandboxRun = sandbox.finish()
        #expect(sandboxRun.status == 0, "\(sandboxRun.stderr)")
        #expect(try containerd.ctr(["task", "ls", "-q"]).stdout.isEmpty)
        var gone = false
        for _ in 0..<200 where !gone {
            gone = ([holder, vm] + shims).allSatisfy(hasEnded)
            if !gone { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(gone, "a placeholder, VM or shim of \(([holder, vm] + shims)) is left")
    }

    @Test func aSandboxsPlaceholderDiesWithItsSIGKILLedShim() throws {
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let empty = containerd.directory + "/pause-rootfs"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let run = try containerd.ctr(["run", "-d", "--rootfs", "--runtime", shimBinary]
                                     + Self.podAnnotations("sandbox", sandbox: "pod2") + [empty, "pod2"])
        #expect(run.status == 0, "\(run.stderr)")
        let holder = try #require(try waitUntilRunning(containerd, "pod2"))
        let shim = try #require(parentPid(of: holder))
        #expect(Foundation.kill(shim, SIGKILL) == 0)
        var gone = false
        for _ in 0..<200 where !gone {
            let listed = try containerd.ctr(["task", "ls", "-q"]).stdout
            gone = hasEnded(holder) && listed.isEmpty
            if !gone { Thread.sleep(forTimeInterval: 0.05) }
        }
        if Foundation.kill(holder, 0) == 0 { Foundation.kill(holder, SIGKILL) }
        #expect(gone, "the placeholder \(holder) outlived its shim")
        #expect(try containerd.ctr(["container", "rm", "pod2"]).status == 0)
    }
}
