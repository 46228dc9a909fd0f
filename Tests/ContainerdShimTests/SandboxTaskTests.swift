// A Kubernetes pod's sandbox task (the CRI's container-type annotation): no
// deflect.json, no VM, a placeholder process (the shim's `pause` action) that
// Kill, Wait, Pause, Resume, Pids and Delete treat as the task's process.
import Foundation
import SwiftProtobuf
import Testing
import TTRPC
@testable import ContainerdShim

enum ShimBinaryAvailability {
    static let unusableReason: String? = FileManager.default.isExecutableFile(atPath: shimBinary)
        ? nil : "\(shimBinary) was not built: sandbox placeholder test skipped"
}

@Suite(.enabled(if: ShimBinaryAvailability.unusableReason == nil, Comment(rawValue: ShimBinaryAvailability.unusableReason ?? "")))
struct SandboxTaskTests {
    private let registry = TTRPCServiceRegistry()
    private let bundle: String

    init() throws {
        bundle = NSTemporaryDirectory() + "deflect-sandbox-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        // The CRI's sandbox spec: the pause image's rootfs, no deflect.json anywhere.
        try config(#"{"root": {"path": "rootfs"}, "annotations": {"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "pod1"}}"#)
        // deflect is /bin/false: were a VM started, the task would end with status 1 at once.
        TaskService(deflectBinary: "/bin/false", placeholderBinary: shimBinary, events: EventPublisher(address: nil, namespace: "t")) {}
            .register(in: registry)
    }

    private func config(_ json: String) throws {
        try Data(json.utf8).write(to: URL(fileURLWithPath: bundle + "/config.json"))
    }

    private func call<Response: SwiftProtobuf.Message>(_ method: String, _ request: some SwiftProtobuf.Message,
                                                       as _: Response.Type) throws -> Response {
        try callTask(registry, method, request, as: Response.self)
    }

    private func create(_ id: String = "pod1") throws {
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = id
        create.bundle = bundle
        _ = try call("Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
    }

    private func start() throws -> Int32 {
        var start = Containerd_Task_V2_StartRequest()
        start.id = "pod1"
        return Int32(try call("Start", start, as: Containerd_Task_V2_StartResponse.self).pid)
    }

    private func kill(_ signal: Int32) throws -> UInt32 {
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "pod1"
        kill.signal = UInt32(signal)
        _ = try call("Kill", kill, as: Google_Protobuf_Empty.self)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "pod1"
        return try call("Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus
    }

    /// Whether process `pid` is (or within 5 s becomes) stopped by a signal, per field 3 of /proc/PID/stat.
    private func becomes(stopped: Bool, _ pid: Int32) -> Bool {
        for _ in 0..<250 {
            let state = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.split(separator: ")").last?.split(separator: " ").first
            if (state == "T") == stopped { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    @Test func aSandboxRunsThePlaceholderUntilSIGTERM() throws {
        try create()
        let pid = try start()
        #expect(pid > 0)
        let command = try String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8).split(separator: "\0")
        #expect(command.dropFirst().map(String.init) == ["-id", "pod1", "pause"], "\(command)")
        SandboxPlaceholder.waitUntilCatching(pid: pid, signal: SIGTERM, limit: 5)
        // It holds nothing of the shim's but stdin (its lifeline), stdout and stderr.
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap { Int($0) }.sorted()
        #expect(descriptors == [0, 1, 2])
        var pids = Containerd_Task_V2_PidsRequest()
        pids.id = "pod1"
        #expect(try call("Pids", pids, as: Containerd_Task_V2_PidsResponse.self).processes.map(\.pid) == [UInt32(pid)])
        var stats = Containerd_Task_V2_StatsRequest()
        stats.id = "pod1"
        let metrics = try Io_Containerd_Cgroups_V2_Metrics(serializedBytes: try call("Stats", stats, as: Containerd_Task_V2_StatsResponse.self).stats.value)
        #expect(metrics.memory.usage > 0)
        // Pause and Resume stop and continue the placeholder.
        var pause = Containerd_Task_V2_PauseRequest()
        pause.id = "pod1"
        _ = try call("Pause", pause, as: Google_Protobuf_Empty.self)
        var state = Containerd_Task_V2_StateRequest()
        state.id = "pod1"
        #expect(try call("State", state, as: Containerd_Task_V2_StateResponse.self).status == .paused)
        #expect(becomes(stopped: true, pid))
        var resume = Containerd_Task_V2_ResumeRequest()
        resume.id = "pod1"
        _ = try call("Resume", resume, as: Google_Protobuf_Empty.self)
        #expect(becomes(stopped: false, pid))
        var checkpoint = Containerd_Task_V2_CheckpointTaskRequest()
        checkpoint.id = "pod1"
        checkpoint.path = bundle + "/cp"
        #expect(throws: TTRPCError(.unimplemented, "task pod1 is a pod sandbox: it has no VM to checkpoint")) {
            try call("Checkpoint", checkpoint, as: Google_Protobuf_Empty.self)
        }
        #expect(try kill(SIGTERM) == 0)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "pod1"
        let deleted = try call("Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        #expect(deleted.pid == UInt32(pid) && deleted.exitStatus == 0)
        #expect(Foundation.kill(pid, 0) != 0, "the placeholder \(pid) outlived Delete")
    }

    /// SIGTERM at once after Start still ends it cleanly (the shim waits for its handler); SIGKILL is 137.
    @Test func sigtermRightAfterStartIsZeroAndSIGKILLIs137() throws {
        try create()
        _ = try start()
        #expect(try kill(SIGTERM) == 0)
        let other = TTRPCServiceRegistry()
        TaskService(deflectBinary: "/bin/false", placeholderBinary: shimBinary, events: EventPublisher(address: nil, namespace: "t")) {}
            .register(in: other)
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "pod1"
        create.bundle = bundle
        _ = try callTask(other, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "pod1"
        let pid = Int32(try callTask(other, "Start", start, as: Containerd_Task_V2_StartResponse.self).pid)
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "pod1"
        kill.signal = UInt32(SIGKILL)
        _ = try callTask(other, "Kill", kill, as: Google_Protobuf_Empty.self)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "pod1"
        #expect(try callTask(other, "Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus == 137)
        #expect(Foundation.kill(pid, 0) != 0)
    }

    /// An application container of the pod is a VM as before: it needs deflect.json.
    @Test func aPodsAppContainerStillNeedsDeflectJSON() throws {
        try config(#"{"annotations": {"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "pod1"}}"#)
        let error = #expect(throws: TTRPCError.self) { try create("app") }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("deflect.json is missing") == true, "\(String(describing: error))")
    }

    @Test func aMalformedConfigIsAnErrorNamingWhatIsWrong() throws {
        let path = bundle + "/config.json"
        for (json, fragment) in [
            (#"{"annotations": "#, "\(path): "),
            (#"{"annotations": {"io.kubernetes.cri.container-type": 7}}"#, "\(path): annotations.io.kubernetes.cri.container-type: "),
            (#"{"root": {"path": ["rootfs"]}}"#, "\(path): root.path: "),
            (#"{"annotations": {"io.kubernetes.cri.container-type": "pod"}}"#,
             "annotation io.kubernetes.cri.container-type: 'pod' is neither 'sandbox' nor 'container'"),
        ] {
            try config(json)
            let error = #expect(throws: TTRPCError.self) { try create() }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.hasPrefix(fragment) == true, "\(String(describing: error))")
        }
    }
}

@Suite(.enabled(if: ShimBinaryAvailability.unusableReason == nil, Comment(rawValue: ShimBinaryAvailability.unusableReason ?? "")))
struct SandboxPlaceholderTests {
    /// Its shim gone (the lifeline's writer closed, as a SIGKILLed shim's would be), the placeholder ends.
    @Test func thePlaceholderEndsWithItsLifeline() throws {
        // Close-on-exec, as the shim makes it: no other test's child may hold the shim's end.
        var ends: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0)
        let placeholder = Process()
        placeholder.executableURL = URL(fileURLWithPath: shimBinary)
        placeholder.arguments = SandboxPlaceholder.arguments(sandboxID: "pod")
        placeholder.standardInput = FileHandle(fileDescriptor: ends[0], closeOnDealloc: false)
        try placeholder.run()
        close(ends[0])
        SandboxPlaceholder.waitUntilCatching(pid: placeholder.processIdentifier, signal: SIGINT, limit: 5)
        #expect(placeholder.isRunning)
        close(ends[1])
        let deadline = Date().addingTimeInterval(10)
        while placeholder.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if placeholder.isRunning { kill(placeholder.processIdentifier, SIGKILL) }
        placeholder.waitUntilExit()
        #expect(placeholder.terminationReason == .exit && placeholder.terminationStatus == 0)
    }

    @Test func sigintEndsItWithStatus0() throws {
        let lifeline = Pipe()
        let placeholder = Process()
        placeholder.executableURL = URL(fileURLWithPath: shimBinary)
        placeholder.arguments = SandboxPlaceholder.arguments(sandboxID: "pod")
        placeholder.standardInput = lifeline
        try placeholder.run()
        SandboxPlaceholder.waitUntilCatching(pid: placeholder.processIdentifier, signal: SIGINT, limit: 5)
        kill(placeholder.processIdentifier, SIGINT)
        placeholder.waitUntilExit()
        #expect(placeholder.terminationReason == .exit && placeholder.terminationStatus == 0)
    }

    @Test func sigCgtIsReadBitByBit() {
        // SIGINT (2) and SIGTERM (15): bits 1 and 14.
        let status = "Name:\tx\nSigBlk:\t0000000000000000\nSigCgt:\t0000000000004002\n"
        #expect(SandboxPlaceholder.catches(SIGINT, status: status))
        #expect(SandboxPlaceholder.catches(SIGTERM, status: status))
        #expect(!SandboxPlaceholder.catches(SIGHUP, status: status))
        #expect(!SandboxPlaceholder.catches(SIGTERM, status: "Name:\tx\n"))
    }
}
