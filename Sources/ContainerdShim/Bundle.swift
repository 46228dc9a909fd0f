// ContainerdShim: the OCI bundle containerd hands a task — what the shim reads
// of its config.json (root.path, the CRI's annotations that mark a pod's
// sandbox, the network namespace CNI set up) — and the files the shim keeps
// for it (the VM's API socket, the VM's pid and the pod network it took
// over for `delete`, the mount point of the snapshotter's layers).
import Foundation
import ReadableErrors

public struct TaskBundle: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// The VM's control API socket: not in the bundle, whose path can be too
    /// long for a socket (see ShortSocketPath), but named by the bundle's path,
    /// which is unique for each containerd, namespace and task.
    public var apiSocket: String { ShortSocketPath.path(in: ShortSocketPath.apiDirectory, key: path) }
    public var pidFile: String { file("deflect-vm.pid") }
    public var addressFile: String { file("address") }
    /// The pod network Start connected to the VM (PodNetwork), for a `delete` after a lost shim.
    public var podNetworkFile: String { file("deflect-net.json") }
    /// Where the snapshotter's mounts go (the runc shim's place; containerd's spec names it as root.path).
    public var rootfsMountPoint: String { file("rootfs") }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// What the shim needs of config.json; a bundle without one is an empty spec.
    public func spec() throws(TaskBundleError) -> BundleSpec {
        let configPath = file("config.json")
        guard let data = FileManager.default.contents(atPath: configPath) else { return BundleSpec() }
        do {
            return try JSONDecoder().decode(BundleSpec.self, from: data)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
                let DecodingError.keyNotFound(_, context), let DecodingError.dataCorrupted(context) {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw TaskBundleError(description: "\(configPath): \(field.isEmpty ? "" : field + ": ")\(context.debugDescription)")
        } catch {
            throw TaskBundleError(description: "\(configPath): \(ReadableError.reason(error))")
        }
    }

    /// The root filesystem: config.json's root.path (default "rootfs").
    public func rootfs(of spec: BundleSpec) -> String {
        let root = spec.root?.path.flatMap { $0.isEmpty ? nil : $0 } ?? "rootfs"
        return root.hasPrefix("/") ? root : file(root)
    }
}

/// The few fields of an OCI runtime spec (config.json) the shim reads; the rest is ignored.
public struct BundleSpec: Decodable, Sendable {
    public struct Root: Decodable, Sendable {
        public var path: String?
    }

    public struct Linux: Decodable, Sendable {
        public var namespaces: [Namespace]?
    }

    public struct Namespace: Decodable, Sendable {
        public var type: String
        public var path: String?
    }

    public var root: Root?
    public var annotations: [String: String]?
    public var linux: Linux?

    public init(root: Root? = nil, annotations: [String: String]? = nil, linux: Linux? = nil) {
        self.root = root
        self.annotations = annotations
        self.linux = linux
    }

    /// The task's network namespace (`linux.namespaces`, type `network`).
    public var networkNamespace: TaskNetworkNamespace {
        guard let entry = linux?.namespaces?.last(where: { $0.type == "network" }) else { return .host }
        guard let path = entry.path, !path.isEmpty else { return .new }
        return .path(path)
    }
}

/// Where a task's network is, as its OCI spec says.
public enum TaskNetworkNamespace: Equatable, Sendable {
    /// No `network` namespace entry: the runtime's own, the host's (a host-network pod).
    case host
    /// An entry without a path: a new, empty namespace (no pod network in it).
    case new
    /// A namespace that exists (the CRI's `/var/run/netns/cni-…`, set up by CNI).
    case path(String)
}

/// The part a task plays in a Kubernetes pod, from the annotations the CRI
/// plugin (containerd 1.6/1.7, pkg/cri/annotations) puts on every container it creates.
public enum PodRole: Equatable, Sendable {
    /// Not created by the CRI (ctr, Nomad, …): a VM task.
    case none
    /// The pod's sandbox ("pause") container: held by a placeholder process, no VM.
    case sandbox(id: String)
    /// An application container of the pod: a VM task.
    case container(sandboxID: String)

    static let containerTypeKey = "io.kubernetes.cri.container-type"
    static let sandboxIDKey = "io.kubernetes.cri.sandbox-id"

    public init(annotations: [String: String]) throws(TaskBundleError) {
        let sandboxID = annotations[Self.sandboxIDKey] ?? ""
        switch annotations[Self.containerTypeKey] {
        case nil: self = .none
        case "sandbox": self = .sandbox(id: sandboxID)
        case "container": self = .container(sandboxID: sandboxID)
        case let other?:
            throw TaskBundleError(description: "annotation \(Self.containerTypeKey): '\(other)' is neither 'sandbox' nor 'container'")
        }
    }

    public var isSandbox: Bool {
        if case .sandbox = self { return true }
        return false
    }
}

public struct TaskBundleError: Error, CustomStringConvertible, Sendable {
    public let description: String
}
