// ContainerdShim: the containerd.task.v2.Task service for one task, which is
// one VM: Create reads deflect.json, Start runs `deflect run --api-socket` (its
// pid is the task's), Wait returns the VM's exit status, Kill/Pause/Resume and
// Checkpoint (a Deflect snapshot) go through the VM's control API (`deflect
// ctl`), Stats reads the VM process's usage, and calls that do not apply to a
// VM answer UNIMPLEMENTED. A VM with `net` gets the pod's network: Start
// connects it (PodNetwork) and runs the VM in the task's network namespace,
// Delete disconnects it. A Kubernetes pod's sandbox task (the CRI's
// annotation) runs no VM: a placeholder process holds it (SandboxPlaceholder),
// signalled directly.
import Foundation
import KVM
import ReadableErrors
import SwiftProtobuf
import Synchronization
import TTRPC

public final class TaskService: Sendable {
    public static let serviceName = "containerd.task.v2.Task"

    enum Phase: Equatable {
        case none, created, running, paused, stopped
    }

    struct State {
        var phase = Phase.none
        var id = ""
        var bundle = TaskBundle(path: "")
        /// Create mounted the snapshotter's layers on the bundle's rootfs; Delete unmounts them.
        var rootfsMounted = false
        var stdin = "", stdout = "", stderr = ""
        var description: VMDescription?
        /// The pod network Start connected for the VM; Delete disconnects it.
        var network: PodNetwork?
        var role = PodRole.none
        var process: Process?
        /// A sandbox's lifeline: the shim's end of the socket pair that is the placeholder's stdin, open while the shim lives.
        var lifeline: Int32 = -1
        var pid: Int32 = 0
        var exitStatus: UInt32 = 0
        var exitedAt: Date?
    }

    private let deflectBinary: String
    /// The shim binary, run as a pod sandbox's placeholder (its hidden `pause` action).
    private let placeholderBinary: String
    private let events: EventPublisher
    private let state = Mutex(State())
    /// Wait blocks on this until the task has stopped.
    private let exited = NSCondition()
    /// Called once the shim should end (after Shutdown).
    private let onShutdown: @Sendable () -> Void

    public init(deflectBinary: String, placeholderBinary: String = ShimCommands.shimBinary(), events: EventPublisher,
                onShutdown: @escaping @Sendable () -> Void) {
        self.deflectBinary = deflectBinary
        self.placeholderBinary = placeholderBinary
        self.events = events
        self.onShutdown = onShutdown
    }

    public func register(in registry: TTRPCServiceRegistry) {
        let s = Self.serviceName
        registry.register(service: s, method: "Create") { [self] in try create($0) }
        registry.register(service: s, method: "Start") { [self] in try start($0) }
        registry.register(service: s, method: "Wait") { [self] in try wait($0) }
        registry.register(service: s, method: "State") { [self] in try stateOf($0) }
        registry.register(service: s, method: "Kill") { [self] in try kill($0) }
        registry.register(service: s, method: "Pause") { [self] in try pause($0) }
        registry.register(service: s, method: "Resume") { [self] in try resume($0) }
        registry.register(service: s, method: "Delete") { [self] in try delete($0) }
        registry.register(service: s, method: "Pids") { [self] in try pids($0) }
        registry.register(service: s, method: "Connect") { [self] in try connect($0) }
        registry.register(service: s, method: "Shutdown") { [self] in try shutdown($0) }
        registry.register(service: s, method: "Stats") { [self] in try stats($0) }
        registry.register(service: s, method: "Checkpoint") { [self] in try checkpoint($0) }
        // Exec, ResizePty, CloseIO, Update: not registered,
        // so the registry answers UNIMPLEMENTED (containerd's ErrNotImplemented).
    }

    // MARK: - Calls

