// ContainerdShim: where the shim's Unix sockets live. A socket path holds at
// most 107 bytes (sun_path), and containerd's bundle paths do not fit: under
// the CRI a bundle is STATE/io.containerd.runtime.v2.task/k8s.io/<64 hex id>.
// So each socket is named by a 64-bit hash of what identifies it, in a
// directory of mode 0700 under /run (or the temporary directory where /run is
// not writable): always short, never shared between two tasks.
import Foundation

public enum ShortSocketPath {
    /// The directory for the shim's ttrpc sockets.
    static var shimDirectory: String { base("deflect-shim") }
    /// The directory for the VMs' control API sockets.
    static var apiDirectory: String { base("deflect") }

    /// `directory/<hash of key>.sock`.
    static func path(in directory: String, key: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325   // FNV-1a, 64-bit
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return directory + "/" + String(hash, radix: 16) + ".sock"
    }

    private static func base(_ name: String) -> String {
        if access("/run", W_OK) == 0 { return "/run/" + name }
        return (NSTemporaryDirectory() as NSString).appendingPathComponent("\(name)-\(geteuid())")
    }

    /// Creates `directory` with mode 0700, or checks the one that is there:
    /// a directory (not a link to one) of this user, narrowed to 0700.
    static func makePrivateDirectory(_ directory: String) throws(ShortSocketPathError) {
        if mkdir(directory, 0o700) == 0 || errno == EEXIST {
            var status = stat()
            guard lstat(directory, &status) == 0 else { throw ShortSocketPathError(directory, "lstat", errno) }
            guard (status.st_mode & S_IFMT) == S_IFDIR, status.st_uid == geteuid() else {
                throw ShortSocketPathError(description: "\(directory) for the sockets is not a directory of user \(geteuid())")
            }
            guard status.st_mode & 0o077 == 0 || chmod(directory, 0o700) == 0 else { throw ShortSocketPathError(directory, "chmod", errno) }
            return
        }
        throw ShortSocketPathError(directory, "mkdir", errno)
    }
}

public struct ShortSocketPathError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(description: String) { self.description = description }

    init(_ directory: String, _ call: String, _ code: Int32) {
        description = "\(directory) for the sockets: \(call) failed: \(String(cString: strerror(code)))"
    }
}
