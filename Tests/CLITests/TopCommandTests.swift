// CLITests: `deflect top` against a real VM's control API: plain line groups
// when stdout is not a terminal, the end of the view when the VM stops, the
// terminal screen (under tmux, when it is installed) and one-line errors.
import DeflectTestSupport
import Foundation
import Testing
import VMM

/// A VM that reads the emulated MSR 0x2474 in a loop until it is stopped,
/// serving its control API on a fresh socket.
private final class StormingVM {
    let socket = NSTemporaryDirectory() + "deflect-top-\(UUID().uuidString.prefix(8)).sock"
    let vm: LiveDeflect

    init() throws {
        let policy = try temporaryFile(Array("[[rule]]\nmsr = 0x2474\naction = \"emulate\"\nvalue = 1\n".utf8))
        vm = try LiveDeflect(["run", try GuestImages.path("long/msr_watch.bin"), "--mode", "long", "--policy", policy,
                              "--api-socket", socket, "--timeout", "120"])
        // The guest prints its first value once it runs; the API is up before the guest starts.
        guard vm.waitFor("VALUE 0x0000000000000001") else { throw StartFailure("the VM did not start: \(stop().stderr)") }
    }

    /// Stops the VM (SIGTERM) and waits for it.
    @discardableResult
    func stop() -> CommandResult {
        vm.signal(SIGTERM)
        return vm.finish()
    }
}

private struct StartFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The `rdmsr=RATE` of a plain group's first line.
private func rdmsrRate(_ line: Substring) -> Double? {
    line.split(separator: " ").first { $0.hasPrefix("rdmsr=") }.flatMap { Double($0.dropFirst(6)) }
}

@Suite("deflect top", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct TopCommandTests {
    /// Not a terminal (a pipe): one plain group per interval, each with the
    /// guest's RDMSR rate and the hot MSR.
    @Test func plainGroupsWhileTheGuestReadsAnMSR() throws {
        let storm = try StormingVM()
        defer { storm.stop() }
        let r = try deflect(["top", "--socket", storm.socket, "--iterations", "2", "--interval", "0.5"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        let groups = lines.filter { !$0.hasPrefix(" ") }
        #expect(groups.count == 2, "\(r.stdout)")
        for group in groups {
            #expect(group.contains(" running up="), "\(group)")
            #expect((rdmsrRate(group) ?? 0) > 0, "\(group)")
        }
        #expect(lines.filter { $0.hasPrefix("  msrs: 0x2474 rd ") }.count == 2, "\(r.stdout)")
        #expect(!r.stdout.contains("\u{1B}"), "escape sequences in plain output")
    }

    /// The VM stops while top watches: one line, status 0.
    @Test func endsWithOneLineWhenTheVMStops() throws {
        let storm = try StormingVM()
        let top = try LiveDeflect(["top", "--socket", storm.socket, "--plain", "--interval", "0.2"])
        #expect(top.waitFor(" rdmsr="))
        let run = storm.stop()
        #expect(run.status == ExitStatus.interrupted, "\(run.stderr)")
        let r = top.finish()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
        let last = r.stdout.split(separator: "\n").last ?? ""
        #expect(last.hasPrefix("deflect top: the VM has stopped"), "\(r.stdout)")
    }

    /// On a terminal (tmux's): the screen with its sections, cut to the
    /// terminal's size; Ctrl-C ends it with status 0 and the cursor shown.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux"), "tmux is not installed: terminal mode not tested"))
    func terminalScreenUnderTmux() throws {
        let storm = try StormingVM()
        defer { storm.stop() }
        let server = "deflect-top-\(UUID().uuidString.prefix(8))"
        let statusFile = NSTemporaryDirectory() + server + ".status"
        func tmuxProcess(_ arguments: [String], output: Pipe?) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/tmux")
            process.arguments = ["-L", server, "-f", "/dev/null"] + arguments
            process.standardOutput = output ?? FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            return process
        }
        @discardableResult
        func tmux(_ arguments: [String]) throws -> String {
            let out = Pipe()
            let process = try tmuxProcess(arguments, output: out)
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        // bash waits out a child that handles SIGINT itself, records its
        // status and keeps the pane open a little for the last check.
        let script = try temporaryFile(Array("""
            "\(deflectBinary)" top --socket "\(storm.socket)" --interval 0.3
            echo $? > "\(statusFile)"
            sleep 5
            """.utf8))
        // The client that starts the server counts, for Foundation, as running
        // until the server it forked exits: waited for only after kill-server.
        let starter = try tmuxProcess(["new-session", "-d", "-x", "70", "-y", "20", "/bin/bash \(script)"], output: nil)
        defer {
            _ = try? tmux(["kill-server"])
            starter.waitUntilExit()
        }
        var screen = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(screen.contains("EXIT KIND") && screen.contains("(last ")) {
            Thread.sleep(forTimeInterval: 0.2)
            screen = try tmux(["capture-pane", "-p"])
        }
        let lines = screen.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(screen.contains("msr_watch.bin  running"), "\(screen)")
        #expect(screen.contains("EXIT KIND") && screen.contains("rdmsr"), "\(screen)")
        #expect(lines.contains { $0.hasPrefix("0x2474") && $0.contains(" rd ") }, "\(screen)")
        #expect(lines.count <= 21 && lines.allSatisfy { $0.count <= 70 }, "\(screen)")
        try tmux(["send-keys", "C-c"])
        var status: String?
        while Date() < deadline.addingTimeInterval(15), status == nil {
            Thread.sleep(forTimeInterval: 0.2)
            status = (try? String(contentsOfFile: statusFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(status == "0")
        // Back on the normal screen, with the cursor shown again.
        #expect(try tmux(["display-message", "-p", "#{alternate_on} #{cursor_flag}"]) == "0 1\n")
    }
}

@Suite("deflect top: bad input")
struct TopCommandBadInputTests {
    @Test func noSocketIsOneLineAndStatus70() throws {
        let r = try deflect(["top", "--socket", "/nonexistent/deflect.sock", "--iterations", "1"])
        #expect(r.status == ExitStatus.hostError)
        expectOneLineError(r, "no API socket at /nonexistent/deflect.sock")
        #expect(r.stdout.isEmpty)
    }

    @Test(arguments: [["--interval", "0"], ["--interval", "nan"], ["--iterations", "0"], []])
    func badOptionsAreUsageErrors(arguments: [String]) throws {
        let r = try deflect(["top"] + (arguments.isEmpty ? [] : ["--socket", "/tmp/x.sock"]) + arguments)
        #expect(r.status == ExitStatus.usage, "\(r.stderr)")
        #expect(!r.stderr.contains("Fatal error"))
    }
}
