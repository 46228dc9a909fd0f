// AtomicFile.swift — how snapshot files reach the disk and come back: a
// write that either replaces the file at a path with complete, synced bytes
// or leaves what was there untouched (temporary file in the same directory,
// write, fsync, rename, fsync of the directory), and a read bounded in size.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A failed file operation: which step, on which path, and the OS's reason.
public struct SnapshotIOError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var reason: String

    public init(operation: String, path: String, reason: String) {
        self.operation = operation
        self.path = path
        self.reason = reason
    }

    public var description: String { "cannot \(operation) '\(path)': \(reason)" }
}

public enum AtomicFile {
    /// Steps of `write`, for tests that make one fail.
    enum Step: Sendable { case write, sync, rename }

    /// Replaces `path` with `bytes` atomically. Until the rename, a crash
    /// (even `kill -9`) or an error leaves the previous file as it was and
    /// the temporary file is removed on every error path this process sees.
    /// Only a failure of the final directory fsync is reported after the new
    /// file is in place (its name may then not survive a power loss).
    public static func write(_ bytes: [UInt8], to path: String) throws(SnapshotIOError) {
        try write(bytes, to: path, failing: nil)
    }

    static func write(_ bytes: [UInt8], to path: String, failing failedStep: Step?) throws(SnapshotIOError) {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = "\(directory)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw error("create", temporary) }
        var installed = false
        defer { if !installed { unlink(temporary) } }
        do {
            defer { close(fd) }
            if failedStep == .write { throw injected("write", temporary) }
            do {
                try FileHandle(fileDescriptor: fd, closeOnDealloc: false).write(contentsOf: Data(bytes))
            } catch {
                throw SnapshotIOError(operation: "write", path: temporary, reason: "\(error.localizedDescription)")
            }
            if failedStep == .sync { throw injected("fsync", temporary) }
            guard fsync(fd) == 0 else { throw error("fsync", temporary) }
        }
        if failedStep == .rename { throw injected("rename onto", path) }
        guard rename(temporary, path) == 0 else { throw error("rename onto", path) }
        installed = true

        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw error("open directory", directory) }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw error("fsync directory", directory) }
    }

    /// Reads the file at `path`; files longer than `limit` bytes are refused
    /// before more than `limit + 1` bytes are read.
    public static func read(_ path: String, limit: Int) throws(SnapshotIOError) -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw error("open", path) }
        defer { try? handle.close() }
        let data: Data?
        do {
            data = try handle.read(upToCount: limit + 1)
        } catch {
            throw SnapshotIOError(operation: "read", path: path, reason: error.localizedDescription)
        }
        let bytes = [UInt8](data ?? Data())
        guard bytes.count <= limit else {
            throw SnapshotIOError(operation: "read", path: path, reason: "larger than the limit of \(limit) bytes")
        }
        return bytes
    }

    private static func error(_ operation: String, _ path: String) -> SnapshotIOError {
        SnapshotIOError(operation: operation, path: path, reason: String(cString: strerror(errno)))
    }

    private static func injected(_ operation: String, _ path: String) -> SnapshotIOError {
        SnapshotIOError(operation: operation, path: path, reason: "injected failure")
    }
}
