// deflect-bench --virtio N: Deflect's virtio-blk and virtio-net against
// QEMU's, and what ioeventfd saves on each. The virtio test guest's
// benchmark mode (Guests/multiboot/virtio.c, `blk-bench net-bench`) runs
// under four VMMs in each of N rounds, in alternating order: Deflect with
// `--disk path=F,direct=on` and `--net tap=T`, the same with `ioeventfd=off`
// on both, QEMU with `cache=none,aio=threads` and the same with
// `ioeventfd=off`. Same ELF, same raw file (created here, filled with
// numbered 4 KiB blocks the guest checks, removed afterwards), same TAP (in
// a network namespace made for the run, as scripts/netns-tap-ping does).
// The guest times each phase with its TSC; rates use one TSC rate for every
// run (the median of the guests' PIT calibrations), so ratios are ratios of
// cycles.
import BenchmarkReport
import Foundation
import Glibc
import KVM

struct VirtioBenchOptions {
    var rounds: Int
    var output: String
    var noise: NoiseOptions
    /// Where the disk file goes: a file system with O_DIRECT (not a tmpfs before Linux 6.6).
    var directory = "/var/tmp"
    var diskMiB = 256
    var blkOps = 1000
    var sequentialMiB = 64
    var frames = 5000
}

private enum VirtioSubject: Int, CaseIterable {
    case deflect, deflectNoIOEventFD, qemu, qemuNoIOEventFD

    var label: String {
        switch self {
        case .deflect: "Deflect"
        case .deflectNoIOEventFD: "Deflect ioeventfd=off"
        case .qemu: "QEMU"
        case .qemuNoIOEventFD: "QEMU ioeventfd=off"
        }
    }
    var isQEMU: Bool { self == .qemu || self == .qemuNoIOEventFD }
    var ioEventFD: Bool { self == .deflect || self == .qemu }
}

/// The guest's phases, in the order it runs them, and how each is read.
private let phases: [(name: String, unit: String)] = [
    ("blk-randread-qd1", "IOPS"), ("blk-randread-qd16", "IOPS"), ("blk-seqread-qd1", "MiB/s"), ("blk-seqread-qd4", "MiB/s"),
    ("net-tx-60", "frames/s"), ("net-tx-1514", "frames/s"),
]

private struct PhaseRun { var ops: Double; var bytes: Double; var cycles: Double }

/// What one run of the guest printed: its TSC calibration and each phase.
private struct GuestRun {
    var tscKHz: Double?
    var phases: [String: PhaseRun] = [:]

    init(output: String) {
        for line in output.split(separator: "\n") where line.hasPrefix("BENCH ") {
            let words = line.split(separator: " ")
            if words.count == 3, words[1] == "tsc-khz" { tscKHz = Double(words[2]) }
            guard words.count == 6, words[1] == "end" else { continue }
            var fields: [String: Double] = [:]
            for word in words.dropFirst(3) {
                let pair = word.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { fields[String(pair[0])] = Double(pair[1]) }
            }
            if let ops = fields["ops"], let bytes = fields["bytes"], let cycles = fields["cycles"], cycles > 0 {
                phases[String(words[2])] = PhaseRun(ops: ops, bytes: bytes, cycles: cycles)
            }
        }
    }
}

/// A network namespace holding the TAP every VMM uses; removed by `remove`.
private struct BenchNamespace {
    static let tap = "vbtap0"
    let name = "deflect-bench-\(getpid())"

    /// Why the namespace cannot be made here, or nil.
    static func unavailableReason() -> String? {
        guard getuid() == 0 else { return "not root (a network namespace and a TAP need CAP_NET_ADMIN)" }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else {
            return "the ip command (iproute2) is not installed"
        }
        return nil
    }

