// CLITests: snapshot and restore as a user does them: `deflect ctl snapshot`
// on a running VM, `deflect restore` in a new process, `deflect snapshot
// inspect`, and damaged files refused with one line and status 66.
import DeflectTestSupport
import Foundation
import Testing
import VMM

@Suite("deflect snapshot and restore", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotCLITests {
    @Test func aGuestContinuesInANewProcess() throws {
        let directory = NSTemporaryDirectory() + "deflect-cli-snap-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let socket = directory + "/vm.sock", state = directory + "/seq.snap"
        let vm = try LiveDeflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long",
                                  "--api-socket", socket, "--timeout", "60", "--quiet"])
        #expect(vm.waitFor("SEQ 200\n"))
        let snap = try deflect(["ctl", "--socket", socket, "snapshot", state, "--then", "stop"])
        #expect(snap.status == 0, "\(snap.stderr)")
        #expect(snap.stdout.contains("snapshot \(state)"), "\(snap.stdout)")
        let first = vm.finish()
        #expect(first.status == ExitStatus.interrupted, "\(first.stderr)")

        let inspect = try deflect(["snapshot", "inspect", state])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        #expect((json?["vcpus"] as? [Any])?.count == 1)
        #expect((json?["config"] as? [String: Any])?["mode"] as? String == "long")

        let second = try deflect(["restore", state, "--timeout", "60"])
        #expect(second.status == 35, "\(second.stderr)")
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(first.stdout + second.stdout == expected)
    }

    @Test func aDamagedSnapshotIsOneLineAndStatus66() throws {
        let directory = NSTemporaryDirectory() + "deflect-cli-snap-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let socket = directory + "/vm.sock", state = directory + "/s.snap"
        let vm = try LiveDeflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long",
                                  "--api-socket", socket, "--timeout", "60", "--quiet"])
        #expect(vm.waitFor("SEQ 2\n"))
        #expect(try deflect(["ctl", "--socket", socket, "snapshot", state, "--then", "stop"]).status == 0)
        _ = vm.finish()
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: state)))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: state))
        let r = try deflect(["restore", state, "--timeout", "5"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "snapshot")
        #expect(r.stdout.isEmpty)
        let missing = try deflect(["restore", directory + "/nothing.snap"])
        #expect(missing.status == ExitStatus.badInput)
        expectOneLineError(missing, "nothing.snap")
    }
}

@Suite("deflect diff snapshots", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct DiffSnapshotCLITests {
    /// A full snapshot, the guest runs on, a diff snapshot: the diff's memory
    /// file holds only the written pages; merged into the full one it
    /// restores in a new process and the guest continues from the diff.
    @Test func diffMergeAndRestore() throws {
        let directory = NSTemporaryDirectory() + "deflect-cli-diff-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let socket = directory + "/vm.sock", full = directory + "/full.snap", diff = directory + "/diff.snap"
        let vm = try LiveDeflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long", "--memory", "64",
                                  "--api-socket", socket, "--timeout", "60", "--quiet"])
        #expect(vm.waitFor("SEQ 100\n"))
        let first = try deflect(["ctl", "--socket", socket, "snapshot", full])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(vm.waitFor("SEQ 400\n"))
        // A restore refuses a diff on its own; the diff is small.
        let second = try deflect(["ctl", "--socket", socket, "snapshot", diff, "--diff", "--then", "stop"])
        #expect(second.status == 0, "\(second.stderr)")
        let before = vm.finish()
        var status = stat()
        #expect(stat(diff + ".mem", &status) == 0)
        #expect(Int(status.st_blocks) * 512 < 4 << 20, "the diff's memory file uses \(Int(status.st_blocks) * 512) bytes")

        let refused = try deflect(["restore", diff])
        #expect(refused.status == ExitStatus.badInput)
        expectOneLineError(refused, "deflect snapshot merge")

        let merge = try deflect(["snapshot", "merge", full, diff])
        #expect(merge.status == 0, "\(merge.stderr)")
        let after = try deflect(["restore", diff, "--timeout", "60"])
        #expect(after.status == 35, "\(after.stderr)")
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(before.stdout + after.stdout == expected)
        // The full snapshot still restores on its own (BASE unchanged by the merge).
        let fromFull = try deflect(["restore", full, "--timeout", "60"])
        #expect(fromFull.status == 35)
        #expect(expected.hasSuffix(fromFull.stdout))
    }
}

@Suite("deflect snapshot under kill -9", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotKillTests {
    /// `kill -9` of the VMM while it writes a snapshot over an earlier one:
    /// the path still holds a complete snapshot that restores (the earlier
    /// one, or the new one if the kill came after the rename), never a torn one.
    @Test func aKilledWriteLeavesACompleteSnapshot() throws {
        let directory = NSTemporaryDirectory() + "deflect-cli-kill-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let socket = directory + "/vm.sock", state = directory + "/s.snap"
        let vm = try LiveDeflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long", "--memory", "1024",
                                  "--api-socket", socket, "--timeout", "120", "--quiet"])
        #expect(vm.waitFor("SEQ 10\n"))
        #expect(try deflect(["ctl", "--socket", socket, "snapshot", state]).status == 0)
        #expect(vm.waitFor("SEQ 100\n"))
        // The second snapshot writes 1 GiB; kill the VMM while it does.
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: deflectBinary)
        writer.arguments = ["ctl", "--socket", socket, "snapshot", state]
        writer.standardOutput = FileHandle.nullDevice
        writer.standardError = FileHandle.nullDevice
        try writer.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            if names.contains(where: { $0.contains(".tmp-") }) { break }   // the memory file is being written
            usleep(1000)
        }
        vm.signal(SIGKILL)
        _ = vm.finish()
        writer.waitUntilExit()
        let inspect = try deflect(["snapshot", "inspect", state])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let restored = try deflect(["restore", state, "--timeout", "60"])
        #expect(restored.status == 35, "\(restored.stderr)")
        // Whichever snapshot survived, the guest continues its sequence exactly.
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(expected.hasSuffix(restored.stdout) && restored.stdout.count > 1000)
    }
}
