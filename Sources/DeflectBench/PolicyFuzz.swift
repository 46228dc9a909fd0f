// deflect-bench --policy-fuzz N: the policy-file fuzz run of `make bench`.
// N inputs (seeded mutations of examples/policies/*.toml plus random bytes)
// go through the whole policy parser, as `deflect policy check` and SIGHUP
// reloads use it; a trap ends the run, so finishing is the result. Prints
// and writes to BENCHMARKS.md how many were accepted and rejected, and the time.
import BenchmarkReport
import Dispatch
import Foundation
import MSRPolicy
import SeededRandom

func policyFuzz(count: Int, seed: UInt64, output: String, noise: NoiseOptions) throws {
    let directory = "examples/policies"
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".toml") }.sorted()
    let corpus = names.compactMap { FileManager.default.contents(atPath: "\(directory)/\($0)").map { [UInt8]($0) } }
    guard !corpus.isEmpty else { throw BenchError(description: "no policies in \(directory): run `make bench` from the repository root") }

    let report = try BenchmarkSection.begin("## Policy parser fuzz", options: noise)
    var accepted = 0, syntaxErrors = 0, policyErrors = 0, bytes = 0
    let start = DispatchTime.now().uptimeNanoseconds
    for input in FuzzInputs(corpus: corpus, count: count, seed: seed) {
        bytes += input.count
        do {
            _ = try PolicyParser.parse(String(decoding: input, as: UTF8.self), file: "fuzz.toml",
                                       knownProviders: ValueProviders.names, knownProfiles: CPUProfiles.names)
            accepted += 1
        } catch {
            if error.errors.first?.message.hasPrefix("TOML syntax") == true { syntaxErrors += 1 } else { policyErrors += 1 }
        }
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let summary = String(format: "%d inputs parsed in %.2f s (%.1f µs each): %d accepted, %d rejected (%d TOML syntax, %d policy checks)",
                         count, seconds, seconds * 1e6 / Double(max(count, 1)), accepted, syntaxErrors + policyErrors,
                         syntaxErrors, policyErrors)
    print(summary)

    let section = """
    ## Policy parser fuzz (`make bench`, \(ISO8601DateFormatter().string(from: Date())))

    Command: `make bench` (= `.build/release/deflect-bench --policy-fuzz \(count) --seed \(seed)`), release build.
    Inputs: seeded edits of \(names.joined(separator: ", ")) (1–8 byte or run insertions, deletions, replacements, copies) and, one in five, random bytes; \(bytes) bytes in all. Each goes through `PolicyParser.parse` with the known providers and profiles, as `deflect policy check` and SIGHUP reloads do. A trap would end the run: none did.

    \(summary).
    """
    try report.write(section, to: output)
    print("results written to \(output)")
}
