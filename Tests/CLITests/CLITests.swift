// CLITests: the `deflect` executable as a user runs it: exit statuses and
// one-line errors for every bad input, and real runs when KVM is usable.
import DeflectTestSupport
import Foundation
import Testing
import VMM

/// The `deflect` binary built next to this test bundle.
let deflectBinary: String = {
    let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deflect").path
    if FileManager.default.isExecutableFile(atPath: beside) { return beside }
    return GuestImages.repositoryRoot.appendingPathComponent(".build/debug/deflect").path
}()

/// A new directory in the temporary directory for one test's sockets and
/// files, named PREFIX-XXXXXXXX; the test removes it.
func scratchDirectory(_ prefix: String) throws -> String {
    let directory = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs deflect with `arguments` (in `directory` when given); kills it after
/// `limit` seconds (a hang is a failure).
func deflect(_ arguments: [String], limit: Double = 30, directory: String? = nil) throws -> CommandResult {
    try runProgram(deflectBinary, arguments, limit: limit, directory: directory)
}

/// Runs the program at `path` as `deflect` runs deflect.
func runProgram(_ path: String, _ arguments: [String], limit: Double = 30, directory: String? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let killer = DispatchWorkItem { process.terminate() }
    DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: killer)
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    killer.cancel()
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
}

func temporaryFile(_ bytes: [UInt8]) throws -> String {
    let path = NSTemporaryDirectory() + "deflect-cli-\(UUID().uuidString).bin"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

/// Starts `deflect run` on the real-mode guest that spins forever, under
/// `policy`, for 4 seconds; its stderr can be read from the returned pipe.
func startSpinningGuest(policy: String) throws -> (Process, Pipe) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: deflectBinary)
    process.arguments = ["run", try GuestImages.path("real/spin.bin"), "--mode", "real", "--policy", policy, "--timeout", "4"]
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    try process.run()
    return (process, err)
}

/// One line on stderr, starting with "deflect: error:".
func expectOneLineError(_ r: CommandResult, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let lines = r.stderr.split(separator: "\n")
    #expect(lines.count == 1, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(fragment), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(!r.stderr.contains("Fatal error"), sourceLocation: sourceLocation)
}

@Suite("deflect: bad input")
struct CLIBadInputTests {
    @Test func missingImage() throws {
        let r = try deflect(["run", "/nonexistent/image.bin", "--mode", "real"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "does not exist")
    }

    @Test func emptyImage() throws {
        let r = try deflect(["run", try temporaryFile([]), "--mode", "real"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "is empty")
    }

    @Test func flatImageWithoutMode() throws {
        let r = try deflect(["run", try temporaryFile([0xF4])])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "not an ELF file")
    }

    @Test func notAnELFForElfMode() throws {
        let r = try deflect(["run", try temporaryFile([0xF4, 0xF4, 0xF4, 0xF4]), "--mode", "elf"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "invalid image")
    }

    @Test func imageTooLargeForMemory() throws {
        let r = try deflect(["run", try temporaryFile([UInt8](repeating: 0x90, count: 2 << 20)), "--mode", "long", "--memory", "2"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "invalid image")
    }

    @Test(arguments: [["--memory", "0"], ["--memory", "1048577"], ["--vcpus", "0"], ["--vcpus", "65"], ["--timeout", "0"], ["--memory", "lots"]])
    func outOfRangeNumbers(arguments: [String]) throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real"] + arguments)
        #expect(r.status == ExitStatus.usage)
        #expect(r.stderr.contains("Error:"))
        #expect(!r.stderr.contains("Fatal error"))
    }

    @Test func unknownMode() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "protected"])
        #expect(r.status == ExitStatus.usage)
    }

    @Test func kvmDeviceMissing() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--kvm-device", "/nonexistent/kvm"])
        #expect(r.status == ExitStatus.kvmUnavailable)
        expectOneLineError(r, "KVM is not usable: cannot open /nonexistent/kvm: ENOENT")
    }

    @Test func doctorWithoutKVM() throws {
        let r = try deflect(["doctor", "--kvm-device", "/nonexistent/kvm"])
        #expect(r.status == ExitStatus.kvmUnavailable)
        expectOneLineError(r, "KVM is not usable")
    }

    @Test func serialFileThatCannotBeCreated() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--serial", "/nonexistent/dir/out.txt"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "cannot open --serial /nonexistent/dir/out.txt: No such file or directory")
    }
}

