// The shim driven as a kubelet drives it: a private containerd with its CRI
// plugin enabled and a `deflect` runtime handler, and a CRI client — the CRI's
// protobuf (cri/api.proto) compiled with grpcio-tools, one gRPC call per
// python3 process (cri/cri_call.py). Both images are OCI archives built here
// and imported with `ctr -n k8s.io image import`: nothing is pulled. Skipped,
// with the reason, where containerd, overlay mounts, /dev/kvm or python3's
// grpcio/grpcio-tools are missing.
import DeflectTestSupport
import Foundation
import Testing
@testable import ContainerdShim

/// The CRI test's directory of client files (api.proto, cri_call.py).
private let criDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("cri").path

enum CRIAvailability {
    static let unusableReason: String? = {
        if let reason = ContainerdAvailability.unusableReason { return reason }
        if let reason = OverlayAvailability.unusableReason { return reason.replacingOccurrences(of: "image test", with: "CRI test") }
        let probe = try? Running("/usr/bin/env", ["python3", "-c", "import grpc, grpc_tools.protoc, google.protobuf.json_format"])
            .finish(limit: 60)
        guard let probe, probe.status == 0 else {
            return "python3 with grpcio and grpcio-tools is missing (python3 -m pip install grpcio grpcio-tools): CRI test skipped"
        }
        return nil
    }()
}

/// The plugin tables of a containerd whose CRI plugin runs Deflect pods: a
/// `deflect` runtime handler beside runc (the default, as on a node), the
/// sandbox image the one the test imports, CNI's directories private and
/// empty (a host-network pod needs no CNI). containerd finds the shim by
/// name on its PATH (the build directory, with `deflect` beside the shim):
/// containerd 1.6.20's CRI plugin does not use `runtime_path` for a sandbox.
enum CRIConfiguration {
    static let sandboxImage = "deflect.test/pause:1"
    static let path = [(shimBinary as NSString).deletingLastPathComponent]

    static func plugins(_ directory: String) -> String {
        """
        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "\(sandboxImage)"
          stream_server_address = "127.0.0.1"
          stream_server_port = "0"
          [plugins."io.containerd.grpc.v1.cri".cni]
            bin_dir = "\(directory)/cni-bin"
            conf_dir = "\(directory)/cni-conf"
          [plugins."io.containerd.grpc.v1.cri".containerd]
            snapshotter = "overlayfs"
            default_runtime_name = "runc"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.deflect]
              runtime_type = "io.containerd.deflect.v1"
        """
    }
}

struct CRICallError: Error, CustomStringConvertible {
    let description: String
}

/// A CRI client: api.proto compiled once, then one python3 process per call,
/// requests and responses in protobuf's JSON mapping.
struct CRIClient {
    let socket: String
    let generated: String

    init(socket: String, directory: String) throws {
        self.socket = socket
        generated = directory + "/cri-python"
        try FileManager.default.createDirectory(atPath: generated, withIntermediateDirectories: true)
        let compiled = try Running("/usr/bin/env", ["python3", "-m", "grpc_tools.protoc", "-I", criDirectory,
                                                    "--python_out=" + generated, criDirectory + "/api.proto"]).finish(limit: 60)
        guard compiled.status == 0 else { throw CRICallError(description: "protoc failed: \(compiled.stderr)") }
    }

    /// `runtime.v1.RuntimeService/METHOD` with `request`; its response as a JSON object.
    func call(_ method: String, _ request: [String: Any] = [:]) throws -> [String: Any] {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        let run = try Running("/usr/bin/env", ["python3", criDirectory + "/cri_call.py", generated, socket, method, body]).finish(limit: 150)
        guard run.status == 0 else { throw CRICallError(description: "\(method) failed: \(run.stderr)") }
        guard let response = try JSONSerialization.jsonObject(with: run.stdoutBytes) as? [String: Any] else {
            throw CRICallError(description: "\(method): not a JSON object: \(run.stdout)")
        }
        return response
    }
}

