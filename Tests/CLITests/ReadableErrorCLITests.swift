// CLITests: every file a user names on the command line that cannot be
// used — missing, a directory, a FIFO, permission denied, too large — is one
// line `deflect: error: ...` with the path and the reason in strerror's
// words, never Foundation's "Error Domain=NSCocoaErrorDomain ..." dump, and
// never a read that blocks (a FIFO) or does not end (/dev/zero).
import DeflectTestSupport
import Foundation
import Testing
import VMM

/// A FIFO nobody writes to, removed by the caller.
func temporaryFIFO() throws -> String {
    let path = NSTemporaryDirectory() + "deflect-cli-fifo-\(UUID().uuidString)"
    guard mkfifo(path, 0o600) == 0 else { throw CocoaError(.fileWriteUnknown) }
    return path
}

/// One `deflect: error:` line holding `fragment`, status `status`, within 10 s, no Foundation dump.
func expectReadableError(_ arguments: [String], status: Int32 = ExitStatus.badInput, _ fragment: String,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
    let started = ContinuousClock.now
    let r = try deflect(arguments, limit: 20)
    #expect(ContinuousClock.now - started < .seconds(10), "\(arguments) took too long", sourceLocation: sourceLocation)
    #expect(r.status == status, "\(arguments): \(r.stderr)", sourceLocation: sourceLocation)
    expectOneLineError(r, fragment, sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("deflect: error: "), "\(r.stderr)", sourceLocation: sourceLocation)
    #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("Error Domain="), "\(r.stderr)", sourceLocation: sourceLocation)
}

@Suite("deflect: files that cannot be used, in readable words")
struct ReadableFileErrorTests {
    private let eacces = String(cString: strerror(EACCES))

    @Test func policyFiles() throws {
        let image = try temporaryFile([0xF4])
        let fifo = try temporaryFIFO()
        defer { unlink(fifo) }
        let huge = try temporaryFile(Array(repeating: UInt8(ascii: "#"), count: (1 << 20) + 1))
        let directory = NSTemporaryDirectory()
        for command in [["policy", "check"], ["run", image, "--mode", "real", "--policy"]] {
            try expectReadableError(command + ["/nonexistent/p.toml"], "policy /nonexistent/p.toml does not exist")
            try expectReadableError(command + [directory], "policy \(directory) is a directory, not a regular file")
            try expectReadableError(command + [fifo], "policy \(fifo) is a FIFO, not a regular file")
            try expectReadableError(command + ["/dev/zero"], "policy /dev/zero is a character device, not a regular file")
            try expectReadableError(command + [huge], "policy \(huge) is 1048577 bytes, more than the 1048576 bytes it may have")
            if let unreadable = try UnreadableFile.path() {
                try expectReadableError(command + [unreadable], "policy \(unreadable) cannot be read: \(eacces)")
            }
        }
    }

    /// `deflect ctl policy FILE` reads the file before it talks to the VM.
    @Test func ctlPolicyFile() throws {
        let fifo = try temporaryFIFO()
        defer { unlink(fifo) }
        let ctl = ["ctl", "--socket", "/nonexistent/vm.sock", "policy"]
        try expectReadableError(ctl + ["/nonexistent/p.toml"], "policy /nonexistent/p.toml does not exist")
        try expectReadableError(ctl + [NSTemporaryDirectory()], "is a directory, not a regular file")
        try expectReadableError(ctl + [fifo], "policy \(fifo) is a FIFO, not a regular file")
    }

    @Test func imageAndModuleThatCannotBeRead() throws {
        let unreadable = try #require(try UnreadableFile.path(), "no file this process may not read")
        try expectReadableError(["run", unreadable, "--mode", "real"], "image \(unreadable) cannot be read: \(eacces)")
        let kernel = try GuestImages.path("multiboot/mbinfo.elf")
        try expectReadableError(["run", kernel, "--module", "\(unreadable) args"], "--module \(unreadable) cannot be read: \(eacces)")
    }

    @Test func outputFilesInADirectoryThatDoesNotExist() throws {
        let image = try temporaryFile([0xF4])
        try expectReadableError(["run", image, "--mode", "real", "--serial", "/nonexistent/dir/serial.txt"],
                                "cannot open --serial /nonexistent/dir/serial.txt: \(String(cString: strerror(ENOENT)))")
        try expectReadableError(["run", image, "--mode", "real", "--events", "/nonexistent/dir/events.jsonl"],
                                "cannot open --events /nonexistent/dir/events.jsonl: \(String(cString: strerror(ENOENT)))")
    }
}

@Suite("deflect receive: key files", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct ReceiveKeyFileTests {
    @Test func pskFilesThatCannotBeUsed() throws {
        let fifo = try temporaryFIFO()
        defer { unlink(fifo) }
        let short = try temporaryFile(Array("short".utf8))
        let large = try temporaryFile(Array(repeating: UInt8(ascii: "k"), count: 5000))
        let listen = ["receive", "--listen", "unix:" + NSTemporaryDirectory() + "deflect-psk-\(UUID().uuidString.prefix(8)).sock", "--psk-file"]
        try expectReadableError(listen + ["/nonexistent/key"], "--psk-file /nonexistent/key does not exist")
        try expectReadableError(listen + [NSTemporaryDirectory()], "is a directory, not a regular file")
        try expectReadableError(listen + [fifo], "--psk-file \(fifo) is a FIFO, not a regular file")
        try expectReadableError(listen + ["/dev/urandom"], "--psk-file /dev/urandom is a character device, not a regular file")
        try expectReadableError(listen + [short], "--psk-file \(short): the pre-shared key has 5 bytes; at least 16 are needed")
        try expectReadableError(listen + [large], "--psk-file \(large) is 5000 bytes, more than the 4096 bytes it may have")
    }
}
