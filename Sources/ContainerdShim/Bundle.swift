// ContainerdShim: the OCI bundle containerd hands a task — where its root
// filesystem is (config.json's root.path, relative to the bundle) — and the
// files the shim keeps in it (the VM's API socket, the VM's pid for `delete`,
// the mount point of the snapshotter's layers).
import Foundation

public struct TaskBundle: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var apiSocket: String { file("deflect-api.sock") }
    public var pidFile: String { file("deflect-vm.pid") }
    public var addressFile: String { file("address") }
    /// Where the snapshotter's mounts go (the runc shim's place; containerd's spec names it as root.path).
    public var rootfsMountPoint: String { file("rootfs") }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// The root filesystem: config.json's root.path (default "rootfs").
    public func rootfs() throws(TaskBundleError) -> String {
        let configPath = file("config.json")
        var root = "rootfs"
        if let data = FileManager.default.contents(atPath: configPath) {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw TaskBundleError(description: "\(configPath) is not a JSON object")
            }
            if let rootObject = object["root"] as? [String: Any], let path = rootObject["path"] as? String, !path.isEmpty {
                root = path
            }
        }
        return root.hasPrefix("/") ? root : file(root)
    }
}

public struct TaskBundleError: Error, CustomStringConvertible, Sendable {
    public let description: String
}
