// CLITests: inputs and outputs the user names on the command line (issue 8,
// item 8): each wrong one gets the right status and one line that names the
// option and the cause; output that cannot be written is never lost silently.
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