@Suite("deflect: runs under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CLIRunTests {
    @Test func demoGuest() throws {
        let r = try deflect(["run", try GuestImages.path("elf/demo.elf"), "--stats", "--timeout", "20"])
        #expect(r.status == 33)
        #expect(r.stdout.hasPrefix("Hello from a Deflect guest"))
        #expect(r.stderr.contains("guest exited through the debug-exit port with value 0x10"))
        #expect(r.stderr.contains("io-out"))
        #expect(r.stderr.contains("total"))
    }

    /// RAM beyond 3 GiB continues at 4 GiB, mapped MAP_NORESERVE and
    /// faulted in as touched: a 16 GiB guest starts about as fast as a 64 MiB one.
    @Test func aSixteenGiBGuestStartsAsFastAsASmallOne() throws {
        func timed(_ memory: String) throws -> (CommandResult, Double) {
            let start = Date()
            let r = try deflect(["run", try GuestImages.path("long/hello.bin"), "--mode", "long", "--memory", memory, "--timeout", "20"])
            return (r, Date().timeIntervalSince(start))
        }
        let (small, smallSeconds) = try timed("64")
        let (large, largeSeconds) = try timed("16384")
        #expect(small.status == 87 && large.status == 87, "\(large.stderr)")
        #expect(large.stdout == small.stdout)
        #expect(largeSeconds < smallSeconds + 1, "16 GiB took \(largeSeconds) s, 64 MiB \(smallSeconds) s")
    }

    /// The guest's physical address width bounds RAM: a CPU model with 36
    /// bits reaches 64 GiB of addresses, 63 GiB of RAM (the 1 GiB hole below
    /// 4 GiB is not RAM); one MiB more is refused in one line, status 64,
    /// before any vCPU runs.
    @Test func ramBeyondTheGuestsPhysicalAddressesIsRefused() throws {
        let model = NSTemporaryDirectory() + "deflect-cpu36-\(UUID().uuidString).toml"
        try "[cpu]\nbase = \"host\"\nphysical_address_bits = 36\n".write(toFile: model, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: model) }
        let image = try GuestImages.path("long/hello.bin")
        let refused = try deflect(["run", image, "--mode", "long", "--cpu", model, "--memory", "64513", "--timeout", "20"])
        #expect(refused.status == ExitStatus.usage)
        expectOneLineError(refused, "memory size 64513 MiB is more than the guest can address: RAM would end at 0x1000100000, beyond its 36-bit physical addresses (this host and CPU model: at most 64512 MiB)")
        #expect(refused.stdout.isEmpty, "no vCPU ran")
        let most = try deflect(["run", image, "--mode", "long", "--cpu", model, "--memory", "64512", "--timeout", "20"])
        #expect(most.status == 87, "\(most.stderr)")
    }

    @Test func serialToFile() throws {
        let path = NSTemporaryDirectory() + "deflect-serial-\(UUID().uuidString).txt"
        let r = try deflect(["run", try GuestImages.path("real/hello.bin"), "--mode", "real", "--serial", path, "--quiet", "--timeout", "20"])
        #expect(r.status == 85)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.isEmpty)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "hello from real mode\n")
    }

    @Test func acpiPowerOffExitsZeroWithItsOwnLine() throws {
        let r = try deflect(["run", try GuestImages.path("real/poweroff.bin"), "--mode", "real", "--platform", "pc", "--timeout", "20"])
        #expect(r.status == 0)
        #expect(r.stderr == "deflect: guest powered off (ACPI S5)\n")
    }

    @Test func multipleVCPUs() throws {
        let r = try deflect(["run", try GuestImages.path("long/smp.bin"), "--mode", "long", "--vcpus", "3", "--timeout", "20"])
        #expect(r.status == 7)
    }

    @Test func tripleFaultReportsRegisters() throws {
        let r = try deflect(["run", try GuestImages.path("long/triple_fault.bin"), "--mode", "long", "--timeout", "20"])
        #expect(r.status == ExitStatus.tripleFault)
        #expect(r.stderr.contains("triple-faulted"))
        #expect(r.stderr.contains("RAX=000000001234abcd"))
    }

    @Test func timeoutEndsANeverEndingGuest() throws {
        let r = try deflect(["run", try GuestImages.path("real/spin.bin"), "--mode", "real", "--timeout", "1"], limit: 15)
        #expect(r.status == ExitStatus.timeout)
        #expect(r.stderr.contains("did not finish within 1.0 s"))
        #expect(r.stderr.contains("RIP=0000000000007c00"))
    }

    @Test func instructionTheHostNeverCompletesIsEndedByTheTimeout() throws {
        let r = try deflect(["run", try GuestImages.path("real/vmcall.bin"), "--mode", "real", "--timeout", "2"], limit: 15)
        #expect(r.status == ExitStatus.timeout || r.status == 15)
        #expect(!r.stderr.contains("did not leave KVM_RUN"))
    }

    @Test func doctorReportsThisHost() throws {
        let r = try deflect(["doctor", "--probe-timeout", "2"], limit: 30)
        #expect(r.status == 0)
        #expect(r.stdout.contains("KVM API version"))
        #expect(r.stdout.contains("12 (Deflect speaks 12)"))
        #expect(r.stdout.contains("KVM_CAP_X86_USER_SPACE_MSR (188)"))
        #expect(r.stdout.contains("MSR index list"))
        #expect(r.stdout.contains("guest hypercall reaches user space"))
        let probeLine = r.stdout.split(separator: "\n").first { $0.hasPrefix("guest hypercall reaches user space") } ?? ""
        #expect(probeLine.contains("yes:") || probeLine.contains("no:"))
    }
}

