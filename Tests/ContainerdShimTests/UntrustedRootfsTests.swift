// What an image can put in front of the shim: a deflect.json that is a
// symbolic link to a host file, a FIFO or a directory, paths whose symbolic
// links probe the host, values made to flood or forge an error line, command
// lines `deflect run` would refuse only once started. Each is refused at
// Create with a line that shows nothing of the host. Also: the VM's API
// socket is placed where its path is short, however long the bundle's.
import Foundation
import SwiftProtobuf
import Testing
import TTRPC
@testable import ContainerdShim

@Suite struct UntrustedDescriptionTests {
    /// A root filesystem with a guest image, and a host file outside it holding a secret.
    private func rootfs() throws -> (root: String, hostFile: String) {
        let base = NSTemporaryDirectory() + "deflect-untrusted-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: base + "/rootfs", withIntermediateDirectories: true)
        try Data([0xF4]).write(to: URL(fileURLWithPath: base + "/rootfs/g.bin"))
        let hostFile = base + "/host-secret.json"
        try Data(#"{"image": "TOKEN-5ecret-host-value", "mode": "TOKEN-mode"}"#.utf8).write(to: URL(fileURLWithPath: hostFile))
        return (base + "/rootfs", hostFile)
    }

    @Test func aSymlinkedDeflectJSONIsRefusedUnread() throws {
        let (root, hostFile) = try rootfs()
        try FileManager.default.createSymbolicLink(atPath: root + "/deflect.json", withDestinationPath: hostFile)
        let error = #expect(throws: VMDescriptionError.self) { try VMDescription.load(rootfs: root) }
        #expect(error?.description == "deflect.json: deflect.json is a symbolic link, not a regular file: refused", "\(String(describing: error))")
        #expect(error?.description.contains("TOKEN") == false)
        // Even a link to a file inside the root filesystem: the description is the file itself.
        try FileManager.default.removeItem(atPath: root + "/deflect.json")
        try Data(#"{"image": "g.bin"}"#.utf8).write(to: URL(fileURLWithPath: root + "/real.json"))
        try FileManager.default.createSymbolicLink(atPath: root + "/deflect.json", withDestinationPath: "real.json")
        #expect(throws: VMDescriptionError(["deflect.json is a symbolic link, not a regular file: refused"])) {
            try VMDescription.load(rootfs: root)
        }
    }

    @Test func aFIFOOrDirectoryIsNamedAsSuchNotMissing() throws {
        let (root, _) = try rootfs()
        // A FIFO with no writer: reading it would block; it is never opened.
        #expect(mkfifo(root + "/deflect.json", 0o644) == 0)
        #expect(throws: VMDescriptionError(["deflect.json is a FIFO, not a regular file: refused"])) { try VMDescription.load(rootfs: root) }
        try FileManager.default.removeItem(atPath: root + "/deflect.json")
        try FileManager.default.createDirectory(atPath: root + "/deflect.json", withIntermediateDirectories: false)
        #expect(throws: VMDescriptionError(["deflect.json is a directory, not a regular file: refused"])) { try VMDescription.load(rootfs: root) }
        try FileManager.default.removeItem(atPath: root + "/deflect.json")
        #expect(throws: VMDescriptionError(["deflect.json is missing from the root filesystem \(root)"])) { try VMDescription.load(rootfs: root) }
        // A huge file is not read into memory.
        try Data(repeating: 0x20, count: VMDescription.maximumBytes + 1).write(to: URL(fileURLWithPath: root + "/deflect.json"))
        #expect(throws: VMDescriptionError(["deflect.json is 65537 bytes, more than the 65536 a description may have"])) {
            try VMDescription.load(rootfs: root)
        }
    }

