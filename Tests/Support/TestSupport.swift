// DeflectTestSupport: what the test targets share: whether /dev/kvm is usable
// here (and why not), the guest images, built once by the project's own
// Makefile with the GNU toolchain, and a file this process may not read.
import Foundation
import KVM

/// Whether KVM-backed tests can run on this machine.
public enum KVMAvailability {
    /// nil when /dev/kvm opens and answers KVM_GET_API_VERSION with 12; otherwise why not.
    public static let unusableReason: String? = {
        do {
            _ = try KVMSystem()
            return nil
        } catch {
            return "/dev/kvm is not usable here (\(error)): KVM test skipped"
        }
    }()

    public static var usable: Bool { unusableReason == nil }

    /// The comment Swift Testing prints for each skipped test.
    public static var skipComment: String { unusableReason ?? "" }

    /// KVM_CHECK_EXTENSION's answer for `capability` on the system fd; 0 when
    /// KVM is not usable here. For `.enabled(if:)` conditions, so a test that
    /// needs a capability is reported as skipped instead of passing unrun.
    public static func capabilityValue(_ capability: Capability) -> Int32 {
        guard let system = try? KVMSystem() else { return 0 }
        return (try? system.check(capability)) ?? 0
    }

    public static func supports(_ capability: Capability) -> Bool { capabilityValue(capability) > 0 }

    /// The skip comment of a test that needs `capability`.
    public static func missing(_ capability: Capability) -> String {
        "\(capability.name) is not available on this host: test skipped"
    }
}

public struct GuestBuildError: Error, CustomStringConvertible {
    public let description: String
}

/// The repository's guest programs, built on first use.
public enum GuestImages {
    /// Repository root, from this file's location (Tests/Support/TestSupport.swift).
    public static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private static let build: Result<URL, GuestBuildError> = {
        let guests = repositoryRoot.appendingPathComponent("Guests")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["make", "-s", "-C", guests.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return .failure(GuestBuildError(description: "cannot run make for the guests: \(error)"))
        }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return .failure(GuestBuildError(description: "building the guests failed:\n" + String(decoding: output, as: UTF8.self)))
        }
        return .success(guests.appendingPathComponent("build"))
    }()

    /// A product of this package (`deflect`, `containerd-shim-deflect-v1`):
    /// beside the test bundle, else in .build/debug.
    public static func builtProduct(_ name: String) -> String {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return repositoryRoot.appendingPathComponent(".build/debug/\(name)").path
    }

    /// Path of a built guest, e.g. `path("real/hello.bin")`.
    public static func path(_ name: String) throws -> String {
        let directory = try build.get()
        let url = directory.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw GuestBuildError(description: "guest \(name) was not built (is its source in Guests/?)")
        }
        return url.path
    }

    /// Bytes of a built guest.
    public static func bytes(_ name: String) throws -> [UInt8] {
        let path = try path(name)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GuestBuildError(description: "cannot read \(path)")
        }
        return [UInt8](data)
    }
}

/// A Unix socket bound at `path` (a socket node on disk), closed on deinit.
public final class UnixListener {
    public let fd: CInt

    public init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            let code = POSIXErrorCode(rawValue: errno) ?? .EIO
            close(fd)
            throw POSIXError(code)
        }
    }

    deinit { close(fd) }
}
