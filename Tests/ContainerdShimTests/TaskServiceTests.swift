// The Task service's state machine over ttrpc, with a stand-in for deflect
// (/bin/false: starts, exits 1) so no KVM or containerd is needed.
import Foundation
import SwiftProtobuf
import Testing
import TTRPC
@testable import ContainerdShim

@Suite struct TaskServiceTests {
    /// A bundle whose config.json points at a root filesystem with a valid deflect.json.
    private func bundle() throws -> String {
        let bundle = NSTemporaryDirectory() + "deflect-bundle-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/guest", withIntermediateDirectories: true)
        try Data(#"{"root": {"path": "guest"}}"#.utf8).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        try Data([0xF4]).write(to: URL(fileURLWithPath: bundle + "/guest/g.bin"))
        try Data(#"{"image": "g.bin", "mode": "real"}"#.utf8).write(to: URL(fileURLWithPath: bundle + "/guest/deflect.json"))
        return bundle
    }

    private func call<Response: SwiftProtobuf.Message>(_ registry: TTRPCServiceRegistry, _ method: String,
                                                       _ request: some SwiftProtobuf.Message, as _: Response.Type) throws -> Response {
        try callTask(registry, method, request, as: Response.self)
    }

    @Test func lifecycleAndRefusals() throws {
        let registry = TTRPCServiceRegistry()
        let service = TaskService(deflectBinary: "/bin/false", events: EventPublisher(address: nil, namespace: "t")) {}
        service.register(in: registry)
        let path = try bundle()

        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = path
        _ = try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
        #expect(throws: TTRPCError.self) { try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self) }

        var state = Containerd_Task_V2_StateRequest()
        state.id = "vm"
        #expect(try call(registry, "State", state, as: Containerd_Task_V2_StateResponse.self).status == .created)

        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        let started = try call(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self)
        #expect(started.pid > 0)
        #expect(throws: TTRPCError(.failedPrecondition, "task vm was already started")) {
            try call(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self)
        }

        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "vm"
        #expect(try call(registry, "Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus == 1)
        let stopped = try call(registry, "State", state, as: Containerd_Task_V2_StateResponse.self)
        #expect(stopped.status == .stopped && stopped.exitStatus == 1 && stopped.pid == started.pid)

        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "vm"
        kill.execID = "shell"
        kill.signal = 9
        #expect(throws: TTRPCError(.notFound, "exec shell not found: a VM task has no exec processes")) {
            try call(registry, "Kill", kill, as: Google_Protobuf_Empty.self)
        }
        kill.execID = ""
        #expect(throws: TTRPCError(.notFound, "task vm: process already finished")) {
            try call(registry, "Kill", kill, as: Google_Protobuf_Empty.self)
        }
        var other = Containerd_Task_V2_StateRequest()
        other.id = "nope"
        #expect(throws: TTRPCError(.notFound, "task nope not found in this shim")) {
            try call(registry, "State", other, as: Containerd_Task_V2_StateResponse.self)
        }
        #expect(throws: TTRPCError(.unimplemented, "containerd.task.v2.Task/Exec is not implemented")) {
            try call(registry, "Exec", Containerd_Task_V2_ExecProcessRequest(), as: Google_Protobuf_Empty.self)
        }

        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "vm"
        let deleted = try call(registry, "Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        #expect(deleted.exitStatus == 1 && deleted.pid == started.pid)
    }

    /// SIGTERM stops the VM through `deflect ctl shutdown`, and Kill answers as
    /// soon as the VM has ended, not when `deflect ctl` does: containerd, told
    /// of the exit, deletes the task and closes its connection, failing a Kill
    /// still waiting ("ttrpc: closed").
    @Test func aSIGTERMKillAnswersOnceTheVMHasStopped() throws {
        let path = try bundle()
        let standIn = path + "/deflect"
        try Data("""
            #!/bin/sh
            if [ "$1" = ctl ]; then kill "$(cat "$0.pid")"; exec sleep 8; fi
            echo $$ > "$0.pid.new" && mv "$0.pid.new" "$0.pid"
            exec sleep 60

            """.utf8).write(to: URL(fileURLWithPath: standIn))
        chmod(standIn, 0o755)
        let registry = try createdTask(bundle: path, deflect: standIn)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        _ = try call(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self)
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: standIn + ".pid") { Thread.sleep(forTimeInterval: 0.01) }
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "vm"
        kill.signal = UInt32(SIGTERM)
        let began = Date()
        _ = try call(registry, "Kill", kill, as: Google_Protobuf_Empty.self)
        #expect(Date().timeIntervalSince(began) < 4, "Kill waited for deflect ctl, not for the VM")
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "vm"
        #expect(try call(registry, "Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus == 128 + UInt32(SIGTERM))
    }

    @Test func createRefusesABadDescriptionAndMounts() throws {
        let registry = TTRPCServiceRegistry()
        TaskService(deflectBinary: "/bin/false", events: EventPublisher(address: nil, namespace: "t")) {}.register(in: registry)
        let path = try bundle()
        try Data(#"{"image": "/../../../../../../../../etc/passwd"}"#.utf8).write(to: URL(fileURLWithPath: path + "/guest/deflect.json"))
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = path
        let error = #expect(throws: TTRPCError.self) { try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("outside the root filesystem") == true, "\(String(describing: error))")
        // A mount that cannot be made is an error naming it, and leaves nothing mounted.
        var missing = Containerd_Task_V2_Mount()
        missing.type = "bind"
        missing.source = path + "/no-such-layer"
        missing.options = ["rbind", "ro"]
        create.rootfs = [missing]
        let mounts = #expect(throws: TTRPCError.self) { try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self) }
        #expect(mounts?.code == .internal)
        #expect(mounts?.message.contains("bind mount of \(path)/no-such-layer on \(path)/rootfs") == true, "\(String(describing: mounts))")
        #expect(!isMountPoint(path + "/rootfs"))
    }

    @Test(.enabled(if: getuid() == 0, "mounting needs root: rootfs mount test skipped"))
    func createMountsTheSnapshotterLayersAndDeleteUnmountsThem() throws {
        let registry = TTRPCServiceRegistry()
        TaskService(deflectBinary: "/bin/false", events: EventPublisher(address: nil, namespace: "t")) {}.register(in: registry)
        let path = try bundle()
        // containerd's spec names BUNDLE/rootfs; the layer (here: the guest directory) is bound there.
        try Data(#"{"root": {"path": "rootfs"}}"#.utf8).write(to: URL(fileURLWithPath: path + "/config.json"))
        var layer = Containerd_Task_V2_Mount()
        layer.type = "bind"
        layer.source = path + "/guest"
        layer.options = ["rbind", "ro"]
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = path
        create.rootfs = [layer]
        _ = try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
        #expect(isMountPoint(path + "/rootfs"))
        #expect(FileManager.default.fileExists(atPath: path + "/rootfs/deflect.json"))
        // Read-only, as asked: the bind was remounted with MS_RDONLY.
        #expect(FileManager.default.createFile(atPath: path + "/rootfs/new", contents: Data()) == false)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "vm"
        _ = try call(registry, "Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        #expect(!isMountPoint(path + "/rootfs"))
        #expect(!FileManager.default.fileExists(atPath: path + "/rootfs/deflect.json"))
    }

    @Test func mountOptionsSplitIntoFlagsAndData() throws {
        let overlay = try MountOptions(["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs"])
        #expect(overlay.flags == 0 && overlay.data == "index=off,workdir=/s/2/work,upperdir=/s/2/fs,lowerdir=/s/1/fs")
        let bind = try MountOptions(["rbind", "ro", "nosuid", "rprivate"])
        #expect(bind.flags == MountOptions.bind | MountOptions.recursive | MountOptions.readOnly | MountOptions.noSetUID | MountOptions.private)
        #expect(bind.data.isEmpty)
        // A later option clears an earlier one, as mount(8) reads them.
        #expect(try MountOptions(["ro", "rw", "noexec", "exec", "defaults"]).flags == 0)
        #expect(throws: RootfsMountError.self) { try MountOptions(["loop"]) }
        #expect(throws: RootfsMountError.self) { try MountOptions(["remount", "ro"]) }
    }
}

/// One Task call through the registry, as the ttrpc server would make it; a non-OK status is thrown.
func callTask<Response: SwiftProtobuf.Message>(_ registry: TTRPCServiceRegistry, _ method: String,
                                               _ request: some SwiftProtobuf.Message, as _: Response.Type) throws -> Response {
    var envelope = Ttrpc_Request()
    envelope.service = TaskService.serviceName
    envelope.method = method
    envelope.payload = try request.serializedData()
    let response = registry.respond(to: envelope)
    if response.hasStatus, response.status.code != 0 {
        throw TTRPCError(TTRPCStatusCode(rawValue: response.status.code) ?? .unknown, response.status.message)
    }
    return try Response(serializedBytes: response.payload)
}

/// A Task service running `deflect` as its Deflect, with task "vm" created from `bundle`.
func createdTask(bundle: String, deflect: String) throws -> TTRPCServiceRegistry {
    let registry = TTRPCServiceRegistry()
    TaskService(deflectBinary: deflect, events: EventPublisher(address: nil, namespace: "t")) {}.register(in: registry)
    var request = Containerd_Task_V2_CreateTaskRequest()
    request.id = "vm"
    request.bundle = bundle
    _ = try callTask(registry, "Create", request, as: Containerd_Task_V2_CreateTaskResponse.self)
    return registry
}

/// Whether `path` is a mount point of this process's mount namespace (/proc/self/mountinfo's field 5).
func isMountPoint(_ path: String) -> Bool {
    guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
    let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    return table.split(separator: "\n").contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 4 && (fields[4] == path || fields[4] == resolved)
    }
}

/// The calls on a running task, with a stand-in for deflect that keeps
/// running (`run`) and records what `ctl` was asked.
@Suite struct RunningTaskServiceTests {
    private let registry = TTRPCServiceRegistry()
    private let standIn: String
    private let bundle: String

    init() throws {
        bundle = NSTemporaryDirectory() + "deflect-running-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        try Data([0xF4]).write(to: URL(fileURLWithPath: bundle + "/rootfs/g.bin"))
        try Data(#"{"image": "g.bin", "mode": "real"}"#.utf8).write(to: URL(fileURLWithPath: bundle + "/rootfs/deflect.json"))
        standIn = bundle + "/deflect"
        try Data("""
            #!/bin/sh
            if [ "$1" = ctl ]; then echo "$@" >> "$0.ctl"; exit 0; fi
            exec sleep 60

            """.utf8).write(to: URL(fileURLWithPath: standIn))
        chmod(standIn, 0o755)
        TaskService(deflectBinary: standIn, events: EventPublisher(address: nil, namespace: "t")) {}.register(in: registry)
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = bundle
        _ = try call("Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
    }

    private func call<Response: SwiftProtobuf.Message>(_ method: String, _ request: some SwiftProtobuf.Message,
                                                       as _: Response.Type) throws -> Response {
        try callTask(registry, method, request, as: Response.self)
    }

    private func start() throws -> UInt32 {
        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        return try call("Start", start, as: Containerd_Task_V2_StartResponse.self).pid
    }

    /// Ends the stand-in with SIGKILL; Wait's status.
    private func killAndWait() throws -> UInt32 {
        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "vm"
        kill.signal = UInt32(SIGKILL)
        _ = try call("Kill", kill, as: Google_Protobuf_Empty.self)
        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "vm"
        return try call("Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus
    }

    @Test func pidsConnectAndStatsNameTheVMProcess() throws {
        var statsRequest = Containerd_Task_V2_StatsRequest()
        statsRequest.id = "vm"
        #expect(throws: TTRPCError(.failedPrecondition, "task vm is not running")) {
            try call("Stats", statsRequest, as: Containerd_Task_V2_StatsResponse.self)
        }
        var connect = Containerd_Task_V2_ConnectRequest()
        connect.id = "vm"
        #expect(try call("Connect", connect, as: Containerd_Task_V2_ConnectResponse.self).taskPid == 0)
        let pid = try start()
        // The stand-in is a shell that execs sleep: compare memory once the
        // exec is done, or Stats may read the shell and /proc the sleep.
        for _ in 0..<500 where (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) != "sleep\n" {
            Thread.sleep(forTimeInterval: 0.01)
        }
        var pids = Containerd_Task_V2_PidsRequest()
        pids.id = "vm"
        #expect(try call("Pids", pids, as: Containerd_Task_V2_PidsResponse.self).processes.map(\.pid) == [pid])
        let connected = try call("Connect", connect, as: Containerd_Task_V2_ConnectResponse.self)
        #expect(connected.taskPid == pid && connected.shimPid == UInt32(getpid()) && connected.version == "deflect")
        let stats = try call("Stats", statsRequest, as: Containerd_Task_V2_StatsResponse.self)
        #expect(stats.stats.typeURL == "io.containerd.cgroups.v2.Metrics")
        let metrics = try Io_Containerd_Cgroups_V2_Metrics(serializedBytes: stats.stats.value)
        #expect(metrics.pids.current == 1)   // sleep: one thread
        // Read again here: a process that just started can still be faulting
        // pages in, so the two readings agree closely, not exactly.
        let resident = ProcessUsage.of(pid: Int32(pid))?.residentBytes ?? 0
        #expect(metrics.memory.usage > 0 && resident > 0)
        #expect(max(metrics.memory.usage, resident) - min(metrics.memory.usage, resident) <= max(resident / 4, 1 << 20),
                "Stats said \(metrics.memory.usage) resident bytes, /proc says \(resident)")
        // SIGKILL is sent to the VM process: Wait reports 128 + 9.
        #expect(try killAndWait() == 137)
        #expect(kill(Int32(pid), 0) != 0)
        #expect(throws: TTRPCError(.failedPrecondition, "task vm is not running")) {
            try call("Stats", statsRequest, as: Containerd_Task_V2_StatsResponse.self)
        }
    }

    @Test func checkpointSnapshotsIntoThePathAndHonoursExit() throws {
        _ = try start()
        var checkpoint = Containerd_Task_V2_CheckpointTaskRequest()
        checkpoint.id = "vm"
        checkpoint.path = bundle + "/cp1"
        _ = try call("Checkpoint", checkpoint, as: Google_Protobuf_Empty.self)
        // Paused by containerd's client first: it stays paused.
        var pause = Containerd_Task_V2_PauseRequest()
        pause.id = "vm"
        _ = try call("Pause", pause, as: Google_Protobuf_Empty.self)
        checkpoint.path = bundle + "/cp2"
        _ = try call("Checkpoint", checkpoint, as: Google_Protobuf_Empty.self)
        var options = Containerd_Runc_V1_CheckpointOptions()
        options.exit = true
        checkpoint.options.typeURL = "containerd.runc.v1.CheckpointOptions"
        checkpoint.options.value = try options.serializedData()
        checkpoint.path = bundle + "/cp3"
        _ = try call("Checkpoint", checkpoint, as: Google_Protobuf_Empty.self)
        let socket = TaskBundle(path: bundle).apiSocket
        let asked = try String(contentsOfFile: standIn + ".ctl", encoding: .utf8)
        #expect(asked == """
            ctl --socket \(socket) snapshot \(bundle)/cp1/deflect.snap --then resume
            ctl --socket \(socket) pause
            ctl --socket \(socket) snapshot \(bundle)/cp2/deflect.snap --then pause
            ctl --socket \(socket) snapshot \(bundle)/cp3/deflect.snap --then stop

            """)
        #expect(FileManager.default.fileExists(atPath: bundle + "/cp3"))
        checkpoint.options.typeURL = "example.Other"
        #expect(throws: TTRPCError(.invalidArgument, "checkpoint options of type example.Other are not understood")) {
            try call("Checkpoint", checkpoint, as: Google_Protobuf_Empty.self)
        }
        checkpoint.options = Google_Protobuf_Any()
        checkpoint.path = "relative"
        #expect(throws: TTRPCError(.invalidArgument, "checkpoint path 'relative' is not absolute")) {
            try call("Checkpoint", checkpoint, as: Google_Protobuf_Empty.self)
        }
        #expect(try killAndWait() == 137)
    }
}

@Suite struct TaskMetricsTests {
    @Test func procFilesMapToCgroupV2Metrics() throws {
        // A command name with a space and a ')' must not shift the fields.
        let stat = "4242 (deflect (vm) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 12345 1000000 300"
        let status = """
            Name:\tdeflect
            Threads:\t5
            VmRSS:\t   70000 kB
            RssAnon:\t    4000 kB
            RssFile:\t    1000 kB
            RssShmem:\t   65000 kB

            """
        let usage = try #require(ProcessUsage(stat: stat, status: status))
        #expect(usage.userTicks == 250 && usage.systemTicks == 75 && usage.threads == 5)
        let metrics = TaskMetrics.metrics(usage, ticksPerSecond: 100)
        #expect(metrics.pids.current == 5)
        #expect(metrics.cpu.userUsec == 2_500_000 && metrics.cpu.systemUsec == 750_000 && metrics.cpu.usageUsec == 3_250_000)
        #expect(metrics.memory.usage == 70000 * 1024 && metrics.memory.shmem == 65000 * 1024)
        #expect(metrics.memory.anon == 4000 * 1024 && metrics.memory.file == 1000 * 1024)
        #expect(metrics.memory.usageLimit == 0 && metrics.pids.limit == 0)
        // containerd reads the fields by its numbers: pids 1, cpu 2, memory 4; usage_usec 1, usage 32.
        var pids = Io_Containerd_Cgroups_V2_Metrics()
        pids.pids.current = 5
        #expect(try pids.serializedBytes() as [UInt8] == [0x0A, 0x02, 0x08, 0x05])
        var cpu = Io_Containerd_Cgroups_V2_Metrics()
        cpu.cpu.usageUsec = 1
        #expect(try cpu.serializedBytes() as [UInt8] == [0x12, 0x02, 0x08, 0x01])
        var memory = Io_Containerd_Cgroups_V2_Metrics()
        memory.memory.usage = 1
        #expect(try memory.serializedBytes() as [UInt8] == [0x22, 0x03, 0x80, 0x02, 0x01])
        #expect(ProcessUsage(stat: "garbage", status: status) == nil)
        #expect(ProcessUsage(stat: stat, status: "Name:\tx\n") == nil)
    }
}

@Suite struct EventPublisherTests {
    /// A containerd that accepts connections but never answers (stopped, or
    /// hung) costs the shim at most the forward timeout per event: flush returns.
    @Test func aSilentContainerdNeverHoldsTheShim() throws {
        let path = NSTemporaryDirectory() + "silent-\(UUID().uuidString.prefix(8)).sock"
        let listener = try UnixSocket.listen(path: path)
        defer { close(listener); unlink(path) }
        let publisher = EventPublisher(address: "unix://" + path, namespace: "t")
        var event = Containerd_Task_V2_TaskPaused()
        event.containerID = "vm"
        let started = Date()
        publisher.publish(topic: "/tasks/paused", event)
        #expect(Date().timeIntervalSince(started) < 1)   // never on the caller's thread
        #expect(publisher.flush(limit: 10))
        #expect(Date().timeIntervalSince(started) < 9)
    }
}