    @Test func aPathsAnswerSaysNothingOfTheHost() throws {
        let (root, hostFile) = try rootfs()
        // One link to a host file that exists, one to a host path that does not: the same answer, no host path in it.
        try FileManager.default.createSymbolicLink(atPath: root + "/exists", withDestinationPath: hostFile)
        try FileManager.default.createSymbolicLink(atPath: root + "/absent", withDestinationPath: hostFile + ".absent")
        try FileManager.default.createSymbolicLink(atPath: root + "/up", withDestinationPath: "../host-secret.json")
        for name in ["exists", "absent", "up"] {
            #expect(throws: RootfsPath.Escape.self) { try RootfsPath.resolve(name, in: root) }
            do { _ = try RootfsPath.resolve(name, in: root) } catch {
                #expect(error.description == "'\(name)' leads outside the root filesystem")
            }
        }
        // A link into the root filesystem by its host path, and a relative one, are followed.
        let real = try #require(realpath(root, nil).map { String(cString: $0) })
        try FileManager.default.createSymbolicLink(atPath: root + "/byHostPath", withDestinationPath: real + "/g.bin")
        try FileManager.default.createDirectory(atPath: root + "/d", withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: root + "/d/up", withDestinationPath: "..")
        #expect(try RootfsPath.resolve("byHostPath", in: root) == real + "/g.bin")
        #expect(try RootfsPath.resolve("/d/up/d/../g.bin", in: root) == real + "/g.bin")
        // `..` of a link is the parent of where it leads: d/up is the top, so d/up/.. is outside.
        #expect(throws: RootfsPath.Escape.self) { try RootfsPath.resolve("d/up/../g.bin", in: root) }
        // Not a regular file: named as what it is.
        try FileManager.default.createDirectory(atPath: root + "/boot", withIntermediateDirectories: false)
        #expect(throws: RootfsPath.Escape.self) { try RootfsPath.resolve("boot", in: root) }
        do { _ = try RootfsPath.resolve("boot", in: root) } catch { #expect(error.description == "'boot' is a directory, not a regular file") }
        // A loop of links ends.
        try FileManager.default.createSymbolicLink(atPath: root + "/loop", withDestinationPath: "loop")
        do { _ = try RootfsPath.resolve("loop", in: root) } catch { #expect(error.description == "'loop' has more than 40 symbolic links") }
    }

    @Test func valuesAreShownShortAndEscapedAndUnknownValuesNever() throws {
        let (root, _) = try rootfs()
        let longKey = String(repeating: "k", count: 500) + "\nforged line"
        let json = try JSONSerialization.data(withJSONObject: ["image": "g.bin", longKey: "TOKEN-unknown-value",
                                                               "mode": "x\u{1b}[2J" + String(repeating: "m", count: 300)])
        let error = #expect(throws: VMDescriptionError.self) { try VMDescription.parse(json, rootfs: root) }
        let text = try #require(error).description
        #expect(!text.contains("TOKEN") && !text.contains("\n") && !text.contains("\u{1b}"), "\(text)")
        #expect(text.contains(String(repeating: "k", count: 64) + "…: unknown field"), "\(text)")
        #expect(text.contains(#"mode: 'x\u{1B}[2J"#), "\(text)")
        #expect(text.count < 400, "\(text.count) characters")
    }

    @Test func commandLinesDeflectRunWouldRefuseAreRefusedHere() throws {
        let (root, _) = try rootfs()
        let image = try RootfsPath.resolve("g.bin", in: root)
        func problems(_ json: String) throws -> [String] {
            do { _ = try VMDescription.parse(Data(json.utf8), rootfs: root) } catch { return error.problems }
            return []
        }
        #expect(try problems(#"{"image": "g.bin", "mode": "real", "append": "console=ttyS0"}"#)
                == ["append: a command line needs mode multiboot, not real"])
        #expect(try problems(#"{"image": "g.bin", "mode": "long", "modules": ["g.bin"]}"#) == ["modules: need mode multiboot, not long"])
        // The kernel's line is "IMAGE APPEND": at most 4096 bytes with the image's host path.
        let fits = String(repeating: "a", count: 4096 - image.utf8.count - 1)
        #expect(try problems(#"{"image": "g.bin", "mode": "multiboot", "append": "\#(fits)"}"#).isEmpty)
        #expect(try problems(#"{"image": "g.bin", "mode": "multiboot", "append": "\#(fits)b"}"#)
                == ["append: the kernel's command line (the image's path \(image.utf8.count) bytes, a space, append) is 4097 bytes, more than 4096"])
        // Longer than one exec argument may be (128 KiB): refused here, not by execve at Start.
        let huge = String(repeating: "z", count: 200_000)
        #expect(try problems(#"{"image": "g.bin", "append": "\#(huge)"}"#).first?.hasPrefix("append: the kernel's command line") == true)
    }
}

/// The same refusals through the Task service, as containerd meets them: at Create.
@Suite struct UntrustedCreateTests {
    private func makeBundle(description: String) throws -> String {
        let bundle = NSTemporaryDirectory() + "deflect-create-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        try Data([0xF4]).write(to: URL(fileURLWithPath: bundle + "/rootfs/g.bin"))
        try Data(description.utf8).write(to: URL(fileURLWithPath: bundle + "/rootfs/deflect.json"))
        return bundle
    }

