// The shim binary's own actions, without containerd: usage errors and the
// `delete` cleanup containerd runs after losing a shim.
import DeflectTestSupport
import Foundation
import Testing
@testable import ContainerdShim

@Suite struct ShimBinaryTests {
    @Test func aBadCommandLineIsOneLineWithStatus64() throws {
        let run = try Running(shimBinary, ["-namespace", "default", "start"]).finish(limit: 30)
        #expect(run.status == 64)
        #expect(run.stderr == "containerd-shim-deflect-v1: error: -id is required\n")
        #expect(run.stdout.isEmpty)
    }

    @Test func deletePrintsADeleteResponseAndEndsTheBundlesVM() throws {
        let bundle = NSTemporaryDirectory() + "deflect-delete-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        // A stand-in VM whose command line names the bundle's API socket, as `deflect run --api-socket` would.
        let vm = Process()
        vm.executableURL = URL(fileURLWithPath: "/bin/sh")
        // `read` is a shell builtin: the shell itself waits (no child to outlive it) on a pipe that never ends.
        vm.arguments = ["-c", "read line", "sh", TaskBundle(path: bundle).apiSocket]
        let neverEnding = Pipe()
        vm.standardInput = neverEnding
        try vm.run()
        try Data("\(vm.processIdentifier)\n".utf8).write(to: URL(fileURLWithPath: TaskBundle(path: bundle).pidFile))
        // What the killed VM left at its API socket's place.
        let socket = TaskBundle(path: bundle).apiSocket
        try ShortSocketPath.makePrivateDirectory((socket as NSString).deletingLastPathComponent)
        #expect(FileManager.default.createFile(atPath: socket, contents: Data()))
        let run = try Running(shimBinary, ["-namespace", "default", "-id", "gone", "-bundle", bundle, "delete"]).finish(limit: 30)
        #expect(run.status == 0, "\(run.stderr)")
        let response = try Containerd_Task_V2_DeleteResponse(serializedBytes: run.stdoutBytes)
        #expect(response.pid == UInt32(vm.processIdentifier))
        #expect(response.exitStatus == 137)
        vm.waitUntilExit()
        try neverEnding.fileHandleForWriting.close()
        #expect(vm.terminationReason == .uncaughtSignal && vm.terminationStatus == SIGKILL)
        #expect(!FileManager.default.fileExists(atPath: TaskBundle(path: bundle).pidFile))
        #expect(!FileManager.default.fileExists(atPath: socket))
    }

    /// containerd runs `delete` after losing a shim: the layers Create mounted
    /// on the bundle's rootfs must not stay mounted.
    @Test(.enabled(if: getuid() == 0, "mounting needs root: delete unmount test skipped"))
    func deleteUnmountsTheBundlesRootfs() throws {
        let bundle = NSTemporaryDirectory() + "deflect-delete-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/layer", withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: bundle + "/layer/deflect.json"))
        var layer = Containerd_Task_V2_Mount()
        layer.type = "bind"
        layer.source = bundle + "/layer"
        layer.options = ["rbind", "ro"]
        try RootfsMounts.mount([layer], onto: TaskBundle(path: bundle).rootfsMountPoint)
        #expect(isMountPoint(bundle + "/rootfs"))
        let run = try Running(shimBinary, ["-namespace", "default", "-id", "gone", "-bundle", bundle, "delete"]).finish(limit: 30)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!isMountPoint(bundle + "/rootfs"))
        if isMountPoint(bundle + "/rootfs") { RootfsMounts.unmountAll(bundle + "/rootfs") }
    }
}