    func create() throws {
        // IPv6 off in the namespace first, so the TAP sends nothing of its own.
        for arguments in [["netns", "add", name], ["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                          ["-n", name, "tuntap", "add", "dev", Self.tap, "mode", "tap"], ["-n", name, "link", "set", Self.tap, "up"]] {
            let result = try runCommand(["ip"] + arguments, timeout: 20)
            guard result.status == 0 else {
                remove()
                throw BenchError(description: "ip \(arguments.joined(separator: " ")): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
    }

    func remove() {
        _ = try? runCommand(["ip", "-n", name, "link", "del", Self.tap], timeout: 20)
        _ = try? runCommand(["ip", "netns", "del", name], timeout: 20)
    }
}

/// Runs `arguments` (found on PATH through env), standard output and error
/// together; killed after `timeout` seconds (the output then says so).
private func runCommand(_ arguments: [String], timeout: Double) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let pid = process.processIdentifier
    let killer = DispatchWorkItem { kill(pid, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    killer.cancel()
    let killed = process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
    return (process.terminationStatus, output + (killed ? "\n(killed: no end within \(Int(timeout)) s)" : ""))
}

/// The bench's disk: `mib` MiB of numbered 4 KiB blocks (block number and
/// "BNCH" as little-endian words, then filler), which blk-verify checks.
private func writeBenchDisk(_ path: String, mib: Int) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil),
          let handle = FileHandle(forWritingAtPath: path) else { throw BenchError(description: "cannot create \(path)") }
    defer { try? handle.close() }
    var chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
    for mebibyte in 0..<mib {
        for block in 0..<256 {
            let number = UInt32(mebibyte * 256 + block)
            for i in 0..<4 {
                chunk[block * 4096 + i] = UInt8(truncatingIfNeeded: number >> (8 * UInt32(i)))
                chunk[block * 4096 + 4 + i] = UInt8(truncatingIfNeeded: UInt32(0x4843_4E42) >> (8 * UInt32(i)))
            }
        }
        try handle.write(contentsOf: chunk)
    }
    try handle.synchronize()
}

func virtioBenchmark(_ options: VirtioBenchOptions) throws {
    let heading = "## virtio devices: Deflect against QEMU (virtio-blk, virtio-net, ioeventfd on and off)"
    let guest = "Guests/build/multiboot/virtio.elf"
    guard FileManager.default.fileExists(atPath: guest) else {
        throw BenchError(description: "\(guest) missing: run `make -C Guests` from the repository root")
    }
    let deflect = try siblingDeflect()
    let disk = options.directory + "/deflect-bench-virtio-\(getpid()).img"
    defer { try? FileManager.default.removeItem(atPath: disk) }
    try writeBenchDisk(disk, mib: options.diskMiB)
    do throws(DirectFile.OpenError) {
        _ = try DirectFile(path: disk, readOnly: true)
    } catch {
        throw BenchError(description: "\(disk): \(error) (--virtio-dir names another directory)")
    }
    let netSkipped = BenchNamespace.unavailableReason()
    let namespace = netSkipped == nil ? BenchNamespace() : nil
    try namespace?.create()
    defer { namespace?.remove() }
    let qemuSkipped = QEMUPeer.unavailableReason()
    let subjects = VirtioSubject.allCases.filter { !$0.isQEMU || qemuSkipped == nil }

    let report = try BenchmarkSection.begin(heading, options: options.noise)
    var append = "blk-bench blk-verify blk-ops=\(options.blkOps) blk-seq-mib=\(options.sequentialMiB)"
    if namespace != nil { append += " net-bench net-frames=\(options.frames)" }
    let mac = "52:54:00:12:34:56"
    func command(_ subject: VirtioSubject) -> [String] {
        let off = subject.ioEventFD ? "" : ",ioeventfd=off"
        var vmm: [String]
        if subject.isQEMU {
            vmm = [QEMUPeer.binary, "-M", "pc", "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "128",
                   "-kernel", guest, "-append", append, "-nodefaults", "-serial", "stdio", "-display", "none", "-no-reboot",
                   "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                   "-drive", "file=\(disk),if=none,format=raw,cache=none,aio=threads,id=d0",
                   "-device", "virtio-blk-pci,drive=d0,disable-legacy=on\(off)"]
            if namespace != nil {
                vmm += ["-netdev", "tap,id=n0,ifname=\(BenchNamespace.tap),script=no,downscript=no",
                        "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,mac=\(mac)\(off)"]
            }
        } else {
            vmm = [deflect, "run", guest, "--memory", "128", "--timeout", "200", "--append", append,
                   "--disk", "path=\(disk),direct=on\(off)"]
            if namespace != nil { vmm += ["--net", "tap=\(BenchNamespace.tap),mac=\(mac)\(off)"] }
        }
        return namespace.map { ["ip", "netns", "exec", $0.name] + vmm } ?? vmm
    }

    var runs: [VirtioSubject: [GuestRun]] = [:]
    var loads: [VirtioSubject: [Double]] = [:]
    for round in 0..<options.rounds {
        // Alternate the order so that drift on the host hits every column alike.
        let order = round % 2 == 0 ? subjects : subjects.reversed()
        var line: [String] = []
        for subject in order {
            loads[subject, default: []].append(LoadAverage.current()?.oneMinute ?? .nan)
            let started = Date()
            let result = try runCommand(command(subject), timeout: 240)
            guard result.output.contains("RESULT pass") else {
                let tail = result.output.split(separator: "\n").suffix(8).joined(separator: " | ")
                throw BenchError(description: "round \(round + 1), \(subject.label): the guest did not pass (status \(result.status)): \(tail)")
            }
            runs[subject, default: []].append(GuestRun(output: result.output))
            line.append(String(format: "%@ %.1f s", subject.label, Date().timeIntervalSince(started)))
        }
        print("round \(round + 1): " + line.joined(separator: ", "))
    }

    // One TSC rate for every run: the guests' calibrations differ by the
    // PIT's jitter on a busy host, the TSC itself does not.
    let tscKHz = median(runs.values.flatMap { $0.compactMap(\.tscKHz) })
    guard tscKHz > 0 else { throw BenchError(description: "no guest reported its TSC rate") }
    func rates(_ subject: VirtioSubject, _ phase: String, unit: String) -> [Double] {
        (runs[subject] ?? []).compactMap { run in
            run.phases[phase].map { p in
                let seconds = p.cycles / (tscKHz * 1000)
                return unit == "MiB/s" ? p.bytes / 1_048_576 / seconds : p.ops / seconds
            }
        }
    }
    func cell(_ values: [Double]) -> String {
        guard let low = values.min(), let high = values.max() else { return "–" }
        return String(format: "%.0f (%.0f–%.0f)", median(values), low, high)
    }
    func ratio(_ a: [Double], _ b: [Double]) -> String {
        a.isEmpty || b.isEmpty ? "–" : String(format: "%.2f", median(a) / median(b))
    }
    var rows: [String] = []
    var targets: [Bool] = []
    for (phase, unit) in phases where !(phase.hasPrefix("net-") && namespace == nil) {
        let values = Dictionary(uniqueKeysWithValues: VirtioSubject.allCases.map { ($0, rates($0, phase, unit: unit)) })
        let versus = ratio(values[.deflect] ?? [], values[.qemu] ?? [])
        if let r = Double(versus) { targets.append(r >= 0.9) }
        rows.append("| \(phase) | \(unit) | " + VirtioSubject.allCases.map { cell(values[$0] ?? []) }.joined(separator: " | ")
                    + " | **\(versus)** | \(ratio(values[.deflect] ?? [], values[.deflectNoIOEventFD] ?? [])) | \(ratio(values[.qemu] ?? [], values[.qemuNoIOEventFD] ?? [])) |")
        print(rows.last ?? "")
    }
    let loadText = subjects.map { subject -> String in
        let values = (loads[subject] ?? []).filter { !$0.isNaN }
        return String(format: "%@ %.2f–%.2f", subject.label, values.min() ?? 0, values.max() ?? 0)
    }.joined(separator: "; ")
    let build = deflect.contains("/debug/") ? "debug" : "release"
    let qemuLine = qemuSkipped.map { "QEMU: **not measured**: \($0); Deflect's figures are recorded alone." }
        ?? "QEMU: \(QEMUPeer.version()), `-M pc -accel kvm -cpu host,-arch-capabilities -m 128`, `-drive file=F,if=none,format=raw,cache=none,aio=threads,id=d0 -device virtio-blk-pci,drive=d0,disable-legacy=on[,ioeventfd=off]`\(namespace == nil ? "" : ", `-netdev tap,id=n0,ifname=\(BenchNamespace.tap),script=no,downscript=no -device virtio-net-pci,netdev=n0,disable-legacy=on,mac=\(mac)[,ioeventfd=off]`")."
    let netLine = netSkipped.map { "virtio-net: **not measured**: \($0)." }
        ?? "virtio-net: the TAP `\(BenchNamespace.tap)` in a network namespace made for the run (up, IPv6 off; every VMM run inside it), frames to an address nobody has (the host's stack drops them)."
    let met = targets.isEmpty ? "no QEMU figures to judge" : "\(targets.filter { $0 }.count) of \(targets.count) phases within 10 % of QEMU or better"
    let section = """
    \(heading) (\(ISO8601DateFormatter().string(from: Date())))

    Command: `deflect-bench --virtio \(options.rounds)` (\(build) build of `deflect`), from the repository root. Guest: `\(guest)` with `\(append)` (Guests/multiboot/README.md, "virtio benchmark mode"), 128 MiB, 1 vCPU, the same ELF under every VMM.
    Disk: a raw file of \(options.diskMiB) MiB in \(options.directory) (numbered 4 KiB blocks, each checked by the guest), created for the run and removed after it. Deflect: `--disk path=F,direct=on[,ioeventfd=off]`\(namespace == nil ? "" : " `--net tap=\(BenchNamespace.tap),mac=\(mac)[,ioeventfd=off]`").
    \(qemuLine)
    \(netLine)
    Rounds: \(options.rounds), the four VMMs one after the other, the order reversed every other round. Each cell: median (min–max) over the rounds. Phases are timed by the guest's TSC, converted at \(String(format: "%.0f", tscKHz)) kHz (the median of the guests' PIT calibrations, one rate for every run): each ratio is a ratio of cycles. Deflect/QEMU: the rates' medians (above 1: Deflect faster; target at least 0.90); on/off: ioeventfd's gain over the notification exiting to user space.
    Host load average (1 min) before each VM run: \(loadText).
    Target (within 10 % of QEMU): \(met).

    | phase | unit | \(VirtioSubject.allCases.map(\.label).joined(separator: " | ")) | Deflect/QEMU | Deflect on/off | QEMU on/off |
    |---|---|---|---|---|---|---|---|---|
    \(rows.joined(separator: "\n"))

    """
    try report.write(section, to: options.output)
    print("results written to \(options.output)")
}
