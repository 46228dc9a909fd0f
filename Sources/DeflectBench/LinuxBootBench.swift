// deflect-bench --linux-boot N: how long a stock Linux kernel takes to start
// logging and to reach a fixed later line under Deflect, against QEMU -M pc
// and -M microvm with KVM: the same kernel (the Debian guest of
// scripts/debian-linux-guest, booted through PVH), initramfs, command line,
// CPU and RAM, one after the other in each of N rounds. Each round is one
// run of scripts/compare-linux-boot-with-qemu --stop-after, which times the
// serial lines as they arrive (VMM start to line) and checks that the two
// logs agree up to there.
import BenchmarkReport
import Foundation

/// The line each run is timed to and then ended at: the kernel has parsed
/// the MADT (after e820, the initrd, ACPI, kvm-clock and TSC calibration).
private let laterLine = "smpboot: Allowing"

func linuxBootBenchmark(rounds: Int, output: String, noise: NoiseOptions) throws {
    let script = "scripts/compare-linux-boot-with-qemu"
    guard FileManager.default.isExecutableFile(atPath: script) else {
        throw BenchError(description: "\(script) missing: run deflect-bench from the repository root")
    }
    let deflect = try siblingDeflect()
    let report = try BenchmarkSection.begin("## Linux boot: Deflect against QEMU pc and microvm", options: noise)
    let subjects = ["deflect", "qemu -M pc", "qemu -M microvm"]
    var firstLine: [String: [Double]] = [:], later: [String: [Double]] = [:]
    var verdicts: [String] = []
    let json = NSTemporaryDirectory() + "deflect-bench-linux-\(getpid()).json"
    defer { try? FileManager.default.removeItem(atPath: json) }
    for round in 0..<rounds {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: script)
        process.arguments = ["--deflect", deflect, "--machine", "pc", "--machine", "microvm",
                             "--stop-after", laterLine, "--json", json]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let printed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 77 {
            let reason = printed.trimmingCharacters(in: .whitespacesAndNewlines)
            try report.write("## Linux boot: Deflect against QEMU pc and microvm\n\nNot measured: \(reason)\n\n", to: output)
            print("not measured: \(reason)")
            return
        }
        verdicts.append(printed.split(separator: "\n").last.map(String.init) ?? "")
        guard let data = FileManager.default.contents(atPath: json),
              let document = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let deflectRun = document["deflect"] as? [String: Any],
              let qemu = document["qemu"] as? [String: Any] else {
            throw BenchError(description: "\(script) wrote no JSON (status \(process.terminationStatus)): \(printed)")
        }
        let runs: [(String, [String: Any]?)] = [("deflect", deflectRun), ("qemu -M pc", qemu["pc"] as? [String: Any]),
                                                ("qemu -M microvm", qemu["microvm"] as? [String: Any])]
        for (name, run) in runs {
            guard let run, let first = run["first_line_seconds"] as? Double,
                  let laterTimes = run["later_lines_seconds"] as? [String: Any],
                  let reached = laterTimes[laterLine] as? Double else {
                throw BenchError(description: "round \(round + 1): \(name) did not reach '\(laterLine)': \(printed)")
            }
            firstLine[name, default: []].append(first)
            later[name, default: []].append(reached)
        }
        print("round \(round + 1): " + subjects.map { "\($0) \(later[$0]?.last ?? 0) s" }.joined(separator: ", "))
    }
    let microvm = median(later["qemu -M microvm"] ?? [])
    var rows: [String] = []
    for name in subjects {
        let reached = median(later[name] ?? [])
        rows.append(String(format: "| %@ | %.2f | %.2f | **%.2f×** |", name, median(firstLine[name] ?? []), reached, reached / microvm))
    }
    let met = median(later["deflect"] ?? []) <= microvm
    let agreed = verdicts.allSatisfy { $0 == "agree" }
    let section = """
    ## Linux boot: Deflect against QEMU pc and microvm (`make bench`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `make bench` (= `deflect-bench --linux-boot \(rounds)`), \(deflect.contains("/debug/") ? "debug" : "release") build of `deflect` (the guest's time in KVM's emulator dominates); each round runs `scripts/compare-linux-boot-with-qemu --machine pc --machine microvm --stop-after '\(laterLine)'`.
    Kernel: Debian's `linux-image-amd64` vmlinux through PVH with the busybox initramfs of `scripts/debian-linux-guest`, 256 MiB, 1 vCPU, `console=ttyS0 earlyprintk=ttyS0 noxsave`, `--cpu host,-cx16` (QEMU: `-cpu host,-cx16,-arch-capabilities -nodefaults`, KVM).
    Times: seconds from starting the VMM process to the serial line arriving (median of \(rounds)); ratio against QEMU microvm's time to '\(laterLine)'. On this nested host the kernel runs in KVM's instruction emulator, so these are seconds, not milliseconds.
    Logs agree up to there in every round (same kernel, command line, CPUs, initrd, ACPI tables): \(agreed ? "yes" : "**no**: " + verdicts.joined(separator: ", ")).
    Target: Deflect at most QEMU microvm (\(met ? "met" : "**not met**")).

    | VMM | first log line s | '\(laterLine)' s | vs QEMU microvm |
    |---|---|---|---|
    \(rows.joined(separator: "\n"))

    """
    try report.write(section, to: output)
    print("results written to \(output)")
}
