// CLITests: `deflect run` of a stock Linux kernel (Debian's, built into a
// guest by scripts/debian-linux-guest): every bad input refused in one line
// before any vCPU runs, the bzImage's own code running under Deflect, and the
// PVH kernel booted as far as this host allows — traced, replayed under the
// policy the trace wrote, snapshotted mid-boot and finished in a new process.
import DeflectTestSupport
import Foundation
import Testing
import VMM

/// The Debian test guest (bzImage, initramfs, vmlinux), built once; or why not.
enum DebianLinuxGuest {
    struct Paths { var bzImage: String; var initramfs: String; var vmlinux: String? }

    static let built: Result<Paths, SkipReason> = {
        let root = GuestImages.repositoryRoot.path
        let result: CommandResult
        do {
            result = try runProgram(root + "/scripts/debian-linux-guest", [], limit: 600, directory: root)
        } catch {
            return .failure(SkipReason("scripts/debian-linux-guest could not run: \(error)"))
        }
        guard result.status == 0 else {
            return .failure(SkipReason("scripts/debian-linux-guest exited \(result.status): \(result.stdout)\(result.stderr)"))
        }
        var fields: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        guard let bzImage = fields["bzImage"], let initramfs = fields["initramfs"] else {
            return .failure(SkipReason("scripts/debian-linux-guest printed no paths: \(result.stdout)"))
        }
        return .success(Paths(bzImage: bzImage, initramfs: initramfs, vmlinux: fields["vmlinux"]))
    }()

    static var available: Bool { if case .success = built { true } else { false } }
    static var skipComment: String {
        if case let .failure(reason) = built { return "Debian Linux guest not available: \(reason): test skipped" }
        return ""
    }

    struct SkipReason: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

@Suite("deflect run: a Debian Linux kernel", .serialized,
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)),
       .enabled(if: DebianLinuxGuest.available, Comment(rawValue: DebianLinuxGuest.skipComment)))
struct LinuxBootCLITests {
    private func guest() throws -> DebianLinuxGuest.Paths? { try? DebianLinuxGuest.built.get() }