/// In ContainerdTests' serialized suite: one private containerd at a time.
extension ContainerdTests {
    @Test(.enabled(if: CRIAvailability.unusableReason == nil, Comment(rawValue: CRIAvailability.unusableReason ?? "")))
    func aPodWithADeflectVMRunsThroughContainerdsCRIPlugin() throws {
        let containerd = try PrivateContainerd(plugins: CRIConfiguration.plugins, path: CRIConfiguration.path)
        defer { containerd.stop() }
        let directory = containerd.directory
        for empty in ["cni-bin", "cni-conf"] { try FileManager.default.createDirectory(atPath: "\(directory)/\(empty)", withIntermediateDirectories: true) }
        // The sandbox ("pause") image and the VM's image, imported where the CRI looks (namespace k8s.io).
        let pauseFiles = directory + "/pause-files"
        try FileManager.default.createDirectory(atPath: pauseFiles, withIntermediateDirectories: true)
        try Data("the shim holds a sandbox with its own placeholder; this file is never run\n".utf8)
            .write(to: URL(fileURLWithPath: pauseFiles + "/pause"))
        let vmFiles = try containerd.rootfs(guest: "real/hello.bin", description: #"{"image": "hello.bin", "mode": "real"}"#)
        let spinFiles = try containerd.rootfs(guest: "real/spin.bin", description: #"{"image": "spin.bin", "mode": "real"}"#)
        for (name, files, command) in [(CRIConfiguration.sandboxImage, pauseFiles, ["/pause"]), ("deflect.test/hello:1", vmFiles, ["/deflect.json"]),
                                       ("deflect.test/spin:1", spinFiles, ["/deflect.json"])] {
            let archive = try OCIImageArchive.build(name: name, files: files, into: directory, command: command)
            let imported = try containerd.ctr(["-n", "k8s.io", "image", "import", archive])
            #expect(imported.status == 0, "\(imported.stderr)")
        }
        let cri = try CRIClient(socket: containerd.socket, directory: directory)
        let version = try cri.call("Version", ["version": "v1"])
        #expect(version["runtime_name"] as? String == "containerd", "\(version)")

        // RunPodSandbox: a host-network pod with the `deflect` runtime handler.
        let logs = directory + "/pod-logs"
        let sandboxConfig: [String: Any] = [
            "metadata": ["name": "hello-vm", "uid": "4b1d5e2a-0000-4000-8000-00000000d0f1", "namespace": "default", "attempt": 0],
            "hostname": "hello-vm",
            "log_directory": logs,
            "linux": ["security_context": ["namespace_options": ["network": "NODE"]]],
        ]
        let sandboxID = try #require(try cri.call("RunPodSandbox", ["config": sandboxConfig, "runtime_handler": "deflect"])["pod_sandbox_id"]
                                     as? String)
        let bundles = directory + "/state/io.containerd.runtime.v2.task/k8s.io"
        // The spec the CRI wrote for the sandbox reached the shim's bundle: a sandbox, held by the placeholder.
        let sandboxSpec = try bundleSpec(bundles + "/" + sandboxID)
        #expect(sandboxSpec.annotations?[PodRole.containerTypeKey] == "sandbox", "\(String(describing: sandboxSpec.annotations))")
        #expect(sandboxSpec.annotations?[PodRole.sandboxIDKey] == sandboxID)
        let holder = try #require(try containerd.waitUntilRunning(sandboxID, namespace: "k8s.io"), "the sandbox task is not running")
        #expect(try String(contentsOfFile: "/proc/\(holder)/cmdline", encoding: .utf8).split(separator: "\0").last == "pause")
        let sandboxStatus = try cri.call("PodSandboxStatus", ["pod_sandbox_id": sandboxID])["status"] as? [String: Any]
        #expect(sandboxStatus?["state"] as? String == "SANDBOX_READY" && sandboxStatus?["runtime_handler"] as? String == "deflect",
                "\(String(describing: sandboxStatus))")

        // CreateContainer from the imported image: the container's spec names it a container of this sandbox.
        let containerConfig: [String: Any] = ["metadata": ["name": "vm", "attempt": 0], "image": ["image": "deflect.test/hello:1"],
                                              "log_path": "vm/0.log"]
        let containerID = try #require(try cri.call("CreateContainer", ["pod_sandbox_id": sandboxID, "config": containerConfig,
                                                                        "sandbox_config": sandboxConfig])["container_id"] as? String)
        // (Later, a VM that keeps running, stopped as a kubelet stops one.)
        let spinConfig: [String: Any] = ["metadata": ["name": "spin", "attempt": 0], "image": ["image": "deflect.test/spin:1"],
                                         "log_path": "spin/0.log"]
        let spinID = try #require(try cri.call("CreateContainer", ["pod_sandbox_id": sandboxID, "config": spinConfig,
                                                                   "sandbox_config": sandboxConfig])["container_id"] as? String)
        let info = try containerd.ctr(["-n", "k8s.io", "container", "info", containerID])
        let container = try JSONSerialization.jsonObject(with: info.stdoutBytes) as? [String: Any]
        #expect((container?["Runtime"] as? [String: Any])?["Name"] as? String == "io.containerd.deflect.v1", "\(info.stdout)")
        let spec = container?["Spec"] as? [String: Any]
        let annotations = spec?["annotations"] as? [String: String]
        #expect(annotations?[PodRole.containerTypeKey] == "container" && annotations?[PodRole.sandboxIDKey] == sandboxID, "\(info.stdout)")
        #expect((spec?["root"] as? [String: Any])?["path"] as? String == "rootfs", "\(info.stdout)")
        // What made every such VM fail: a socket in this bundle would be past sun_path's 107 bytes.
        let bundle = bundles + "/" + containerID
        #expect((bundle + "/deflect-api.sock").utf8.count > 107)

        // StartContainer: the VM runs from the image, prints, and exits with the guest's status.
        _ = try cri.call("StartContainer", ["container_id": containerID])
        var status = try waitForState(cri, containerID, "CONTAINER_EXITED")
        #expect(status["state"] as? String == "CONTAINER_EXITED", "\(status)")
        #expect(status["exit_code"] as? Int == 85, "\(status)")
        #expect(status["log_path"] as? String == logs + "/vm/0.log", "\(status)")
        // The CRI wrote the guest's serial output (the shim's stdout FIFO) to the container's log, in the CRI log format.
        let logged = try waitForLogLine(logs + "/vm/0.log", stream: "stdout", text: "hello from real mode")
        #expect(logged, "\((try? String(contentsOfFile: logs + "/vm/0.log", encoding: .utf8)) ?? "no log file")")
        #expect(!FileManager.default.fileExists(atPath: TaskBundle(path: bundle).apiSocket))

        // A running VM: its control API socket is the short one, and StopContainer with a
        // grace period (the kubelet's SIGTERM) ends it cleanly through that API: status 10.
        _ = try cri.call("StartContainer", ["container_id": spinID])
        status = try waitForState(cri, spinID, "CONTAINER_RUNNING")
        #expect(status["state"] as? String == "CONTAINER_RUNNING", "\(status)")
        let spinSocket = TaskBundle(path: bundles + "/" + spinID).apiSocket
        let vm = try #require(try containerd.waitUntilRunning(spinID, namespace: "k8s.io"))
        let vmArguments = LeftoverProcesses.commandLine(vm).split(separator: " ").map(String.init)
        #expect(vmArguments.contains(spinSocket) && spinSocket.utf8.count <= 107, "\(vmArguments)")
        _ = try cri.call("StopContainer", ["container_id": spinID, "timeout": 20])
        status = try waitForState(cri, spinID, "CONTAINER_EXITED")
        #expect(status["state"] as? String == "CONTAINER_EXITED" && status["exit_code"] as? Int == 10, "\(status)")
        #expect(!FileManager.default.fileExists(atPath: spinSocket))

        // StopPodSandbox, RemovePodSandbox: nothing is left.
        _ = try cri.call("StopPodSandbox", ["pod_sandbox_id": sandboxID])
        let stopped = try cri.call("PodSandboxStatus", ["pod_sandbox_id": sandboxID])["status"] as? [String: Any]
        #expect(stopped?["state"] as? String == "SANDBOX_NOTREADY", "\(String(describing: stopped))")
        _ = try cri.call("RemovePodSandbox", ["pod_sandbox_id": sandboxID])
        #expect((try cri.call("ListPodSandbox")["items"] as? [Any])?.isEmpty == true)
        #expect((try cri.call("ListContainers")["containers"] as? [Any])?.isEmpty == true)
        #expect(try containerd.ctr(["-n", "k8s.io", "task", "ls", "-q"]).stdout.isEmpty)
        #expect(try containerd.ctr(["-n", "k8s.io", "container", "ls", "-q"]).stdout.isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: bundles)) ?? []).isEmpty)
        var left: [Int32] = []
        for _ in 0..<100 {
            left = LeftoverProcesses.mentioning([directory, sandboxID, containerID, spinID]).filter { $0 != containerd.pid && !LeftoverProcesses.hasEnded($0) }
            if left.isEmpty { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(left.isEmpty, "left running: \(left.map { "\($0): \(LeftoverProcesses.commandLine($0))" })")
        #expect(LeftoverMounts.list(under: directory).isEmpty, "\(LeftoverMounts.list(under: directory))")
    }

    private func bundleSpec(_ bundle: String) throws -> BundleSpec {
        try TaskBundle(path: bundle).spec()
    }

    /// The container's status once in `state` (or after 60 s).
    private func waitForState(_ cri: CRIClient, _ id: String, _ state: String) throws -> [String: Any] {
        var status: [String: Any] = [:]
        for _ in 0..<300 {
            status = try cri.call("ContainerStatus", ["container_id": id])["status"] as? [String: Any] ?? [:]
            if status["state"] as? String == state { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return status
    }

    /// Whether the CRI log at `path` has `TIMESTAMP STREAM F TEXT` (waiting up to 5 s for it to be written).
    private func waitForLogLine(_ path: String, stream: String, text: String) throws -> Bool {
        for _ in 0..<100 {
            let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
            if lines.contains(where: { line in
                let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                return fields.count == 4 && fields[1] == stream && fields[2] == "F" && fields[3] == text
            }) { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }
}
