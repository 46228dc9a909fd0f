// BenchmarkReport: BENCHMARKS.md, one "## " section per benchmark, each
// replaced in place when its benchmark runs again, and each saying the load
// it was measured under.
import Foundation

public enum BenchmarkFile {
    /// What a new file starts with.
    public static let preamble = "# Deflect benchmarks\n\nEach section says the command that produced it and when. Ratios are measured against a reference run in the same process run, on the same host.\n\n"

    /// `text` with the section that starts with the line beginning `heading`
    /// (up to the next "## " line) replaced by `section`, or `section`
    /// appended when there is none. Sections are separated by one blank line.
    public static func replacingSection(in text: String, heading: String, with section: String) -> String {
        var body = section
        while body.hasSuffix("\n") { body.removeLast() }
        body += "\n\n"
        let start: String.Index?
        if text.hasPrefix(heading) {
            start = text.startIndex
        } else {
            start = text.range(of: "\n" + heading).map { text.index(after: $0.lowerBound) }
        }
        guard let start else {
            var appended = text
            // A section written by another tool may end without the blank line.
            while !appended.isEmpty && !appended.hasSuffix("\n\n") { appended += "\n" }
            return appended + body
        }
        let end = text.range(of: "\n## ", range: text.index(after: start)..<text.endIndex).map { text.index(after: $0.lowerBound) }
        return String(text[..<start]) + body + (end.map { String(text[$0...]) } ?? "")
    }

    /// Replaces (or appends) the section in the file at `path`, atomically;
    /// a missing file starts with `preamble`.
    public static func replaceSection(in path: String, heading: String, with section: String) throws {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? preamble
        try replacingSection(in: text, heading: heading, with: section).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// `section` with the load it was measured under: a line after its
    /// heading line and, for a noisy section, " — noisy" on the heading and
    /// a last column in every table saying the load, so that no figure is
    /// read without it.
    public static func stamped(_ section: String, load: LoadAverage?, verdict: SectionVerdict, threshold: Double) -> String {
        let loadText = load.map { "\($0) (1/5/15 min)" } ?? "unknown (/proc/loadavg unreadable)"
        var lines = section.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let headingIndex = lines.firstIndex(where: { $0.hasPrefix("## ") }) else { return section }
        let noisy = verdict == .noisy
        if noisy { lines[headingIndex] += " — noisy" }
        let note = noisy
            ? "**Noisy**: host load average before the section \(loadText), above \(String(format: "%.1f", threshold)); written with `--allow-noisy`: read these figures as upper bounds, not as Deflect's cost."
            : "Host load average before the section: \(loadText) (at most \(String(format: "%.1f", threshold)): quiet)."
        lines.insert(contentsOf: ["", note], at: headingIndex + 1)
        guard noisy else { return lines.joined(separator: "\n") }
        let cell = load.map { String(format: "%.2f noisy", $0.oneMinute) } ?? "unknown, noisy"
        var inTable = false
        for i in lines.indices {
            let line = lines[i].trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("|") && line.hasSuffix("|") && line.count > 1 else {
                inTable = false
                continue
            }
            let isSeparator = line.allSatisfy { "|-: ".contains($0) }
            if !inTable {
                lines[i] = line + " host load (1 min) |"
                inTable = true
            } else if isSeparator {
                lines[i] = line + "---|"
            } else {
                lines[i] = line + " \(cell) |"
            }
        }
        return lines.joined(separator: "\n")
    }
}
