// The shim's pure parts: containerd's flags and deflect.json, field by field,
// with paths that try to leave the root filesystem.
import Foundation
import Testing
@testable import ContainerdShim

@Suite struct ShimArgumentsTests {
    @Test func parsesContainerdsStartInvocation() throws {
        let parsed = try ShimArguments.parse(["-namespace", "default", "-address", "/run/containerd/containerd.sock",
                                              "-publish-binary", "/usr/bin/containerd", "-id", "vm1", "-debug", "start"])
        #expect(parsed.namespace == "default" && parsed.id == "vm1" && parsed.action == "start" && parsed.debug)
        #expect(parsed.address == "/run/containerd/containerd.sock" && parsed.publishBinary == "/usr/bin/containerd")
        let delete = try ShimArguments.parse(["--namespace=n", "-id=x", "-bundle", "/b", "delete"])
        #expect(delete.namespace == "n" && delete.id == "x" && delete.bundle == "/b" && delete.action == "delete")
        // A pod sandbox's placeholder: the shim's hidden action, named by the sandbox id.
        #expect(try ShimArguments.parse(SandboxPlaceholder.arguments(sandboxID: "pod1")) == {
            var placeholder = ShimArguments()
            placeholder.id = "pod1"
            placeholder.action = "pause"
            return placeholder
        }())
    }

    @Test func refusesBadCommandLines() {
        #expect(throws: ShimUsageError("unknown flag '-nope'")) { try ShimArguments.parse(["-nope", "1", "start"]) }
        #expect(throws: ShimUsageError("no action: expected start or delete")) { try ShimArguments.parse(["-id", "x"]) }
        #expect(throws: ShimUsageError("unknown action 'run': expected start or delete")) { try ShimArguments.parse(["-id", "x", "run"]) }
        #expect(throws: ShimUsageError("-id is required")) { try ShimArguments.parse(["start"]) }
        #expect(throws: ShimUsageError("flag '-id' needs a value")) { try ShimArguments.parse(["start", "-id"]) }
    }
}

@Suite struct VMDescriptionTests {
    /// A root filesystem with a guest image, a module, a policy and a symlink out.
    private func rootfs() throws -> String {
        let root = NSTemporaryDirectory() + "deflect-rootfs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/boot", withIntermediateDirectories: true)
        for file in ["boot/kernel.elf", "initrd", "p.toml"] { try Data([1]).write(to: URL(fileURLWithPath: "\(root)/\(file)")) }
        try FileManager.default.createSymbolicLink(atPath: root + "/outside", withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: root + "/inside", withDestinationPath: "boot/kernel.elf")
        return root
    }

    private func parse(_ json: String, _ root: String) throws(VMDescriptionError) -> VMDescription {
        try VMDescription.parse(Data(json.utf8), rootfs: root)
    }

    @Test func everyFieldBecomesARunOption() throws {
        let root = try rootfs()
        let real = try #require(realpath(root, nil).map { String(cString: $0) })
        let vm = try parse("""
            {"image": "boot/kernel.elf", "mode": "multiboot", "memory": 128, "vcpus": 2, "append": "console=ttyS0",
             "modules": ["/initrd arg1 arg2"], "platform": "pc", "policy": "p.toml"}
            """, root)
        #expect(vm.runArguments(apiSocket: "/b/api.sock") == [
            "run", real + "/boot/kernel.elf", "--mode", "multiboot", "--memory", "128", "--vcpus", "2",
            "--append", "console=ttyS0", "--module", real + "/initrd arg1 arg2", "--platform", "pc",
            "--policy", real + "/p.toml", "--api-socket", "/b/api.sock",
        ])
        // A symlink that stays inside is followed.
        #expect(try parse(#"{"image": "inside"}"#, root).image == real + "/boot/kernel.elf")
    }

    @Test func eachBadFieldIsNamed() throws {
        let root = try rootfs()
        let error = #expect(throws: VMDescriptionError.self) {
            try parse("""
                {"image": "../../etc/passwd", "mode": "bios", "memory": 0, "vcpus": "two", "platform": "q35",
                 "modules": ["outside"], "policy": "missing.toml", "colour": 1}
                """, root)
        }
        let problems = try #require(error).problems
        #expect(problems.count == 8, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("colour: unknown field") })
        #expect(problems.contains("image: '../../etc/passwd' leads outside the root filesystem"))
        #expect(problems.contains { $0.hasPrefix("mode: 'bios' is not one of") })
        #expect(problems.contains("memory: 0 is outside 1–1048576"))
        #expect(problems.contains("vcpus: must be an integer"))
        #expect(problems.contains { $0.hasPrefix("platform: 'q35'") })
        #expect(problems.contains("modules[0]: 'outside' leads outside the root filesystem"))
        #expect(problems.contains("policy: 'missing.toml' does not exist in the root filesystem"))
    }

    @Test func missingOrMalformedFiles() throws {
        let root = try rootfs()
        #expect(throws: VMDescriptionError(["\(VMDescription.fileName) is missing from the root filesystem \(root)"])) {
            try VMDescription.load(rootfs: root)
        }
        #expect(throws: VMDescriptionError(["deflect.json is not a JSON object"])) { try parse("[1]", root) }
        #expect(throws: VMDescriptionError(["deflect.json is not a JSON object"])) { try parse("{", root) }
        #expect(throws: VMDescriptionError(["image: required (the guest image's path in the root filesystem)"])) {
            try parse("{}", root)
        }
        #expect(throws: VMDescriptionError(["memory: must be an integer"])) { try parse(#"{"image": "p.toml", "memory": true}"#, root) }
    }
}