@Suite("deflect policy and trace")
struct CLIPolicyTests {
    @Test func policyCheckShowsTheCompiledFilter() throws {
        let path = GuestImages.repositoryRoot.appendingPathComponent("examples/policies/production-strict.toml").path
        let r = try deflect(["policy", "check", path])
        #expect(r.status == 0)
        #expect(r.stdout.contains("valid:"))
        #expect(r.stdout.contains("KVM_X86_SET_MSR_FILTER: default deny"))
    }

    @Test func malformedPolicyGetsLocatedErrors() throws {
        let path = try temporaryFile(Array("[default]\naction = \"maybe\"\n\n[[rule]]\nmsr = \"MSR_PLATFORM_INFOO\"\naction = \"emulate\"\n".utf8))
        let r = try deflect(["policy", "check", path])
        #expect(r.status == ExitStatus.badInput)
        #expect(r.stderr.contains("\(path):2:10: error: unknown default action \"maybe\""))
        #expect(r.stderr.contains("\(path):5:7: error: unknown MSR name"))
        #expect(!r.stderr.contains("Fatal error"))
    }

    @Test func runRefusesAMalformedPolicyBeforeStarting() throws {
        let policy = try temporaryFile(Array("[[rule]]\nrange = [0x20, 0x10]\naction = \"deny\"\n".utf8))
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--policy", policy])
        #expect(r.status == ExitStatus.badInput)
        #expect(r.stderr.contains(":2:"))
        let missing = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--policy", "/nonexistent/policy.toml"])
        #expect(missing.status == ExitStatus.badInput)
        expectOneLineError(missing, "does not exist")
    }

    @Test func profilesAreListedWithSources() throws {
        let r = try deflect(["policy", "profiles"])
        #expect(r.status == 0)
        #expect(r.stdout.contains("intel-skylake-server"))
        #expect(r.stdout.contains("SDM"))
    }
}

@Suite("deflect: MSR policies under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CLIMSRRunTests {
    @Test func runWithPolicyWritesJSONEventsAndMSRStats() throws {
        let policy = GuestImages.repositoryRoot.appendingPathComponent("examples/policies/production-strict.toml").path
        let events = NSTemporaryDirectory() + "deflect-events-\(UUID().uuidString).jsonl"
        let r = try deflect(["run", try GuestImages.path("long/msr_probe.bin"), "--mode", "long", "--policy", policy,
                             "--events", events, "--stats", "--timeout", "30"])
        #expect(r.status % 2 == 1)
        #expect(r.stderr.contains("MSR_PLATFORM_INFO") || r.stderr.contains("0x2474"))
        let lines = try String(contentsOfFile: events, encoding: .utf8).split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["event"] != nil)
        }
        #expect(lines.contains { $0.contains(#""msr":"0x2474""#) && $0.contains(#""gp":true"#) })
    }

    @Test func traceWritesJSONAndAReproducingPolicy() throws {
        let json = NSTemporaryDirectory() + "deflect-trace-\(UUID().uuidString).json"
        let policy = NSTemporaryDirectory() + "deflect-trace-\(UUID().uuidString).toml"
        let r = try deflect(["trace", try GuestImages.path("long/msr_probe.bin"), "--mode", "long", "--timeout", "30",
                             "--json", json, "--write-policy", policy])
        #expect(r.status % 2 == 1)
        #expect(r.stderr.contains("MSR_EFER"))
        let document = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
        #expect((document?["msrs"] as? [Any])?.isEmpty == false)
        let check = try deflect(["policy", "check", policy])
        #expect(check.status == 0, "\(check.stderr)")
        let written = try String(contentsOfFile: policy, encoding: .utf8)
        #expect(!written.contains("msr = \"MSR_EFER\"\naction = \"emulate\""))
    }
}