    private func create(_ bundle: String, deflect: String = "/bin/false") throws -> TTRPCServiceRegistry {
        try createdTask(bundle: bundle, deflect: deflect)
    }

    @Test func aSymlinkToAHostFileIsInvalidArgumentWithoutItsValues() throws {
        let bundle = try makeBundle(description: "{}")
        let host = bundle + "/host.json"
        try Data(#"{"image": "TOKEN-host-secret"}"#.utf8).write(to: URL(fileURLWithPath: host))
        try FileManager.default.removeItem(atPath: bundle + "/rootfs/deflect.json")
        try FileManager.default.createSymbolicLink(atPath: bundle + "/rootfs/deflect.json", withDestinationPath: host)
        #expect(throws: TTRPCError(.invalidArgument, "deflect.json: deflect.json is a symbolic link, not a regular file: refused")) {
            _ = try create(bundle)
        }
    }

    @Test func anAppendForARealModeGuestIsRefusedAtCreate() throws {
        let bundle = try makeBundle(description: #"{"image": "g.bin", "mode": "real", "append": "quiet"}"#)
        #expect(throws: TTRPCError(.invalidArgument, "deflect.json: append: a command line needs mode multiboot, not real")) {
            _ = try create(bundle)
        }
        let tooLong = try makeBundle(description: #"{"image": "g.bin", "mode": "multiboot", "append": "\#(String(repeating: "y", count: 5000))"}"#)
        let error = #expect(throws: TTRPCError.self) { _ = try create(tooLong) }
        #expect(error?.code == .invalidArgument && error?.message.contains("more than 4096") == true, "\(String(describing: error))")
    }

    @Test func aStartThatCannotRunSaysWhyWithoutFoundationsDump() throws {
        let registry = try create(try makeBundle(description: #"{"image": "g.bin", "mode": "real"}"#), deflect: "/nonexistent/deflect")
        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        let error = #expect(throws: TTRPCError.self) { _ = try callTask(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self) }
        #expect(error?.message == "cannot start /nonexistent/deflect: No such file or directory", "\(String(describing: error))")
    }

    /// A bundle path as long as the CRI's (namespace k8s.io, a 64-hex id): the
    /// API socket is elsewhere, short and private, and Delete removes it.
    @Test func theAPISocketIsShortAndPrivateHoweverLongTheBundle() throws {
        let id = String(repeating: "0123456789abcdef", count: 4)
        let bundle = try makeBundle(description: #"{"image": "g.bin", "mode": "real"}"#) + "/state/io.containerd.runtime.v2.task/k8s.io/" + id
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        try Data([0xF4]).write(to: URL(fileURLWithPath: bundle + "/rootfs/g.bin"))
        try Data(#"{"image": "g.bin", "mode": "real"}"#.utf8).write(to: URL(fileURLWithPath: bundle + "/rootfs/deflect.json"))
        #expect((bundle + "/deflect-api.sock").utf8.count > 107)
        // A stand-in deflect that writes down its arguments and puts a file where the socket goes.
        let standIn = bundle + "/deflect"
        try Data("""
            #!/bin/sh
            printf '%s\\n' "$@" > "$0.args"
            for last; do :; done
            : > "$last"

            """.utf8).write(to: URL(fileURLWithPath: standIn))
        chmod(standIn, 0o755)
        let registry = try create(bundle, deflect: standIn)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        _ = try callTask(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "vm"
        _ = try callTask(registry, "Wait", wait, as: Containerd_Task_V2_WaitResponse.self)
        let arguments = try String(contentsOfFile: standIn + ".args", encoding: .utf8).split(separator: "\n").map(String.init)
        let socket = try #require(arguments.last)
        #expect(arguments.dropLast().last == "--api-socket")
        #expect(socket == TaskBundle(path: bundle).apiSocket && socket.utf8.count <= 64, "\(socket)")
        var status = stat()
        let directory = (socket as NSString).deletingLastPathComponent
        #expect(lstat(directory, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR && status.st_mode & 0o777 == 0o700)
        #expect(FileManager.default.fileExists(atPath: socket))
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "vm"
        _ = try callTask(registry, "Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        #expect(!FileManager.default.fileExists(atPath: socket))
        // Another bundle, another socket.
        #expect(TaskBundle(path: bundle + "x").apiSocket != socket)
    }
}
