// deflect-bench --snapshot-fuzz N: the state-file reader's fuzz run of
// `make bench`. N inputs made from a real state file (the section names and
// kinds of payload a VM snapshot has) go through `SnapshotFile(parsing:)`:
// one third single-bit flips, one third truncations, one third seeded edits
// (FuzzInputs). A trap ends the run, so finishing is the result; a flipped
// bit or a truncation that is accepted counts as a failure.
import BenchmarkReport
import Dispatch
import Foundation
import SeededRandom
import Snapshot

enum SnapshotFuzz {
    struct Result {
        var inputs = 0
        var accepted = 0
        /// Bit flips and truncations that parsed: each one a missed corruption.
        var undetected = 0
        var rejections: [String: Int] = [:]
        var seconds = 0.0
    }

    /// A state file shaped like a 2-vCPU VM's: JSON models and raw blobs.
    static func corpusFile() throws -> [UInt8] {
        var file = SnapshotFile(kvmAPIVersion: 12, host: SnapshotHost(vendor: "GenuineIntel", family: 6, model: 0x8F, stepping: 8))
        try file.append(section: "config", encoding: ["memory": "64M", "vcpus": "2", "policy": "[msr.0x10]\naction = \"emulate\""])
        for vcpu in 0..<2 {
            try file.append(section: "vcpu.\(vcpu)", payload: (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* (vcpu + 3)) })
        }
        try file.append(section: "vm", encoding: ["clock": 123_456_789, "pit": 0])
        try file.append(section: "devices", encoding: ["serial16550@0x3f8": [0x0C, 0x00, 0x03]])
        try file.append(section: "msr-runtime", encoding: ["0x10": 42, "0x611": 7])
        try file.append(section: "hypercalls", encoding: ["shared": [[0x1000, 0x2000]]])
        try file.append(section: "memory-layout", encoding: ["ram": [0, 64 << 20]])
        return try file.serialized()
    }

    static func run(count: Int, seed: UInt64) throws -> Result {
        let original = try corpusFile()
        var generator = SeededGenerator(seed: seed)
        var edits = FuzzInputs(corpus: [original], count: count, seed: seed &+ 1)
        var result = Result()
        let start = DispatchTime.now().uptimeNanoseconds
        for index in 0..<count {
            var input = original
            let corrupting = index % 3 != 2
            switch index % 3 {
            case 0:
                let bit = Int.random(in: 0..<(original.count * 8), using: &generator)
                input[bit / 8] ^= 1 << (bit % 8)
            case 1:
                input.removeLast(Int.random(in: 1...original.count, using: &generator))
            default:
                input = edits.next() ?? []
            }
            result.inputs += 1
            do {
                _ = try SnapshotFile(parsing: input)
                result.accepted += 1
                if corrupting { result.undetected += 1 }
            } catch {
                // The error's case name (truncated, headerCRCMismatch, ...).
                result.rejections[Mirror(reflecting: error).children.first?.label ?? "\(error)", default: 0] += 1
            }
        }
        result.seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return result
    }
}

func snapshotFuzz(count: Int, seed: UInt64, output: String, noise: NoiseOptions) throws {
    let report = try BenchmarkSection.begin("## Snapshot reader fuzz", options: noise)
    let result = try SnapshotFuzz.run(count: count, seed: seed)
    let summary = String(format: "%d inputs parsed in %.2f s (%.1f µs each): %d accepted, %d rejected, %d corruptions undetected",
                         result.inputs, result.seconds, result.seconds * 1e6 / Double(max(result.inputs, 1)),
                         result.accepted, result.inputs - result.accepted, result.undetected)
    print(summary)
    let reasons = result.rejections.sorted { $0.value > $1.value }.map { "\($0.value) × \($0.key)" }.joined(separator: "; ")
    let section = """
    ## Snapshot reader fuzz (`make bench`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `make bench` (= `.build/release/deflect-bench --snapshot-fuzz \(count) --seed \(seed)`), release build.
    Inputs: a \(try SnapshotFuzz.corpusFile().count)-byte state file shaped like a 2-vCPU VM's (config, vcpu.0, vcpu.1, vm, devices, msr-runtime, hypercalls, memory-layout); one third single-bit flips, one third truncations, one third seeded edits. Each goes through `SnapshotFile(parsing:)`. A trap would end the run: none did.

    \(summary).
    Rejections: \(reasons).
    """
    try report.write(section, to: output)
    print("results written to \(output)")
    guard result.undetected == 0 else {
        throw BenchError(description: "\(result.undetected) bit flips or truncations were accepted")
    }
}
