// BenchmarkReport: whether a benchmark section may be measured and written,
// from the host's load average before it. Timings taken while other work
// shares the cores say more about that work than about Deflect, so a busy
// host is refused unless the caller accepts noisy figures, and those are
// marked wherever the section is written.

/// What to do with a section, decided from the load before it is measured.
public enum SectionVerdict: Sendable, Equatable {
    /// The host was quiet: measure and write.
    case quiet
    /// The host was busy (or its load unknown) and the caller allowed it:
    /// measure, and mark the section noisy.
    case noisy
    /// The host was busy (or its load unknown): neither measure nor write.
    case refused
}

public struct NoiseGate: Sendable, Equatable {
    /// The highest 1-minute load average at which a section counts as quiet.
    public var threshold: Double
    /// `--allow-noisy`: measure and write on a busy host, marked noisy.
    public var allowNoisy: Bool

    public static let defaultThreshold = 1.0

    public init(threshold: Double = NoiseGate.defaultThreshold, allowNoisy: Bool = false) {
        self.threshold = threshold
        self.allowNoisy = allowNoisy
    }

    /// The verdict for a section measured at `load` (nil: unreadable, which
    /// cannot vouch for a quiet host).
    public func verdict(for load: LoadAverage?) -> SectionVerdict {
        if let load, load.oneMinute <= threshold { return .quiet }
        return allowNoisy ? .noisy : .refused
    }

    /// Waits up to `maximumSeconds` for the 1-minute load to fall to the
    /// threshold (the previous section's own work, a build that just ended),
    /// reading it every `pollSeconds`; no wait when noisy figures are allowed.
    /// Returns the last reading and how long it waited. `read` and `sleep`
    /// are the host's in a benchmark and scripted in tests.
    public func settle(maximumSeconds: Double, pollSeconds: Double = 5,
                       read: () -> LoadAverage?, sleep: (Double) -> Void) -> (load: LoadAverage?, waitedSeconds: Double) {
        var waited = 0.0
        var load = read()
        while !allowNoisy, verdict(for: load) != .quiet, load != nil, waited + pollSeconds <= maximumSeconds, pollSeconds > 0 {
            sleep(pollSeconds)
            waited += pollSeconds
            load = read()
        }
        return (load, waited)
    }

    /// The line that explains a refusal, naming the way past it.
    public func refusal(heading: String, load: LoadAverage?, waitedSeconds: Double) -> String {
        let measured = load.map { String(format: "the host's 1-minute load average is %.2f", $0.oneMinute) }
            ?? "the host's load average cannot be read (/proc/loadavg)"
        let wait = waitedSeconds > 0 ? String(format: " after waiting %.0f s for it to fall", waitedSeconds) : ""
        return "not measuring \"\(heading)\": \(measured)\(wait), above \(String(format: "%.1f", threshold)); "
            + "rerun on a quiet host, or pass --allow-noisy to write it marked as noisy"
    }
}
