// BenchmarkReport: one section of BENCHMARKS.md from the load check before
// it is measured to the write after: `begin` waits for a quiet host and
// refuses a busy one (unless noisy figures are allowed); `write` stamps the
// section with that load.
import Foundation

/// A section was not measured: the host was busy.
public struct RefusedSection: Error, CustomStringConvertible {
    public let description: String
}

/// A noise option with a bad value.
public struct NoiseOptionError: Error, CustomStringConvertible {
    public let description: String
}

/// The options every benchmark section shares: `--allow-noisy`, `--settle SECONDS`.
public struct NoiseOptions: Sendable, Equatable {
    public var gate = NoiseGate()
    /// How long to wait for the load to fall before refusing.
    public var settleSeconds: Double = 90

    public init() {}

    /// Takes the option `flag` (and its value from `next`) when it is one of
    /// these; false when it is not. Throws a usage line for a bad value.
    public mutating func parse(_ flag: String, next: () -> String?) throws(NoiseOptionError) -> Bool {
        switch flag {
        case "--allow-noisy":
            gate.allowNoisy = true
        case "--settle":
            guard let value = next().flatMap(Double.init), value >= 0, value <= 3600 else {
                throw NoiseOptionError(description: "--settle needs the seconds to wait for a quiet host (0–3600)")
            }
            settleSeconds = value
        default:
            return false
        }
        return true
    }
}

public struct BenchmarkSection: Sendable {
    public let heading: String
    public let gate: NoiseGate
    /// The host's load just before the measurement.
    public let loadBefore: LoadAverage?
    public let verdict: SectionVerdict
    /// How long `begin` waited for the load to fall.
    public let waitedSeconds: Double

    /// Checks the host before a section is measured: waits up to the
    /// options' settle time for the load to fall to the threshold, then
    /// throws `RefusedSection` if the host is still busy and noisy figures
    /// are not allowed.
    public static func begin(_ heading: String, options: NoiseOptions) throws(RefusedSection) -> BenchmarkSection {
        let (load, waited) = options.gate.settle(maximumSeconds: options.settleSeconds,
                                                 read: LoadAverage.current,
                                                 sleep: { Thread.sleep(forTimeInterval: $0) })
        let verdict = options.gate.verdict(for: load)
        guard verdict != .refused else {
            throw RefusedSection(description: options.gate.refusal(heading: heading, load: load, waitedSeconds: waited))
        }
        if verdict == .noisy {
            print("\(heading): host load \(load.map { "\($0)" } ?? "unknown"): measuring anyway (--allow-noisy), marked noisy")
        }
        return BenchmarkSection(heading: heading, gate: options.gate, loadBefore: load, verdict: verdict, waitedSeconds: waited)
    }

    /// Replaces this section in the file at `path` with `body` (which starts
    /// with the heading line), stamped with the load it was measured under.
    public func write(_ body: String, to path: String) throws {
        try BenchmarkFile.replaceSection(in: path, heading: heading,
                                         with: BenchmarkFile.stamped(body, load: loadBefore, verdict: verdict, threshold: gate.threshold))
    }
}
