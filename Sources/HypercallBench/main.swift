// main.swift — hypercall-bench: cost of the GPA attribute map behind
// KVM_HC_MAP_GPA_RANGE. 10⁶ random conversions over a 64 GiB guest-physical
// space, then 10⁶ random point queries; prints a BENCHMARKS.md section and,
// with --output FILE, replaces that section in FILE (after the host-load
// check every benchmark section makes: --allow-noisy, --settle SECONDS).

import BenchmarkReport
import SeededRandom
import Foundation
import Hypercalls

struct Options {
    var updates = 1_000_000
    var queries = 1_000_000
    var rounds = 3
    var seed: UInt64 = 0x6A_7E_BE_4C
    var output: String?
    var noise = NoiseOptions()
    var arguments: [String] = []
}

func usage() -> Never {
    print("usage: hypercall-bench [--updates N] [--queries N] [--rounds N] [--seed N] [--output FILE] [--allow-noisy] [--settle SECONDS]")
    exit(2)
}

func parseOptions() -> Options {
    var options = Options()
    var args = Array(CommandLine.arguments.dropFirst())
    options.arguments = args
    while !args.isEmpty {
        let flag = args.removeFirst()
        if flag == "--help" || flag == "-h" { usage() }
        do {
            if try options.noise.parse(flag, next: { args.isEmpty ? nil : args.removeFirst() }) { continue }
        } catch {
            print(error)
            usage()
        }
        guard let value = args.first else { usage() }
        args.removeFirst()
        switch flag {
        case "--updates": options.updates = Int(value).flatMap { $0 > 0 ? $0 : nil } ?? { usage() }()
        case "--queries": options.queries = Int(value).flatMap { $0 > 0 ? $0 : nil } ?? { usage() }()
        case "--rounds": options.rounds = Int(value).flatMap { $0 > 0 ? $0 : nil } ?? { usage() }()
        case "--seed": options.seed = UInt64(value) ?? { usage() }()
        case "--output": options.output = value
        default: usage()
        }
    }
    return options
}

struct Workload {
    var name: String
    var pageSizes: [UInt64]
}

struct Result {
    var workload: String
    var nsPerUpdate: Double
    var nsPerQuery: Double
    var finalRanges: Int
    var peakRanges: Int
    var sharedBytes: UInt64
}

let space: UInt64 = 64 << 30

/// Random page-aligned conversions: page size from `pageSizes`, 1...512
/// pages (clamped to the space), start a random multiple of the page size.
func makeUpdates(_ workload: Workload, count: Int, rng: inout SeededGenerator) -> [(Range<UInt64>, PageAttribute)] {
    (0..<count).map { _ in
        let pageSize = workload.pageSizes[Int(rng.next() % UInt64(workload.pageSizes.count))]
        let length = min((1 + rng.next() % 512) * pageSize, space)
        let slots = (space - length) / pageSize + 1
        let start = (rng.next() % slots) * pageSize
        return (start..<start + length, rng.next() & 1 == 0 ? .shared : .private)
    }
}

func nanoseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

func run(_ workload: Workload, options: Options) -> Result {
    var rng = SeededGenerator(state: options.seed)
    let updates = makeUpdates(workload, count: options.updates, rng: &rng)
    let addresses = (0..<options.queries).map { _ in rng.next() % space }
    let clock = ContinuousClock()
    var updateTimes: [Double] = []
    var queryTimes: [Double] = []
    var final = GPAAttributeMap(size: space)
    var peak = 1
    for _ in 0..<options.rounds {
        var map = GPAAttributeMap(size: space)
        var roundPeak = 1
        let start = clock.now
        for (range, attribute) in updates {
            map.set(range, to: attribute)
            roundPeak = max(roundPeak, map.rangeCount)
        }
        updateTimes.append(nanoseconds(clock.now - start) / Double(updates.count))

        var shared = 0
        let queryStart = clock.now
        for address in addresses where map.attribute(at: address) == .shared {
            shared += 1
        }
        queryTimes.append(nanoseconds(clock.now - queryStart) / Double(addresses.count))
        // Keeps the query loop from being optimized away.
        if shared > addresses.count { print("impossible") }
        final = map
        peak = roundPeak
    }
    return Result(workload: workload.name, nsPerUpdate: median(updateTimes), nsPerQuery: median(queryTimes),
                  finalRanges: final.rangeCount, peakRanges: peak, sharedBytes: final.sharedBytes)
}

func timestamp() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: Date())
}

let heading = "## GPA attribute map"

func section(_ results: [Result], options: Options) -> String {
    let command = (["hypercall-bench"] + options.arguments).joined(separator: " ")
    var lines = [
        "\(heading) (`make bench`, \(timestamp()))",
        "",
        "Command: `make bench` (= `\(command)`), release build.",
        "`GPAAttributeMap` (treap of range starts) over a 64 GiB guest-physical space, all private at first.",
        "Updates: \(options.updates) random conversions to shared or private, each 1–512 pages of a page size drawn from the workload's sizes, start aligned to that size (clamped to the space); seed \(options.seed).",
        "Queries: \(options.queries) `attribute(at:)` at uniformly random addresses on the final map.",
        "Median of \(options.rounds) rounds over the same inputs; mean ns per operation; peak = most ranges held at once.",
        "",
        "| workload | ns/update | ns/query | final ranges | peak ranges | shared at end |",
        "|---|---|---|---|---|---|",
    ]
    for result in results {
        let sharedGiB = Double(result.sharedBytes) / Double(1 << 30)
        lines.append("| \(result.workload) | \(String(format: "%.0f", result.nsPerUpdate)) | \(String(format: "%.0f", result.nsPerQuery)) | \(result.finalRanges) | \(result.peakRanges) | \(String(format: "%.1f", sharedGiB)) GiB |")
    }
    return lines.joined(separator: "\n") + "\n"
}

let options = parseOptions()
// Only a section that is written needs a quiet host.
let report: BenchmarkSection?
do {
    report = try options.output.map { _ in try BenchmarkSection.begin(heading, options: options.noise) }
} catch {
    FileHandle.standardError.write(Data("hypercall-bench: \(error)\n".utf8))
    exit(3)
}
let workloads = [
    Workload(name: "mixed 4K/2M/1G", pageSizes: [4096, 2 << 20, 1 << 30]),
    Workload(name: "4K only", pageSizes: [4096]),
    Workload(name: "2M only", pageSizes: [2 << 20]),
]
let results = workloads.map { run($0, options: options) }
let text = section(results, options: options)
print(text, terminator: "")

if let path = options.output, let report {
    do {
        try report.write(text, to: path)
        print("wrote \(path)")
    } catch {
        FileHandle.standardError.write(Data("hypercall-bench: cannot write \(path): \(error)\n".utf8))
        exit(1)
    }
}
