// ContainerdShim: the shim binary's actions. `start` launches the long-running
// shim (`serve`, a new session with no tie to containerd's pipes), waits until
// its ttrpc socket answers, prints the socket's address and exits; `delete`
// cleans up after a shim containerd lost (kills the VM, unmounts the root
// filesystem, disconnects the pod's network, prints a DeleteResponse); `serve` is the ttrpc server itself;
// `pause` (hidden) holds a pod's sandbox (SandboxPlaceholder).
import Foundation
import KVM
import SwiftProtobuf
import TTRPC

/// `start` could not bring up the long-running shim.
public struct ShimStartError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

public enum ShimCommands {
    /// The ttrpc socket for this (containerd, namespace, id): a short path,
    /// since sun_path holds at most 107 bytes.
    public static func socketPath(for arguments: ShimArguments) -> String {
        ShortSocketPath.path(in: ShortSocketPath.shimDirectory, key: "\(arguments.address)|\(arguments.namespace)|\(arguments.id)")
    }

    /// The `deflect` binary: $DEFLECT_BINARY, else beside this shim, else on PATH.
    public static func deflectBinary() -> String {
        if let explicit = ProcessInfo.processInfo.environment["DEFLECT_BINARY"], !explicit.isEmpty { return explicit }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("deflect").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/deflect"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "deflect"
    }

    /// This shim's own binary (it serves the socket, and holds a pod sandbox as its `pause` action).
    public static func shimBinary() -> String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    }

    /// `start`: prints `unix://SOCKET` once the new shim answers on it.
    public static func start(_ arguments: ShimArguments) throws -> String {
        let socket = socketPath(for: arguments)
        try ShortSocketPath.makePrivateDirectory((socket as NSString).deletingLastPathComponent)
        let bundle = FileManager.default.currentDirectoryPath
        let server = Process()
        server.executableURL = URL(fileURLWithPath: shimBinary())
        server.arguments = ["-namespace", arguments.namespace, "-id", arguments.id, "-address", arguments.address,
                            "-publish-binary", arguments.publishBinary, "-bundle", bundle, "-socket", socket, "serve"]
        server.standardInput = FileHandle.nullDevice
        server.standardOutput = FileHandle.nullDevice
        server.standardError = logHandle(bundle: bundle)
        unlink(socket)
        try server.run()
        // Ready when a connection succeeds; give up if the server died or after 10 s.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let fd = try? UnixSocket.connect(path: socket) {
                close(fd)
                let address = "unix://" + socket
                try? AtomicFile.write(Array(address.utf8), to: TaskBundle(path: bundle).addressFile)
                return address
            }
            guard server.isRunning else { throw ShimStartError(description: "the shim server exited with status \(server.terminationStatus) before serving \(socket)") }
            usleep(10_000)
        }
        kill(server.processIdentifier, SIGKILL)
        throw ShimStartError(description: "the shim server did not serve \(socket) within 10 s")
    }

    /// containerd's shim log FIFO in the bundle (it reads it into its own log), else /dev/null.
    private static func logHandle(bundle: String) -> FileHandle {
        let fd = open(TaskBundle(path: bundle).file("log"), O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        return fd >= 0 ? FileHandle(fileDescriptor: fd, closeOnDealloc: true) : FileHandle.nullDevice
    }

    /// `delete`: ends a VM a lost shim left behind and answers as the Delete call would.
    public static func delete(_ arguments: ShimArguments) throws -> [UInt8] {
        let bundle = TaskBundle(path: arguments.bundle.isEmpty ? FileManager.default.currentDirectoryPath : arguments.bundle)
        var response = Containerd_Task_V2_DeleteResponse()
        if let text = try? String(contentsOfFile: bundle.pidFile, encoding: .utf8),
           let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, runsVM(pid, apiSocket: bundle.apiSocket) {
            kill(pid, SIGKILL)
            response.pid = UInt32(pid)
            waitUntilGone(pid)
        }
        // The root filesystem Create mounted from the snapshotter's layers, as the runc shim's delete does.
        RootfsMounts.unmountAll(bundle.rootfsMountPoint)
        // The pod network Start connected for the VM (the TAP and the filters in the pod's namespace).
        if let record = FileManager.default.contents(atPath: bundle.podNetworkFile),
           let network = try? JSONDecoder().decode(PodNetwork.self, from: record) {
            network.disconnect()
        }
        response.exitStatus = 128 + UInt32(SIGKILL)
        response.exitedAt = Google_Protobuf_Timestamp(date: Date())
        for file in [bundle.apiSocket, bundle.pidFile, bundle.podNetworkFile, socketPath(for: arguments)] { unlink(file) }
        return try response.serializedBytes()
    }

    /// Waits up to 2 s for a killed process to vanish (it no longer holds the root filesystem).
    private static func waitUntilGone(_ pid: Int32) {
        for _ in 0..<200 where Foundation.kill(pid, 0) == 0 && !isZombie(pid) { usleep(10_000) }
    }

    private static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }

    /// Whether `pid` still runs this bundle's VM (its command line names the
    /// bundle's API socket), so a recycled pid is left alone.
    private static func runsVM(_ pid: Int32, apiSocket: String) -> Bool {
        guard let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
        return command.split(separator: "\0").contains { $0 == apiSocket }
    }

    /// `serve`: the ttrpc server, until Shutdown.
    public static func serve(_ arguments: ShimArguments) throws -> Never {
        _ = setsid()
        signal(SIGPIPE, SIG_IGN)
        let listener = try UnixSocket.listen(path: arguments.socket)
        let registry = TTRPCServiceRegistry()
        let events = EventPublisher(address: ProcessInfo.processInfo.environment["TTRPC_ADDRESS"], namespace: arguments.namespace)
        let socket = arguments.socket
        let done = DispatchSemaphore(value: 0)
        let service = TaskService(deflectBinary: deflectBinary(), events: events) { done.signal() }
        service.register(in: registry)
        let server = TTRPCServer(listener: listener, registry: registry)
        try server.start()
        done.wait()
        // Answer every call still running (the Shutdown itself, a Kill whose
        // VM stop let containerd ask for this Shutdown) before leaving.
        usleep(20_000)
        server.waitUntilAnswered(limit: 10)
        server.stop()
        unlink(socket)
        exit(0)
    }
}
