// BenchmarkReport: the host's load average, as /proc/loadavg gives it.
import Foundation

/// The kernel's load averages: runnable and uninterruptible tasks, averaged
/// over 1, 5 and 15 minutes.
public struct LoadAverage: Sendable, Equatable, CustomStringConvertible {
    public var oneMinute: Double
    public var fiveMinutes: Double
    public var fifteenMinutes: Double

    public init(oneMinute: Double, fiveMinutes: Double, fifteenMinutes: Double) {
        self.oneMinute = oneMinute
        self.fiveMinutes = fiveMinutes
        self.fifteenMinutes = fifteenMinutes
    }

    /// Parses the first three fields of /proc/loadavg ("0.52 0.61 0.70 1/149 4485");
    /// nil for anything else.
    public init?(procLoadavg text: String) {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).prefix(3).map { Double($0) }
        guard fields.count == 3, let one = fields[0], let five = fields[1], let fifteen = fields[2],
              [one, five, fifteen].allSatisfy({ $0.isFinite && $0 >= 0 }) else { return nil }
        self.init(oneMinute: one, fiveMinutes: five, fifteenMinutes: fifteen)
    }

    /// The host's load now; nil where /proc/loadavg cannot be read.
    public static func current() -> LoadAverage? {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)).flatMap(LoadAverage.init(procLoadavg:))
    }

    /// "1.23 0.98 0.71" (1/5/15 min).
    public var description: String {
        String(format: "%.2f %.2f %.2f", oneMinute, fiveMinutes, fifteenMinutes)
    }
}