    @Test func badKernelsAndArgumentsAreRefusedBeforeAnyVCPURuns() throws {
        guard let linux = try guest() else { return }
        let truncated = NSTemporaryDirectory() + "deflect-truncated-\(UUID().uuidString).bz"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: linux.bzImage))
        try bytes.prefix(0x400).write(to: URL(fileURLWithPath: truncated))
        defer { try? FileManager.default.removeItem(atPath: truncated) }
        let cases: [([String], Int32, String)] = [
            ([truncated, "--mode", "linux"], 66, "invalid image \(truncated): "),
            ([try GuestImages.path("multiboot/cpuid.elf"), "--mode", "pvh"], 66, "invalid image \(try GuestImages.path("multiboot/cpuid.elf")): "),
            ([linux.bzImage, "--memory", "256", "--append", String(repeating: "a", count: 70_000)], 66, "cmdline_size"),
            ([linux.bzImage, "--memory", "16"], 66, "--memory"),
            ([linux.bzImage, "--memory", "256", "--module", linux.initramfs], 64, "--initrd"),
            ([try GuestImages.path("real/hello.bin"), "--mode", "real", "--initrd", linux.initramfs], 64, "--initrd"),
            ([linux.bzImage, "--memory", "256", "--initrd", "/nonexistent/initrd"], 66, "/nonexistent/initrd"),
        ]
        for (arguments, status, fragment) in cases {
            let result = try deflect(["run"] + arguments + ["--timeout", "5"])
            #expect(result.status == status, "\(arguments.joined(separator: " ")): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
            #expect(fragment.isEmpty || result.stderr.contains(fragment), "\(fragment): \(result.stderr)")
            #expect(!result.stderr.contains("RIP="), "no vCPU ran: \(result.stderr)")
        }
    }

    /// On this nested host the kernel's decompressor runs through KVM's
    /// instruction emulator for minutes (over 240 s measured, no log line);
    /// within a test's time what shows the kernel's own code running is that
    /// it left Deflect's boot page tables (CR3 outside 0x1000–0x7FFF) and,
    /// only when the command line Deflect handed it says `earlyprintk=ttyS0`,
    /// programmed COM1 (its early_serial_init writes the line control
    /// register, port 0x3FB). A host without the emulator limit would show
    /// the kernel's log here; the test says which it saw.
    @Test func theKernelRunsAndReadsItsCommandLine() throws {
        guard let linux = try guest() else { return }
        func boot(_ append: String) throws -> CommandResult {
            try deflect(["run", linux.bzImage, "--initrd", linux.initramfs, "--memory", "256", "--append", append,
                         "--cpu", "host,-cx16", "--timeout", "8", "--stats"], limit: 60)
        }
        let withConsole = try boot("console=ttyS0 earlyprintk=ttyS0 noxsave")
        if withConsole.stdout.contains("DEFLECT-LINUX-OK") {
            #expect(withConsole.status == 0, "the initramfs powered off: \(withConsole.stderr)")
            return
        }
        let without = try boot("noxsave")
        for result in [withConsole, without] {
            #expect(result.status == 8 || result.status == 6, "timeout, or the emulator's stop: \(result.stderr)")
            let cr3 = result.stderr.split(separator: " ").first { $0.hasPrefix("CR3=") }.flatMap { UInt64($0.dropFirst(4), radix: 16) }
            let value = try #require(cr3, "registers printed: \(result.stderr)")
            #expect(!(0x1000..<0x8000).contains(value), "the kernel's page tables, not Deflect's: CR3=\(String(value, radix: 16))")
        }
        #expect(withConsole.stderr.contains("port 0x3fb out"), "earlyprintk=ttyS0 programs COM1: \(withConsole.stderr)")
        #expect(!without.stderr.contains("port 0x3fb out"), "no earlyprintk, no COM1 setup: \(without.stderr)")
    }

    /// The log lines a PVH boot must show before it reaches this host's limit
    /// (ARCHITECTURE.md: KVM's instruction emulator fails on the int3 of the
    /// alternatives self-test, under QEMU as under Deflect; the comparison
    /// with QEMU is scripts/compare-linux-boot-with-qemu).
    static let pvhAppend = "console=ttyS0 earlyprintk=ttyS0 noxsave"

    /// One boot of the Debian vmlinux through PVH, three processes:
    /// `deflect trace --write-policy` lists the MSRs the kernel touched and
    /// writes the policy reproducing them; `deflect run --policy` boots the
    /// same kernel under that policy and is snapshotted (`deflect ctl
    /// snapshot --then stop`) once the kernel has parsed the MADT; `deflect
    /// restore` finishes the boot in a new process. The kernel logs the same
    /// lines in the same order under trace as across policy, snapshot and
    /// restore, and both end the same way: the emulation failure (status 6,
    /// the instruction bytes printed) where this host stops it, or the
    /// initramfs's marker and power-off (status 0) on a host with VMX/SVM.
    @Test func thePVHKernelBootsTheSameTracedReplayedAndRestored() throws {
        guard let linux = try guest() else { return }
        let vmlinux = try #require(linux.vmlinux, "scripts/debian-linux-guest extracts a vmlinux for PVH")
        let directory = try scratchDirectory("deflect-linux")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/vm.sock", state = directory + "/linux.snap"
        let machine = Self.pvhMachine(vmlinux: vmlinux, initramfs: linux.initramfs)

        let boot = try Self.tracedBoot.get()
        let traced = boot.result, policy = boot.policy
        let reachedInit = traced.stdout.contains("DEFLECT-LINUX-OK")
        if reachedInit {
            #expect(traced.status == 0, "the initramfs powered off: \(traced.stderr)")
        } else {
            #expect(traced.status == 6, "this host's emulator stops the kernel: \(traced.stderr)")
            #expect(traced.stderr.contains("emulation failure ["), "the instruction bytes: \(traced.stderr)")
        }
        let log = Self.kernelLog(traced.stdout)
        #expect(log.first?.hasPrefix("Linux version") == true, "\(traced.stdout.prefix(2000))")
        #expect(log.contains("Command line: \(Self.pvhAppend)"))
        // The PC platform's map for 256 MiB: the EBDA and BIOS area and the 32-bit PCI hole reserved.
        #expect(log.filter { $0.hasPrefix("BIOS-e820:") } == [
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
            "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
            "BIOS-e820: [mem 0x00000000c0000000-0x00000000ffffffff] reserved",
        ])
        #expect(log.contains { $0.hasPrefix("RAMDISK: [mem ") })
        for table in ["RSDP", "XSDT", "FACP", "DSDT", "FACS", "APIC"] {
            #expect(log.filter { $0.hasPrefix("ACPI: \(table) 0x") }.count == 1, "ACPI table \(table) found once")
        }
        #expect(log.contains("ACPI: Using ACPI (MADT) for SMP configuration information"))
        #expect(log.contains("smpboot: Allowing 1 CPUs, 0 hotplug CPUs"))
        #expect(log.contains("kvm-clock: Using msrs 4b564d01 and 4b564d00"))
        #expect(log.contains { $0.hasPrefix("tsc: Detected ") })
        // The MSRs the kernel touched, in the trace's table and in the policy.
        for name in ["MSR_EFER", "MSR_IA32_APICBASE", "MSR_IA32_CR_PAT"] {
            #expect(traced.stderr.contains(name), "trace lists \(name)")
        }
        let written = try String(contentsOfFile: policy, encoding: .utf8)
        #expect(written.contains("msr = \"MSR_EFER\"  # 0xc0000080\naction = \"kernel\""), "\(written.prefix(3000))")

        // Under the policy, snapshotted once the MADT is parsed, restored in a new process.
        let replay = try LiveDeflect(["run"] + machine + ["--policy", policy, "--api-socket", socket, "--timeout", "600", "--quiet"])
        let midBoot = replay.waitFor("smpboot: Allowing", limit: 400)
        let snapshot = midBoot ? try deflect(["ctl", "--socket", socket, "snapshot", state, "--then", "stop"]) : nil
        let first = replay.finish()
        var whole = first.stdout, ending = first
        if let snapshot, snapshot.status == 0 {
            #expect(first.status == ExitStatus.interrupted, "\(first.stderr)")
            let restored = try deflect(["restore", state, "--timeout", "600", "--quiet"], limit: 700)
            whole += restored.stdout
            ending = restored
        } else {
            // Only a host fast enough to finish the boot before the snapshot
            // request gets here; the test says so.
            #expect(reachedInit, "snapshot mid-boot: \(snapshot?.stderr ?? "the kernel never printed smpboot")")
            print("LinuxBootCLITests: the kernel finished before the snapshot; the restore part was not checked")
        }
        #expect(ending.status == traced.status, "\(ending.stderr)")
        #expect(Self.masked(Self.kernelLog(whole)) == Self.masked(log),
                "the same log traced as replayed and restored:\n\(whole.suffix(3000))")
        if !reachedInit {
            let bytes = { (text: String) in text.split(separator: "\n").first { $0.contains("emulation failure [") } }
            #expect(bytes(ending.stderr) == bytes(traced.stderr), "the same instruction stops both")
        }
    }

    /// The PVH kernel with RAM above 4 GiB (`--memory 4608`: 3 GiB below the
    /// PCI hole, 1.5 GiB from 4 GiB, as QEMU's pc machine lays out `-m 4608`):
    /// its e820 shows RAM from 4 GiB usable and it takes that RAM into its
    /// node. On this host the kernel initialises the page structures of
    /// 4.5 GiB through KVM's instruction emulator for many minutes before it
    /// prints its memory total, so the test stops it once the node is set up;
    /// a host that gets as far within the wait checks the total too (the
    /// node's pages; seen here after ~7 minutes: "Memory: 3154732K/4718200K
    /// available", the pages above 4 GiB not yet free as the kernel defers
    /// their initialisation).
    @Test func withRAMAbove4GiBTheKernelTakesTheRAMFrom4GiB() throws {
        guard let linux = try guest() else { return }
        let vmlinux = try #require(linux.vmlinux, "scripts/debian-linux-guest extracts a vmlinux for PVH")
        let run = try LiveDeflect(["run", vmlinux, "--initrd", linux.initramfs, "--memory", "4608", "--append", Self.pvhAppend,
                                   "--cpu", "host,-cx16", "--timeout", "600", "--quiet"])
        let nodeSetUp = run.waitFor("Initmem setup node 0", limit: 400)
        if nodeSetUp { _ = run.waitFor("Memory: ", limit: 20) }
        run.signal(SIGINT)
        let result = run.finish()
        #expect(nodeSetUp, "\(result.stdout.suffix(2000))\n\(result.stderr)")
        let log = Self.kernelLog(result.stdout)
        let e820 = log.filter { $0.hasPrefix("BIOS-e820:") }
        #expect(e820 == [
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
            "BIOS-e820: [mem 0x0000000000100000-0x00000000bfffffff] usable",
            "BIOS-e820: [mem 0x00000000c0000000-0x00000000ffffffff] reserved",
            "BIOS-e820: [mem 0x0000000100000000-0x000000015fffffff] usable",
        ])
        #expect(log.contains("  node   0: [mem 0x0000000100000000-0x000000015fffffff]") || log.contains("node   0: [mem 0x0000000100000000-0x000000015fffffff]"),
                "\(log.filter { $0.contains("node") })")
        #expect(log.contains("Initmem setup node 0 [mem 0x0000000000001000-0x000000015fffffff]"))
        if let memory = log.first(where: { $0.hasPrefix("Memory: ") }) {
            // "Memory: <free>K/<total>K available (...)": the total is the node's pages.
            let total = memory.split(separator: "/").dropFirst().first.flatMap { UInt64($0.prefix { $0.isNumber }) }
            let nodePages: UInt64 = (0x9_F000 - 0x1000) + (0xC000_0000 - 0x10_0000) + 0x6000_0000
            #expect(total == nodePages / 1024, "\(memory)")
        } else {
            print("LinuxBootCLITests: the kernel did not print its memory total within the wait; the e820 and node were checked")
        }
    }

    /// The PVH kernel live-migrated mid-boot: `deflect run --api-socket`
    /// boots it, `deflect ctl migrate` moves it, once it has parsed the MADT,
    /// to a `deflect receive` process, where the boot goes on to the same end
    /// as an unmigrated (traced) boot — this host: the emulation failure,
    /// status 6, the same instruction; a host with VMX/SVM: the marker and
    /// power-off — with the same kernel log lines in the same order across
    /// the two processes, no line repeated that the unmigrated boot does not repeat, the kernel's time never going back.
    @Test func theKernelMigratesMidBootToAnotherProcess() throws {
        guard let linux = try guest() else { return }
        let vmlinux = try #require(linux.vmlinux, "scripts/debian-linux-guest extracts a vmlinux for PVH")
        let reference = try Self.tracedBoot.get().result
        let directory = try scratchDirectory("deflect-linux-mig")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/vm.sock", address = "unix:\(directory)/mig.sock"
        let receiver = try LiveDeflect(["receive", "--listen", address, "--timeout", "600", "--quiet"])
        #expect(receiver.waitFor("waiting for a VM on ", onStderr: true), "\(receiver.stderrSoFar)")
        let source = try LiveDeflect(["run"] + Self.pvhMachine(vmlinux: vmlinux, initramfs: linux.initramfs)
                                     + ["--api-socket", socket, "--timeout", "600", "--quiet"])
        #expect(source.waitFor("smpboot: Allowing", limit: 400), "the kernel reached the MADT: \(source.stdoutSoFar.suffix(2000))")
        let ctl = try deflect(["ctl", "--socket", socket, "migrate", address], limit: 300)
        #expect(ctl.status == 0, "\(ctl.stdout)\n\(ctl.stderr)")
        let before = source.finish()
        #expect(before.status == 0 && before.stderr.contains("deflect: migrated to \(address)"), "\(before.stderr)")
        let after = receiver.finish()
        #expect(after.status == reference.status, "ends as the unmigrated boot (\(reference.status)): \(after.stderr)")
        #expect(!Self.kernelLog(after.stdout).isEmpty, "the kernel went on logging in the receiving process")
        if !reference.stdout.contains("DEFLECT-LINUX-OK") {
            let bytes = { (text: String) in text.split(separator: "\n").first { $0.contains("emulation failure [") } }
            #expect(bytes(after.stderr) != nil && bytes(after.stderr) == bytes(reference.stderr), "the same instruction stops both")
        }
        #expect(Self.masked(Self.kernelLog(before.stdout + after.stdout)) == Self.masked(Self.kernelLog(reference.stdout)),
                "the same log migrated as unmigrated:\n\(after.stdout.suffix(3000))")
        // Any boot prints a few lines twice, timestamp and all (the console
        // hand-over reaches the UART through both consoles): only those the
        // unmigrated boot repeats may repeat.
        func repeated(_ output: String) -> [String: Int] {
            let lines = output.split(whereSeparator: \.isNewline).filter { $0.hasPrefix("[") }
            return Dictionary(lines.map { (String($0), 1) }, uniquingKeysWith: +).filter { $0.value > 1 }
                .reduce(into: [:]) { texts, entry in texts[Self.kernelLog(entry.key).joined(), default: 0] += entry.value }
        }
        let stamped = (before.stdout + after.stdout).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("[") }
        #expect(repeated(before.stdout + after.stdout) == repeated(reference.stdout), "no line repeated after the migration that the unmigrated boot does not repeat")
        let times = stamped.compactMap { Double($0.dropFirst().prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)) }
        #expect(times.count == stamped.count && times == times.sorted(), "the kernel's time never goes back")
    }

    /// The PVH machine both the traced and the migrated boots run.
    static func pvhMachine(vmlinux: String, initramfs: String) -> [String] {
        [vmlinux, "--initrd", initramfs, "--memory", "256", "--append", pvhAppend, "--cpu", "host,-cx16"]
    }

    /// One `deflect trace --write-policy` boot of the PVH kernel, run once for
    /// the tests that compare with an unmigrated boot (a boot takes minutes here).
    struct TracedBoot { var result: CommandResult; var policy: String }
    static let tracedBoot: Result<TracedBoot, DebianLinuxGuest.SkipReason> = {
        guard case let .success(linux) = DebianLinuxGuest.built, let vmlinux = linux.vmlinux else {
            return .failure(DebianLinuxGuest.SkipReason("no vmlinux"))
        }
        let policy = NSTemporaryDirectory() + "deflect-linux-trace-\(UUID().uuidString.prefix(8)).toml"
        do {
            return .success(TracedBoot(result: try deflect(["trace"] + pvhMachine(vmlinux: vmlinux, initramfs: linux.initramfs)
                                                           + ["--write-policy", policy, "--timeout", "600"], limit: 700),
                                       policy: policy))
        } catch {
            return .failure(DebianLinuxGuest.SkipReason("deflect trace could not run: \(error)"))
        }
    }()

    /// The kernel's log lines, without their timestamps.
    static func kernelLog(_ output: String) -> [String] {
        // The UART's output ends lines with "\r\n", one Character in Swift.
        output.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).compactMap { line -> String? in
            guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return nil }
            return String(line[line.index(after: close)...].drop { $0 == " " })
        }
    }

    /// Lines with their decimal numbers masked: timings and calibrations
    /// (sched offset, TSC MHz, BogoMIPS) differ from run to run; tokens
    /// written in hexadecimal ("0x…": addresses, sizes) are kept.
    static func masked(_ lines: [String]) -> [String] {
        lines.map { line in
            var out = "", token = ""
            func flush() {
                if token.hasPrefix("0x") {
                    out += token
                } else {
                    var inDigits = false
                    for character in token {
                        if character.isNumber { if !inDigits { out += "#" }; inDigits = true } else { out.append(character); inDigits = false }
                    }
                }
                token = ""
            }
            for character in line {
                if character.isLetter || character.isNumber { token.append(character) } else { flush(); out.append(character) }
            }
            flush()
            return out
        }
    }
}