@Suite("deflect: multiboot input")
struct CLIMultibootInputTests {
    /// A 32-byte image with a multiboot header whose checksum is wrong.
    private var badChecksumImage: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64)
        for (i, word) in [UInt32(0x1BAD_B002), 0, 0x1234].enumerated() {
            for b in 0..<4 { bytes[i * 4 + b] = UInt8(truncatingIfNeeded: word >> (8 * UInt32(b))) }
        }
        return bytes
    }

    @Test func appendWithoutMultiboot() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--append", "x=1"])
        #expect(r.status == ExitStatus.usage)
        expectOneLineError(r, "--append needs a multiboot or Linux kernel")
    }

    /// As QEMU's -append and -initrd: the next argument is the value even
    /// when it starts with "-" (a test kernel's own options).
    @Test func appendAndModuleTakeValuesThatStartWithADash() throws {
        for append in ["-foo", "-foo -bar", "--not-an-option", "-"] {
            let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--append", append])
            #expect(r.status == ExitStatus.usage, "--append \(append): \(r.stderr)")
            // Parsed as the value: the run stops at the check after parsing.
            expectOneLineError(r, "--append needs a multiboot or Linux kernel")
        }
        // Options after it are still options.
        let after = try deflect(["run", try temporaryFile([0xF4]), "--append", "-v", "--memory", "0"])
        #expect(after.status == ExitStatus.usage)
        #expect(after.stderr.contains("--memory 0 is out of range"), "\(after.stderr)")
        let module = try deflect(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot", "--module", "-missing.bin -x"])
        #expect(module.status == ExitStatus.badInput)
        expectOneLineError(module, "--module -missing.bin does not exist")
    }

    @Test func badMultibootHeader() throws {
        let r = try deflect(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "invalid image")
    }

    @Test func missingModule() throws {
        let r = try deflect(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot", "--module", "/nonexistent/env.txt"])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "module /nonexistent/env.txt does not exist")
    }

    /// A sparse file of `size` bytes: no disk, no time, but `stat` reports the size.
    private func sparseFile(size: Int64) throws -> String {
        let path = NSTemporaryDirectory() + "deflect-cli-sparse-\(UUID().uuidString).bin"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        #expect(ftruncate(handle.fileDescriptor, off_t(size)) == 0)
        return path
    }

    /// Fails at once with status 66 and one line naming what was wrong.
    private func expectBadInputFast(_ arguments: [String], _ fragments: [String],
                                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        let started = ContinuousClock.now
        let r = try deflect(arguments, limit: 20)
        #expect(ContinuousClock.now - started < .seconds(5), sourceLocation: sourceLocation)
        #expect(r.status == ExitStatus.badInput, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments { expectOneLineError(r, fragment, sourceLocation: sourceLocation) }
    }

    @Test func moduleThatIsADirectory() throws {
        let directory = NSTemporaryDirectory()
        try expectBadInputFast(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot",
                                "--module", "\(directory) args"],
                               ["--module \(directory) is a directory, not a regular file"])
    }

    @Test func moduleThatIsAFIFODoesNotBlock() throws {
        let fifo = NSTemporaryDirectory() + "deflect-cli-fifo-\(UUID().uuidString)"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        try expectBadInputFast(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot", "--module", fifo],
                               ["--module \(fifo) is a FIFO, not a regular file"])
    }

    @Test func moduleLargerThanRAMFailsBeforeReading() throws {
        // 8 GiB, sparse: reading it whole would take seconds and gigabytes.
        let huge = try sparseFile(size: 8 << 30)
        defer { unlink(huge) }
        try expectBadInputFast(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot",
                                "--memory", "64", "--timeout", "1", "--module", "\(huge) big"],
                               ["--module \(huge) is 8589934592 bytes, more than the guest's 67108864 bytes of RAM (--memory 64)"])
    }

    @Test func modulesTogetherLargerThanRAM() throws {
        let first = try sparseFile(size: 40 << 20), second = try sparseFile(size: 40 << 20)
        defer { unlink(first); unlink(second) }
        try expectBadInputFast(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot", "--memory", "64",
                                "--module", first, "--module", second],
                               ["--module \(second) is 41943040 bytes; with the 41943040 bytes of the modules before it that is more than the guest's 67108864 bytes of RAM (--memory 64)"])
    }

    @Test func imageThatIsADirectoryOrLargerThanRAM() throws {
        let directory = NSTemporaryDirectory()
        try expectBadInputFast(["run", directory, "--mode", "multiboot"], ["image \(directory) is a directory"])
        let huge = try sparseFile(size: 8 << 30)
        defer { unlink(huge) }
        try expectBadInputFast(["run", huge, "--memory", "16"],
                               ["image \(huge) is 8589934592 bytes, more than the guest's 16777216 bytes of RAM (--memory 16)"])
    }

    @Test func moduleThatFitsRAMButNotAfterTheKernel() throws {
        // 63 MiB passes the size check against 64 MiB of RAM; placed from the page after the kernel it does not fit.
        let module = try sparseFile(size: 63 << 20)
        defer { unlink(module) }
        try expectBadInputFast(["run", try GuestImages.path("multiboot/mbinfo.elf"), "--module", module],
                               ["multiboot module 1 (--module number 1, 66060288 bytes from 0x107000",
                                "does not fit below 0x4000000"])
    }

    @Test func emptyModuleIsAccepted() throws {
        // QEMU loads empty modules; the run gets as far as the (bad) kernel.
        let r = try deflect(["run", try temporaryFile(badChecksumImage), "--mode", "multiboot",
                             "--module", try temporaryFile([])])
        #expect(r.status == ExitStatus.badInput)
        expectOneLineError(r, "invalid image")
    }

    @Test func unknownPlatform() throws {
        let r = try deflect(["run", try temporaryFile([0xF4]), "--mode", "real", "--platform", "amiga"])
        #expect(r.status == ExitStatus.usage)
    }
}

