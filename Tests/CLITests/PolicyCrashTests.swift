// PolicyCrashTests: a policy file can never crash deflect: the
// file that aborted the old TOML parser gets a located error from
// `deflect policy check`, and the same file sent by SIGHUP leaves a running
// guest running under its previous policy.
import DeflectTestSupport
import Foundation
import Testing
import VMM

/// A triple quote inside a comment, then a header that starts with '.'.
private let crasher = Array("# '''\n[.x]\n".utf8)

@Suite("deflect: no policy file crashes it")
struct PolicyCrashTests {
    @Test func policyCheckReportsTheCrasherAsALocatedError() throws {
        let path = try temporaryFile(crasher)
        let r = try deflect(["policy", "check", path])
        #expect(r.status == ExitStatus.badInput, "status \(r.status), stderr: \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.hasPrefix("\(path):2:2: error: TOML syntax: expected a key"), "stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test func runRefusesTheCrasherBeforeStarting() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--policy", try temporaryFile(crasher)])
        #expect(r.status == ExitStatus.badInput, "status \(r.status), stderr: \(r.stderr)")
        #expect(r.stderr.contains(":2:2: error: TOML syntax"), "stderr: \(r.stderr)")
    }
}

@Suite("deflect: no policy file crashes a running guest",
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct PolicyCrashReloadTests {
    @Test func crasherSentBySIGHUPLeavesTheGuestRunning() throws {
        let policy = try temporaryFile(Array("[[rule]]\nmsr = 0x2474\naction = \"ignore\"\n".utf8))
        let (process, err) = try startSpinningGuest(policy: policy)
        usleep(1_000_000)
        try Data(crasher).write(to: URL(fileURLWithPath: policy))
        kill(process.processIdentifier, SIGHUP)
        usleep(500_000)
        #expect(process.isRunning, "deflect ended after reading the crasher")
        // It still answers: a good file is taken.
        try Data("[[rule]]\nmsr = 0x2474\naction = \"deny\"\n".utf8).write(to: URL(fileURLWithPath: policy))
        kill(process.processIdentifier, SIGHUP)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "ended by a signal: \(stderr)")
        #expect(process.terminationStatus == ExitStatus.timeout, "\(stderr)")
        #expect(stderr.contains("\(policy):2:2: error: TOML syntax: expected a key"), "\(stderr)")
        #expect(stderr.contains("the previous policy stays"), "\(stderr)")
        #expect(stderr.contains("policy \(policy) reloaded"), "\(stderr)")
    }
}