    func create(_ request: Containerd_Task_V2_CreateTaskRequest) throws -> Containerd_Task_V2_CreateTaskResponse {
        guard request.checkpoint.isEmpty else { throw TTRPCError(.unimplemented, "restoring a task from a checkpoint is not supported") }
        guard !request.terminal else { throw TTRPCError(.unimplemented, "a terminal is not supported: the guest's serial console is the task's stdout") }
        try state.withLock { state in
            guard state.phase == .none else { throw TTRPCError(.alreadyExists, "task \(state.id) already exists in this shim") }
        }
        let bundle = TaskBundle(path: request.bundle)
        let spec: BundleSpec, role: PodRole
        do {
            spec = try bundle.spec()
            role = try PodRole(annotations: spec.annotations ?? [:])
        } catch {
            throw TTRPCError(.invalidArgument, error.description)
        }
        // The snapshotter's layers (an image containerd pulled or imported), as
        // the runc shim mounts them; a sandbox's placeholder needs no files.
        let mounted = !request.rootfs.isEmpty && !role.isSandbox
        if mounted {
            do {
                try RootfsMounts.mount(request.rootfs, onto: bundle.rootfsMountPoint)
            } catch {
                throw TTRPCError(.internal, error.description)
            }
        }
        do {
            try commitCreate(request, bundle: bundle, spec: spec, role: role, mounted: mounted)
        } catch {
            if mounted { RootfsMounts.unmountAll(bundle.rootfsMountPoint) }
            throw error
        }
        var event = Containerd_Task_V2_TaskCreate()
        event.containerID = request.id
        event.bundle = request.bundle
        event.io.stdin = request.stdin
        event.io.stdout = request.stdout
        event.io.stderr = request.stderr
        publish("/tasks/create", event)
        return Containerd_Task_V2_CreateTaskResponse()
    }

