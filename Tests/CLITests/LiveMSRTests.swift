// CLITests: MSR behaviour while a guest runs: `deflect trace` gives the guest
// exactly what KVM gives it, and SIGHUP puts a new policy in front of the
// guest (or keeps the old one when the file is broken).
import DeflectTestSupport
import Foundation
import Testing
import VMM

/// A running `deflect` whose output is read line by line as it comes.
final class LiveDeflect {
    let process = Process()
    private let out = Pipe(), err = Pipe()
    /// Standard input, when the test types into the guest's console.
    private let inputPipe: Pipe?
    private var stdoutBuffer = Data(), stderrBuffer = Data()

    /// `launcher`: a command that runs deflect for the test (e.g. `ip netns exec NS`).
    /// `input`: standard input is a pipe `sendInput` writes to (else /dev/null).
    init(_ arguments: [String], launcher: [String] = [], input: Bool = false) throws {
        inputPipe = input ? Pipe() : nil
        if let tool = launcher.first {
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = Array(launcher.dropFirst()) + [deflectBinary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: deflectBinary)
            process.arguments = arguments
        }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inputPipe ?? FileHandle.nullDevice
        try process.run()
    }

    /// Types `text` on deflect's standard input.
    func sendInput(_ text: String) {
        inputPipe?.fileHandleForWriting.write(Data(text.utf8))
    }

    /// Reads until a line of stdout (or stderr) contains `fragment`; false if
    /// the process ended or `limit` seconds passed first (a hang guard).
    func waitFor(_ fragment: String, onStderr: Bool = false, limit: Double = 30) -> Bool {
        let handle = (onStderr ? err : out).fileHandleForReading
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            if onStderr {
                if String(decoding: stderrBuffer, as: UTF8.self).contains(fragment) { return true }
            } else if String(decoding: stdoutBuffer, as: UTF8.self).contains(fragment) {
                return true
            }
            var ready = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 100) >= 0 else { return false }
            if ready.revents == 0 { continue }
            let chunk = handle.availableData
            if chunk.isEmpty { return false }   // end of file: the process is gone
            if onStderr { stderrBuffer.append(chunk) } else { stdoutBuffer.append(chunk) }
        }
        return false
    }

    /// Waits for the end; returns status, all stdout and all stderr.
    func finish() -> CommandResult {
        try? inputPipe?.fileHandleForWriting.close()
        stdoutBuffer.append(out.fileHandleForReading.readDataToEndOfFile())
        stderrBuffer.append(err.fileHandleForReading.readDataToEndOfFile())
        process.waitUntilExit()
        return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdoutBuffer, as: UTF8.self),
                             stderr: String(decoding: stderrBuffer, as: UTF8.self))
    }

    func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// The stderr read so far by `waitFor(_:onStderr: true)`.
    var stderrSoFar: String { String(decoding: stderrBuffer, as: UTF8.self) }

    /// The stdout read so far by `waitFor(_:)`.
    var stdoutSoFar: String { String(decoding: stdoutBuffer, as: UTF8.self) }
}

@Suite("deflect: MSRs while the guest runs", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct LiveMSRTests {
    /// Issue 8, item 1: under trace, a guest must not be able to write
    /// IA32_UCODE_REV and read its own value back, nor touch PERF_CAPABILITIES,
    /// a FEAT_CTL KVM refuses, the VMX capability MSRs or SMBASE: the same
    /// output, line for line, as with KVM alone.
    @Test func traceGivesTheGuestWhatKVMGivesIt() throws {
        let image = try GuestImages.path("long/msr_guest_rights.bin")
        let plain = try deflect(["run", image, "--mode", "long", "--timeout", "30"])
        let traced = try deflect(["trace", image, "--mode", "long", "--timeout", "30"])
        #expect(plain.stdout.contains("DONE"), "\(plain.stdout)")
        #expect(plain.status % 2 == 1)
        #expect(traced.status == plain.status)
        #expect(traced.stdout == plain.stdout, "run:\n\(plain.stdout)\ntrace:\n\(traced.stdout)")
        // The trace still saw every MSR the guest touched.
        for name in ["MSR_IA32_UCODE_REV", "MSR_IA32_PERF_CAPABILITIES", "MSR_IA32_FEAT_CTL",
                     "MSR_IA32_ARCH_CAPABILITIES", "MSR_IA32_SMBASE", "MSR_IA32_VMX_BASIC"] {
            #expect(traced.stderr.contains(name), "\(name) missing from the trace:\n\(traced.stderr)")
        }
    }

    /// SIGHUP: a broken file keeps the previous policy (the guest goes on
    /// reading 1), a good one is in force for the guest's next read (it reads
    /// 2 and ends itself). Synchronised on the guest's own output, no sleeps.
    @Test func sighupPutsTheNewPolicyInFrontOfTheGuest() throws {
        let policy = try temporaryFile(Array("[[rule]]\nmsr = 0x2474\naction = \"emulate\"\nvalue = 1\n".utf8))
        let vm = try LiveDeflect(["run", try GuestImages.path("long/msr_watch.bin"), "--mode", "long",
                                  "--policy", policy, "--timeout", "60"])
        #expect(vm.waitFor("VALUE 0x0000000000000001"))
        try Data("[[rule]]\nmsr = \"NOPE\"\naction = \"deny\"\n".utf8).write(to: URL(fileURLWithPath: policy))
        vm.signal(SIGHUP)
        #expect(vm.waitFor("the previous policy stays", onStderr: true))
        // The file replaced by a directory: one line that says so, the policy stays.
        try FileManager.default.removeItem(atPath: policy)
        try FileManager.default.createDirectory(atPath: policy, withIntermediateDirectories: false)
        vm.signal(SIGHUP)
        #expect(vm.waitFor("is a directory, not a regular file; the previous policy stays", onStderr: true), "\(vm.stderrSoFar)")
        try FileManager.default.removeItem(atPath: policy)
        // (An emulated value carries over a reload; an `ignore` rule answers its own value.)
        try Data("[[rule]]\nmsr = 0x2474\naction = \"ignore\"\nvalue = 2\n".utf8).write(to: URL(fileURLWithPath: policy))
        vm.signal(SIGHUP)
        let r = vm.finish()
        #expect(r.status == 67, "\(r.stderr)")
        // The guest saw exactly 1 and then 2: the broken file changed nothing.
        #expect(r.stdout == "VALUE 0x0000000000000001\nVALUE 0x0000000000000002\n", "\(r.stdout)")
        // The located error, then one line saying the reload did not happen.
        #expect(r.stderr.contains("\(policy):2:7: error: unknown MSR name"), "\(r.stderr)")
        #expect(r.stderr.contains("deflect: policy \(policy) not reloaded: it has an error; the previous policy stays\n"), "\(r.stderr)")
        #expect(r.stderr.contains("deflect: policy \(policy) not reloaded: the file is a directory, not a regular file; the previous policy stays\n"),
                "\(r.stderr)")
        #expect(!r.stderr.contains("ExitCode"), "\(r.stderr)")
        #expect(r.stderr.contains("policy \(policy) reloaded"), "\(r.stderr)")
    }
}
