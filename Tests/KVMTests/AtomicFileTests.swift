// KVMTests: the one atomic writer (`AtomicFile`, `PendingFile`), bounded
// reads that refuse anything but a regular file without blocking, and the
// snapshot lock (`FileLock`): a failed write leaves the previous file and
// no temporary, a non-regular target is refused before anything is
// created, a held lock refuses a second writer.
import DeflectTestSupport
import Foundation
import Glibc
@testable import KVM
import Testing

@Suite struct AtomicFileTests {
    func scratchDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("deflect-atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func contents(_ directory: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
    }

    @Test func writeReplacesAndReadsBack() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("vm.snap").path
        try AtomicFile.write([1, 2, 3], to: path)
        try AtomicFile.write([4, 5], to: path)
        #expect(try AtomicFile.read(path, limit: 16) == [4, 5])
        #expect(try contents(directory) == ["vm.snap"])
        #expect(throws: FileError.self) { try AtomicFile.read(path, limit: 1) }
    }

    @Test(arguments: [AtomicFile.Step.write, .sync, .rename])
    func injectedFailureKeepsThePreviousFile(step: AtomicFile.Step) throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("vm.snap").path
        try AtomicFile.write([1, 2, 3], to: path)
        #expect(throws: FileError.self) { try AtomicFile.write([9, 9, 9, 9], to: path, failing: step) }
        #expect(try AtomicFile.read(path, limit: 16) == [1, 2, 3])
        #expect(try contents(directory) == ["vm.snap"])
    }

    /// A directory, a FIFO, a socket and a device are refused before any
    /// file is created, and stay what they were.
    @Test func aTargetThatIsNotARegularFileIsRefused() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let taken = directory.appendingPathComponent("taken").path, fifo = directory.appendingPathComponent("fifo").path
        let socketPath = directory.appendingPathComponent("sock").path
        try FileManager.default.createDirectory(atPath: taken, withIntermediateDirectories: false)
        #expect(mkfifo(fifo, 0o600) == 0)
        let socket = try UnixListener(path: socketPath)
        for (path, kind) in [(taken, "a directory"), (fifo, "a FIFO"), (socketPath, "a socket"), ("/dev/null", "a character device")] {
            let error = #expect(throws: FileError.self) { try AtomicFile.write([1], to: path) }
            #expect(error?.description == "cannot write \(path): it is \(kind); only a regular file is replaced")
        }
        #expect(try contents(directory) == ["fifo", "sock", "taken"])
        #expect(FileKind.of(fifo) == .fifo && FileKind.of(taken) == .directory && FileKind.of("/dev/null") == .characterDevice)
        _ = socket
    }

    /// Reading a FIFO nobody writes to returns at once with an error (a
    /// blocking open would wait for a writer forever).
    @Test(.timeLimit(.minutes(1))) func readingAFIFOIsRefusedWithoutBlocking() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let fifo = directory.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let began = Date()
        let error = #expect(throws: FileError.self) { try AtomicFile.read(fifo, limit: 16) }
        #expect(error?.description == "cannot read \(fifo): it is a FIFO, not a regular file")
        #expect(Date().timeIntervalSince(began) < 5)
        let directoryError = #expect(throws: FileError.self) { try AtomicFile.read(directory.path, limit: 16) }
        #expect(directoryError?.description == "cannot read \(directory.path): it is a directory, not a regular file")
    }

    @Test func parentIsAFile() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("plain")
        _ = FileManager.default.createFile(atPath: file.path, contents: Data([5]))
        let error = #expect(throws: FileError.self) { try AtomicFile.write([1], to: file.appendingPathComponent("x").path) }
        #expect(error?.description.contains("Not a directory") == true)
        #expect(try AtomicFile.read(file.path, limit: 4) == [5])
    }

    /// A pending file is invisible until installed, gone when dropped, and
    /// installing under a name that exists without `replacing` fails.
    @Test func aPendingFileIsInvisibleUntilInstalled() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            let dropped = try PendingFile(in: directory.path, hint: "a")
            try dropped.write([1, 2])
            // An O_TMPFILE has no name; without O_TMPFILE the hidden temporary is all there is.
            #expect(try contents(directory) == (dropped.temporaryName.map { [$0] } ?? []))
        }
        #expect(try contents(directory).isEmpty)
        let file = try PendingFile(in: directory.path, hint: "a")
        try file.write([3])
        try file.install(as: "a", replacing: false)
        #expect(try AtomicFile.read(directory.appendingPathComponent("a").path, limit: 4) == [3])
        let second = try PendingFile(in: directory.path, hint: "a")
        let error = #expect(throws: FileError.self) { try second.install(as: "a", replacing: false) }
        #expect(error?.errno == EEXIST)
        #expect(try contents(directory) == ["a"])
    }

    @Test func temporaryNamesAreRecognised() {
        let name = PendingFile.temporaryName(for: "vm.snap")
        #expect(PendingFile.isTemporaryName(name, for: "vm.snap"))
        #expect(!PendingFile.isTemporaryName(name, for: "vm"))
        #expect(!PendingFile.isTemporaryName(".vm.snap.0123.partial", for: "vm.snap"))
    }

    /// A held lock refuses a second holder (flock is per open file, so this
    /// works within one process); a lock file nobody holds (its holder was
    /// killed) is taken over; the holder removes the file when done.
    @Test func aLockHasOneHolder() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent(".vm.snap.lock").path
        do {
            let first = try #require(try FileLock.acquire(path))
            #expect(try FileLock.acquire(path) == nil)
            _ = first
        }
        #expect(try contents(directory).isEmpty)
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        do {
            let stale = try FileLock.acquire(path)
            #expect(stale != nil)
        }
        #expect(try contents(directory).isEmpty)
    }
}