    func start(_ request: Containerd_Task_V2_StartRequest) throws -> Containerd_Task_V2_StartResponse {
        let pid = try state.withLock { state throws -> Int32 in
            try check(request.id, request.execID, in: state)
            guard state.phase == .created else {
                throw TTRPCError(.failedPrecondition, "task \(state.id) was already started")
            }
            let process = Process()
            process.currentDirectoryURL = URL(fileURLWithPath: state.bundle.path)
            process.standardOutput = try openOutput(state.stdout)
            let errorOutput = try openOutput(state.stderr)
            process.standardError = errorOutput
            process.terminationHandler = { [self] process in exited(process) }
            var lifelineReader: Int32 = -1
            if case .sandbox(let sandboxID) = state.role {
                // Close-on-exec from the start: no other child (a `deflect ctl`) may hold an end.
                var ends: [Int32] = [-1, -1]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
                    throw TTRPCError(.internal, "cannot make the sandbox's lifeline: \(String(cString: strerror(errno)))")
                }
                (lifelineReader, state.lifeline) = (ends[0], ends[1])
                process.executableURL = URL(fileURLWithPath: placeholderBinary)
                process.arguments = SandboxPlaceholder.arguments(sandboxID: sandboxID.isEmpty ? state.id : sandboxID)
                process.standardInput = FileHandle(fileDescriptor: lifelineReader, closeOnDealloc: false)
            } else if let description = state.description {
                do {
                    try ShortSocketPath.makePrivateDirectory((state.bundle.apiSocket as NSString).deletingLastPathComponent)
                } catch {
                    throw TTRPCError(.internal, "cannot make the VM's API socket directory: \(ReadableError.reason(error))")
                }
                process.standardInput = FileHandle.nullDevice
                if let net = description.net {
                    // deflect runs in the task's network namespace, where the TAP is.
                    let network = try connect(net, for: &state)
                    let launch: (executable: String, arguments: [String])
                    do throws(PodNetworkError) {
                        launch = try network.command(running: deflectBinary, description.runArguments(apiSocket: state.bundle.apiSocket, network: network))
                    } catch {
                        Self.disconnect(&state)
                        throw TTRPCError(.failedPrecondition, error.description)
                    }
                    process.executableURL = URL(fileURLWithPath: launch.executable)
                    process.arguments = launch.arguments
                    try? errorOutput.write(contentsOf: Data("deflect shim: \(network.summary)\n".utf8))
                } else {
                    process.executableURL = URL(fileURLWithPath: deflectBinary)
                    process.arguments = description.runArguments(apiSocket: state.bundle.apiSocket)
                }
            }
            // Only the placeholder holds its end; the shim keeps the other.
            defer { if lifelineReader >= 0 { close(lifelineReader) } }
            do {
                try process.run()
            } catch {
                Self.closeLifeline(&state)
                Self.disconnect(&state)
                throw TTRPCError(.internal, "cannot start \(process.executableURL?.path ?? deflectBinary): \(ReadableError.reason(error))")
            }
            state.process = process
            state.pid = process.processIdentifier
            state.phase = .running
            try? AtomicFile.write(Array("\(state.pid)\n".utf8), to: state.bundle.pidFile)
            return state.pid
        }
        var event = Containerd_Task_V2_TaskStart()
        event.containerID = request.id
        event.pid = UInt32(pid)
        publish("/tasks/start", event)
        var response = Containerd_Task_V2_StartResponse()
        response.pid = UInt32(pid)
        return response
    }

    func wait(_ request: Containerd_Task_V2_WaitRequest) throws -> Containerd_Task_V2_WaitResponse {
        try state.withLock { try check(request.id, request.execID, in: $0) }
        exited.lock()
        defer { exited.unlock() }
        while true {
            let (phase, status, at) = state.withLock { ($0.phase, $0.exitStatus, $0.exitedAt) }
            if phase == .stopped {
                var response = Containerd_Task_V2_WaitResponse()
                response.exitStatus = status
                response.exitedAt = Google_Protobuf_Timestamp(date: at ?? Date())
                return response
            }
            exited.wait()
        }
    }

    func stateOf(_ request: Containerd_Task_V2_StateRequest) throws -> Containerd_Task_V2_StateResponse {
        try state.withLock { state in
            try check(request.id, request.execID, in: state)
            var response = Containerd_Task_V2_StateResponse()
            response.id = state.id
            response.bundle = state.bundle.path
            response.pid = UInt32(state.pid)
            response.status = switch state.phase {
            case .none: .unknown
            case .created: .created
            case .running: .running
            case .paused: .paused
            case .stopped: .stopped
            }
            response.stdin = state.stdin
            response.stdout = state.stdout
            response.stderr = state.stderr
            response.exitStatus = state.exitStatus
            if let at = state.exitedAt { response.exitedAt = Google_Protobuf_Timestamp(date: at) }
            return response
        }
    }

    func kill(_ request: Containerd_Task_V2_KillRequest) throws -> Google_Protobuf_Empty {
        let (phase, pid, sandbox) = try state.withLock { state in
            try check(request.id, request.execID, in: state)
            return (state.phase, state.pid, state.role.isSandbox)
        }
        switch phase {
        case .none, .stopped:
            throw TTRPCError(.notFound, "task \(request.id): process already finished")
        case .created:
            // Nothing runs yet: the task ends as if the signal had killed it.
            stop(status: 128 + request.signal)
        case .running, .paused:
            if sandbox {
                // Right after Start the placeholder may not catch SIGTERM yet (it would die of it, not exit 0).
                SandboxPlaceholder.waitUntilCatching(pid: pid, signal: Int32(request.signal), limit: 2)
            } else if request.signal == UInt32(SIGTERM), shutDownThroughAPI() {
                break
            }
            guard Foundation.kill(pid, Int32(request.signal)) == 0 else {
                throw TTRPCError(.notFound, "task \(request.id): cannot signal pid \(pid): \(String(cString: strerror(errno)))")
            }
        }
        return Google_Protobuf_Empty()
    }

    func pause(_ request: Containerd_Task_V2_PauseRequest) throws -> Google_Protobuf_Empty {
        try changeRunState(request.id, from: .running, to: .paused, command: "pause")
        var event = Containerd_Task_V2_TaskPaused()
        event.containerID = request.id
        publish("/tasks/paused", event)
        return Google_Protobuf_Empty()
    }

    func resume(_ request: Containerd_Task_V2_ResumeRequest) throws -> Google_Protobuf_Empty {
        try changeRunState(request.id, from: .paused, to: .running, command: "resume")
        var event = Containerd_Task_V2_TaskResumed()
        event.containerID = request.id
        publish("/tasks/resumed", event)
        return Google_Protobuf_Empty()
    }

    func delete(_ request: Containerd_Task_V2_DeleteRequest) throws -> Containerd_Task_V2_DeleteResponse {
        let response = try state.withLock { state in
            try check(request.id, request.execID, in: state)
            guard state.phase == .stopped || state.phase == .created else {
                throw TTRPCError(.failedPrecondition, "task \(state.id) is still running: kill it first")
            }
            var response = Containerd_Task_V2_DeleteResponse()
            response.pid = UInt32(state.pid)
            response.exitStatus = state.exitStatus
            response.exitedAt = Google_Protobuf_Timestamp(date: state.exitedAt ?? Date())
            try? FileManager.default.removeItem(atPath: state.bundle.apiSocket)
            try? FileManager.default.removeItem(atPath: state.bundle.pidFile)
            if state.rootfsMounted {
                RootfsMounts.unmountAll(state.bundle.rootfsMountPoint)
                state.rootfsMounted = false
            }
            Self.disconnect(&state)
            return response
        }
        stop(status: response.exitStatus)   // wakes a Wait on a task deleted before it started
        var event = Containerd_Task_V2_TaskDelete()
        event.containerID = request.id
        event.pid = response.pid
        event.exitStatus = response.exitStatus
        event.exitedAt = response.exitedAt
        publish("/tasks/delete", event)
        return response
    }

    func pids(_ request: Containerd_Task_V2_PidsRequest) throws -> Containerd_Task_V2_PidsResponse {
        try state.withLock { state in
            try check(request.id, "", in: state)
            var response = Containerd_Task_V2_PidsResponse()
            if state.pid > 0 {
                var info = Containerd_Task_V2_ProcessInfo()
                info.pid = UInt32(state.pid)
                response.processes = [info]
            }
            return response
        }
    }

    func connect(_ request: Containerd_Task_V2_ConnectRequest) throws -> Containerd_Task_V2_ConnectResponse {
        var response = Containerd_Task_V2_ConnectResponse()
        response.shimPid = UInt32(getpid())
        response.taskPid = UInt32(state.withLock { $0.pid })
        response.version = "deflect"
        return response
    }

    /// The VM process's usage as cgroup v2 metrics (see TaskMetrics).
    func stats(_ request: Containerd_Task_V2_StatsRequest) throws -> Containerd_Task_V2_StatsResponse {
        let pid = try runningPid(request.id)
        guard let usage = ProcessUsage.of(pid: pid) else { throw TTRPCError(.notFound, "task \(request.id): process \(pid) has gone") }
        var response = Containerd_Task_V2_StatsResponse()
        response.stats = try TaskMetrics.any(TaskMetrics.metrics(usage, ticksPerSecond: UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))))
        return response
    }

    /// A Deflect snapshot of the running VM in the request's directory
    /// (`deflect.snap` and the memory file it names, for `deflect restore`): the VM
    /// pauses at a consistent point, is written, then runs on — stays paused
    /// if it was paused (containerd's client pauses around a checkpoint), or
    /// stops when the options ask for `exit`.
    func checkpoint(_ request: Containerd_Task_V2_CheckpointTaskRequest) throws -> Google_Protobuf_Empty {
        _ = try runningPid(request.id)
        guard !state.withLock({ $0.role.isSandbox }) else {
            throw TTRPCError(.unimplemented, "task \(request.id) is a pod sandbox: it has no VM to checkpoint")
        }
        let exit = try Self.checkpointExits(request.options)
        guard request.path.hasPrefix("/") else { throw TTRPCError(.invalidArgument, "checkpoint path '\(request.path)' is not absolute") }
        do {
            try FileManager.default.createDirectory(atPath: request.path, withIntermediateDirectories: true)
        } catch {
            throw TTRPCError(.invalidArgument, "cannot create \(request.path): \(ReadableError.reason(error))")
        }
        let paused = state.withLock { $0.phase == .paused }
        let then = exit ? "stop" : paused ? "pause" : "resume"
        try control(["snapshot", (request.path as NSString).appendingPathComponent(Self.checkpointFile), "--then", then])
        return Google_Protobuf_Empty()
    }

    /// The snapshot's state file in a checkpoint directory (it names its memory file beside it).
    public static let checkpointFile = "deflect.snap"

    /// Whether the checkpoint options ask the task to end (runc's CheckpointOptions.exit).
    static func checkpointExits(_ options: Google_Protobuf_Any) throws -> Bool {
        guard !options.typeURL.isEmpty else { return false }
        guard options.typeURL.hasSuffix(Containerd_Runc_V1_CheckpointOptions.protoMessageName) else {
            throw TTRPCError(.invalidArgument, "checkpoint options of type \(options.typeURL) are not understood")
        }
        do {
            return try Containerd_Runc_V1_CheckpointOptions(serializedBytes: options.value).exit
        } catch {
            throw TTRPCError(.invalidArgument, "checkpoint options: \(ReadableError.reason(error))")
        }
    }

    func shutdown(_ request: Containerd_Task_V2_ShutdownRequest) throws -> Google_Protobuf_Empty {
        let running = state.withLock { $0.phase == .running || $0.phase == .paused }
        // A shim with a live VM stays (containerd asks again after Delete), unless told now.
        if !running || request.now {
            events.flush()
            onShutdown()
        }
        return Google_Protobuf_Empty()
    }

    /// Create's second half, once the root filesystem is in place: deflect.json, then the task.
    private func commitCreate(_ request: Containerd_Task_V2_CreateTaskRequest, bundle: TaskBundle, spec: BundleSpec,
                              role: PodRole, mounted: Bool) throws {
        var description: VMDescription?
        if !role.isSandbox {
            do {
                description = try VMDescription.load(rootfs: bundle.rootfs(of: spec), network: spec.networkNamespace)
            } catch {
                throw TTRPCError(.invalidArgument, error.description)
            }
        }
        try state.withLock { state in
            guard state.phase == .none else { throw TTRPCError(.alreadyExists, "task \(state.id) already exists in this shim") }
            state.phase = .created
            state.id = request.id
            state.bundle = bundle
            state.rootfsMounted = mounted
            state.stdin = request.stdin
            state.stdout = request.stdout
            state.stderr = request.stderr
            state.description = description
            state.role = role
        }
    }

    // MARK: - Helpers

    private func check(_ id: String, _ execID: String, in state: State) throws {
        guard state.phase != .none, id == state.id else { throw TTRPCError(.notFound, "task \(id) not found in this shim") }
        guard execID.isEmpty else { throw TTRPCError(.notFound, "exec \(execID) not found: a VM task has no exec processes") }
    }

    /// The VM's pid while the task runs or is paused.
    private func runningPid(_ id: String) throws -> Int32 {
        try state.withLock { state in
            try check(id, "", in: state)
            guard state.phase == .running || state.phase == .paused else { throw TTRPCError(.failedPrecondition, "task \(id) is not running") }
            return state.pid
        }
    }

    private func openOutput(_ path: String) throws -> FileHandle {
        guard !path.isEmpty else { return FileHandle.nullDevice }
        // O_RDWR: opening a FIFO never blocks, whether or not its reader is there yet.
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw TTRPCError(.invalidArgument, "cannot open \(path): \(String(cString: strerror(errno)))") }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// The VM process ended: its status as `deflect run`'s, or 128 + signal.
    private func exited(_ process: Process) {
        let status = process.terminationReason == .uncaughtSignal
            ? 128 + UInt32(process.terminationStatus) : UInt32(process.terminationStatus)
        let (id, pid) = state.withLock { ($0.id, $0.pid) }
        stop(status: status)
        var event = Containerd_Task_V2_TaskExit()
        event.containerID = id
        event.id = id
        event.pid = UInt32(pid)
        event.exitStatus = status
        event.exitedAt = Google_Protobuf_Timestamp(date: Date())
        publish("/tasks/exit", event)
    }

    private func stop(status: UInt32) {
        state.withLock { state in
            guard state.phase != .stopped else { return }
            state.phase = .stopped
            state.exitStatus = status
            state.exitedAt = Date()
            state.process = nil
            Self.closeLifeline(&state)
        }
        exited.lock()
        exited.broadcast()
        exited.unlock()
    }

    /// Connects the pod's network for the VM, recorded in the bundle for a `delete` after a lost shim.
    private func connect(_ net: VMDescription.Net, for state: inout State) throws -> PodNetwork {
        let network: PodNetwork
        do throws(PodNetworkError) {
            network = try PodNetwork.connect(namespace: net.namespace, interface: net.interface, mac: net.mac)
        } catch {
            throw TTRPCError(.failedPrecondition, "cannot connect the pod's network: \(error.description)")
        }
        state.network = network
        if let record = try? JSONEncoder().encode(network) { try? AtomicFile.write(Array(record), to: state.bundle.podNetworkFile) }
        return network
    }

    /// Removes what `connect` made; what cannot be removed goes to the shim's log.
    private static func disconnect(_ state: inout State) {
        guard let network = state.network else { return }
        if let problem = network.disconnect() {
            FileHandle.standardError.write(Data("deflect shim: task \(state.id): the pod's network was not all removed: \(problem)\n".utf8))
        }
        state.network = nil
        unlink(state.bundle.podNetworkFile)
    }

    private static func closeLifeline(_ state: inout State) {
        if state.lifeline >= 0 { close(state.lifeline) }
        state.lifeline = -1
    }

    /// A VM through its control API; a sandbox's placeholder with SIGSTOP/SIGCONT.
    private func changeRunState(_ id: String, from: Phase, to: Phase, command: String) throws {
        let (sandbox, pid) = try state.withLock { state in
            try check(id, "", in: state)
            guard state.phase == from else { throw TTRPCError(.failedPrecondition, "task \(id) is not \(from == .running ? "running" : "paused")") }
            return (state.role.isSandbox, state.pid)
        }
        if sandbox {
            guard Foundation.kill(pid, to == .paused ? SIGSTOP : SIGCONT) == 0 else {
                throw TTRPCError(.failedPrecondition, "task \(id): cannot \(command) pid \(pid): \(String(cString: strerror(errno)))")
            }
        } else {
            try control([command])
        }
        state.withLock { if $0.phase == from { $0.phase = to } }
    }

    /// A clean stop through the control API. Right after Start the API may not
    /// serve yet (a SIGTERM then could end Deflect before its handler is in
    /// place), so this retries for up to 5 s while the VM runs.
    private func shutDownThroughAPI() -> Bool {
        let deadline = Date().addingTimeInterval(5)
        repeat {
            if (try? control(["shutdown"], untilStopped: true)) != nil { return true }
            if state.withLock({ $0.phase == .stopped }) { return true }
            Thread.sleep(forTimeInterval: 0.05)
        } while Date() < deadline
        return false
    }

    /// Runs `deflect ctl --socket API COMMAND...`; its error line becomes the call's error.
    /// `untilStopped`: done as soon as the VM has ended, even if `deflect ctl` has not yet.
    private func control(_ command: [String], untilStopped: Bool = false) throws {
        let socket = state.withLock { $0.bundle.apiSocket }
        let name = command.first ?? ""
        let process = Process()
        process.executableURL = URL(fileURLWithPath: deflectBinary)
        process.arguments = ["ctl", "--socket", socket] + command
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw TTRPCError(.internal, "cannot run \(deflectBinary) ctl: \(ReadableError.reason(error))") }
        if untilStopped {
            // A Kill answers once the VM has stopped: containerd, told of the exit,
            // deletes the task and closes its connection to this shim, failing a
            // Kill still waiting for `deflect ctl` to end ("ttrpc: closed").
            while process.isRunning {
                if state.withLock({ $0.phase == .stopped }) { return }
                usleep(5_000)
            }
        }
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let line = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw TTRPCError(.failedPrecondition, "deflect ctl \(name): \(line.isEmpty ? "status \(process.terminationStatus)" : line)")
        }
    }

    private func publish(_ topic: String, _ event: some SwiftProtobuf.Message) { events.publish(topic: topic, event) }
}
