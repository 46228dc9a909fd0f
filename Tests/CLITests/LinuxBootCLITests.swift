// CLITests: `deflect run` of a stock Linux kernel (Debian's, built into a
// guest by scripts/debian-linux-guest): every bad input refused in one line
// before any vCPU runs, and the kernel's own code running under Deflect.
import DeflectTestSupport
import Foundation
import Testing

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
            ([truncated, "--mode", "linux"], 66, ""),
            ([try GuestImages.path("multiboot/cpuid.elf"), "--mode", "pvh"], 66, ""),
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
}