@Suite("deflect: multiboot kernels under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CLIMultibootRunTests {
    @Test func kernelPathAsTypedIsArgv0() throws {
        // Relative, as a user types it in the build directory: QEMU passes it unchanged.
        let build = try GuestImages.path("multiboot/mbinfo.elf").replacingOccurrences(of: "/multiboot/mbinfo.elf", with: "")
        let environment = try temporaryFile(Array("MAGIC=deflect-env-v1\n".utf8))
        let r = try deflect(["run", "multiboot/mbinfo.elf", "--append", "expect-module=deflect-env-v1 two",
                             "--module", "\(environment) env", "--timeout", "20"], directory: build)
        #expect(r.status == 3, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("INFO cmdline \"multiboot/mbinfo.elf expect-module=deflect-env-v1 two\""))
        #expect(r.stdout.contains("INFO argv0 \"multiboot/mbinfo.elf\""))
        #expect(r.stdout.contains("-0x00107015 \"\(environment) env\""))  // 21 bytes from the page after the kernel
    }

    /// The kernel sees an --append that starts with "-" as typed, given
    /// with a space or with "=".
    @Test func appendStartingWithADashReachesTheKernel() throws {
        let kernel = try GuestImages.path("multiboot/mbinfo.elf")
        for arguments in [["--append", "-foo -bar"], ["--append=-foo -bar"]] {
            let r = try deflect(["run", kernel, "--timeout", "20"] + arguments)
            #expect(r.stdout.contains("INFO cmdline \"\(kernel) -foo -bar\""), "\(arguments): \(r.stdout)\n\(r.stderr)")
        }
    }

    @Test func kernelLinkedAt0x8000() throws {
        let environment = try temporaryFile(Array("MAGIC=deflect-env-v1\n".utf8))
        let r = try deflect(["run", try GuestImages.path("multiboot/mbinfo-low.elf"),
                             "--append", "expect-module=deflect-env-v1", "--module", environment, "--timeout", "20"])
        #expect(r.status == 3, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("RESULT pass"))
    }
}
