// CLITests: inputs and outputs the user names on the command line: each
// wrong one gets the right status and one line that names the option and the
// cause; output that cannot be written is never lost silently.
import DeflectTestSupport
import Foundation
import Testing
import VMM

@Suite("deflect: output files and option combinations")
struct OutputErrorTests {
    @Test func eventsIntoADirectoryNamesTheOption() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--events", NSTemporaryDirectory()])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "--events")
        #expect(r.stderr.contains("Is a directory"), "\(r.stderr)")
        #expect(!r.stderr.contains("serial"))
    }

    @Test func serialIntoADirectoryNamesTheOption() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--serial", NSTemporaryDirectory()])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "cannot open --serial")
    }

    @Test func pcPlatformWithTooLittleMemoryIsAUsageError() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--platform", "pc", "--memory", "1"])
        #expect(r.status == ExitStatus.usage)
        expectOneLineError(r, "--platform pc needs at least 2 MiB of RAM")
    }
}

@Suite("deflect: output that cannot be written", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct OutputFailureTests {
    @Test func serialToAFullDeviceStopsTheRunWithOneLine() throws {
        let r = try deflect(["run", try GuestImages.path("elf/demo.elf"), "--serial", "/dev/full", "--timeout", "20"])
        #expect(r.status == ExitStatus.outputFailed)
        #expect(r.stderr.contains("cannot write --serial /dev/full: No space left on device"), "\(r.stderr)")
    }

    @Test func eventsToAFullDeviceStopsTheRunWithOneLine() throws {
        let policy = GuestImages.repositoryRoot.appendingPathComponent("examples/policies/production-strict.toml").path
        let r = try deflect(["run", try GuestImages.path("long/msr_probe.bin"), "--mode", "long", "--policy", policy,
                             "--events", "/dev/full", "--timeout", "20"])
        #expect(r.status == ExitStatus.outputFailed)
        #expect(r.stderr.contains("cannot write --events /dev/full: No space left on device"), "\(r.stderr)")
    }

    @Test func traceJSONIntoADirectoryIsOneLineNamingTheOption() throws {
        let r = try deflect(["trace", try GuestImages.path("long/msr_probe.bin"), "--mode", "long", "--timeout", "20",
                             "--json", NSTemporaryDirectory()])
        #expect(r.status == ExitStatus.outputFailed)
        #expect(r.stderr.contains("deflect: error: cannot open --json \(NSTemporaryDirectory()): Is a directory"), "\(r.stderr)")
        #expect(!r.stderr.contains("NSCocoaErrorDomain"))
    }

    @Test func writePolicyToAFullDeviceIsOneLine() throws {
        let r = try deflect(["trace", try GuestImages.path("long/msr_probe.bin"), "--mode", "long", "--timeout", "20",
                             "--write-policy", "/dev/full"])
        #expect(r.status == ExitStatus.outputFailed)
        #expect(r.stderr.contains("deflect: error: cannot write --write-policy /dev/full: No space left on device"), "\(r.stderr)")
    }
}

@Suite("deflect run --api-socket", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct APISocketCLITests {
    @Test func aRegularFileIsRefusedBeforeTheGuestRuns() throws {
        let path = try temporaryFile([0x41])
        let r = try deflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long", "--api-socket", path])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "is a regular file, not a socket")
        #expect(r.stdout.isEmpty)   // the guest never ran
    }

    @Test func aMissingDirectoryIsRefused() throws {
        let r = try deflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long",
                             "--api-socket", "/nonexistent/dir/vm.sock"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "does not exist")
    }

    /// `deflect ctl` against `deflect run --api-socket`: pause, registers,
    /// resume, stats, then shutdown ends the run with the signal status.
    @Test func ctlDrivesARunningGuest() throws {
        let socket = NSTemporaryDirectory() + "deflect-cli-\(UUID().uuidString.prefix(8)).sock"
        let vm = try LiveDeflect(["run", try GuestImages.path("long/sequence.bin"), "--mode", "long",
                                  "--api-socket", socket, "--timeout", "60"])
        #expect(vm.waitFor("SEQ 20\n"))
        let pause = try deflect(["ctl", "--socket", socket, "pause"])
        #expect(pause.status == 0 && pause.stdout.contains("state paused"), "\(pause.stdout)\(pause.stderr)")
        let registers = try deflect(["ctl", "--socket", socket, "registers", "0", "--json"])
        #expect(registers.status == 0 && registers.stdout.contains("\"rip\""), "\(registers.stderr)")
        #expect(try deflect(["ctl", "--socket", socket, "resume"]).status == 0)
        let stats = try deflect(["ctl", "--socket", socket, "stats"])
        #expect(stats.stdout.contains("io-out"), "\(stats.stdout)")
        #expect(try deflect(["ctl", "--socket", socket, "shutdown"]).status == 0)
        let r = vm.finish()
        #expect(r.status == ExitStatus.interrupted, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: socket))   // removed at the end
    }
}
