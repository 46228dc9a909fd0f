// BenchmarkReportTests.swift — the benchmark noise gate: reading the load
// average, the quiet/noisy/refused decision, waiting for a quiet host, and
// how a section is stamped and replaced in BENCHMARKS.md.

import Testing
@testable import BenchmarkReport

@Suite struct LoadAverageTests {
    @Test func parsesTheFirstThreeFieldsOfProcLoadavg() {
        #expect(LoadAverage(procLoadavg: "0.52 1.61 12.70 1/149 4485\n")
            == LoadAverage(oneMinute: 0.52, fiveMinutes: 1.61, fifteenMinutes: 12.70))
    }

    @Test(arguments: ["", "0.52 0.61", "a b c 1/2 3", "-1.0 0.5 0.5 1/2 3", "nan 0 0 1/1 1"])
    func rejectsWhatIsNotALoadLine(_ text: String) {
        #expect(LoadAverage(procLoadavg: text) == nil)
    }

    @Test func theHostsLoadIsReadable() throws {
        let load = try #require(LoadAverage.current())
        #expect(load.oneMinute >= 0)
    }
}

@Suite struct NoiseGateTests {
    func load(_ one: Double) -> LoadAverage { LoadAverage(oneMinute: one, fiveMinutes: 9, fifteenMinutes: 9) }

    @Test func aQuietHostIsMeasuredWhateverTheOtherAverages() {
        let gate = NoiseGate()
        #expect(gate.verdict(for: load(0)) == .quiet)
        #expect(gate.verdict(for: load(1.0)) == .quiet)   // "above 1.0" is refused, 1.0 itself is not
    }

    @Test func aBusyHostIsRefusedUnlessNoiseIsAllowed() {
        #expect(NoiseGate().verdict(for: load(1.01)) == .refused)
        #expect(NoiseGate(allowNoisy: true).verdict(for: load(1.01)) == .noisy)
        #expect(NoiseGate(threshold: 2).verdict(for: load(1.5)) == .quiet)
    }

    @Test func anUnknownLoadCannotVouchForAQuietHost() {
        #expect(NoiseGate().verdict(for: nil) == .refused)
        #expect(NoiseGate(allowNoisy: true).verdict(for: nil) == .noisy)
    }

    /// Scripted readings: the gate sleeps between them until one is quiet or the time is up.
    func settle(_ gate: NoiseGate, readings: [Double?], maximum: Double) -> (LoadAverage?, Double, [Double]) {
        var remaining = readings
        var sleeps: [Double] = []
        let (last, waited) = gate.settle(maximumSeconds: maximum, pollSeconds: 5,
                                         read: { remaining.isEmpty ? nil : remaining.removeFirst().map { load($0) } },
                                         sleep: { sleeps.append($0) })
        return (last, waited, sleeps)
    }

    @Test func waitsForTheLoadToFall() {
        let (last, waited, sleeps) = settle(NoiseGate(), readings: [3, 2, 0.9, 0.1], maximum: 60)
        #expect(last == load(0.9))
        #expect(waited == 10)
        #expect(sleeps == [5, 5])
    }

    @Test func givesUpAfterTheMaximumWait() {
        let (last, waited, _) = settle(NoiseGate(), readings: [3, 3, 3, 3, 3], maximum: 12)
        #expect(last == load(3))
        #expect(waited == 10)
        #expect(NoiseGate().verdict(for: last) == .refused)
    }

    @Test func doesNotWaitWhenQuietOrWhenNoiseIsAllowedOrTheLoadIsUnreadable() {
        #expect(settle(NoiseGate(), readings: [0.5], maximum: 60).1 == 0)
        #expect(settle(NoiseGate(allowNoisy: true), readings: [4], maximum: 60).1 == 0)
        #expect(settle(NoiseGate(), readings: [nil], maximum: 60).1 == 0)
    }

    @Test func theRefusalSaysTheLoadAndTheWayPastIt() {
        let line = NoiseGate().refusal(heading: "## MSR exit path", load: load(3.5), waitedSeconds: 90)
        #expect(line.contains("3.50"))
        #expect(line.contains("90 s"))
        #expect(line.contains("--allow-noisy"))
        #expect(line.contains("## MSR exit path"))
    }

    @Test func noiseOptionsParseTheirFlagsOnly() throws {
        var options = NoiseOptions()
        var values = ["30"]
        #expect(try options.parse("--allow-noisy", next: { nil }))
        #expect(try options.parse("--settle", next: { values.removeFirst() }))
        #expect(try !options.parse("--rounds", next: { "3" }))
        #expect(options.gate.allowNoisy)
        #expect(options.settleSeconds == 30)
        #expect(throws: NoiseOptionError.self) { try options.parse("--settle", next: { "soon" }) }
    }
}

@Suite struct BenchmarkFileTests {
    let section = """
    ## Start-up (`make bench`, now)

    Some text.

    | what | ms |
    |---|---|
    | C | 3.0 |
    | Deflect | 9.0 |

    Closing words.
    """

    @Test func aQuietSectionSaysItsLoadAndKeepsItsTables() {
        let stamped = BenchmarkFile.stamped(section, load: LoadAverage(oneMinute: 0.4, fiveMinutes: 0.5, fifteenMinutes: 0.6),
                                            verdict: .quiet, threshold: 1)
        #expect(stamped.contains("Host load average before the section: 0.40 0.50 0.60 (1/5/15 min)"))
        #expect(stamped.contains("| C | 3.0 |\n"))
        #expect(!stamped.contains("noisy"))
    }

    @Test func aNoisySectionIsMarkedOnItsHeadingAndInEveryTableRow() {
        let stamped = BenchmarkFile.stamped(section, load: LoadAverage(oneMinute: 3.25, fiveMinutes: 2, fifteenMinutes: 1),
                                            verdict: .noisy, threshold: 1)
        let lines = stamped.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0] == "## Start-up (`make bench`, now) — noisy")
        #expect(stamped.contains("| what | ms | host load (1 min) |"))
        #expect(stamped.contains("|---|---|---|"))
        #expect(stamped.contains("| C | 3.0 | 3.25 noisy |"))
        #expect(stamped.contains("| Deflect | 9.0 | 3.25 noisy |"))
        #expect(stamped.contains("Closing words."))
    }

    @Test func replacesOnlyItsOwnSection() {
        let file = "# Title\n\nIntro.\n\n## A (1)\n\nold a\n\n## B (1)\n\nold b\n"
        let replaced = BenchmarkFile.replacingSection(in: file, heading: "## A", with: "## A (2)\n\nnew a\n")
        #expect(replaced == "# Title\n\nIntro.\n\n## A (2)\n\nnew a\n\n## B (1)\n\nold b\n")
        let last = BenchmarkFile.replacingSection(in: file, heading: "## B", with: "## B (2)\n\nnew b")
        #expect(last == "# Title\n\nIntro.\n\n## A (1)\n\nold a\n\n## B (2)\n\nnew b\n\n")
    }

    @Test func appendsAMissingSectionAfterABlankLine() {
        let appended = BenchmarkFile.replacingSection(in: "# Title\nIntro.", heading: "## C", with: "## C (1)\n\nc\n")
        #expect(appended == "# Title\nIntro.\n\n## C (1)\n\nc\n\n")
    }

    @Test func aHeadingInsideALineIsNotASection() {
        let file = "# T\n\nSee ## A below.\n\n## A (1)\n\na\n"
        #expect(BenchmarkFile.replacingSection(in: file, heading: "## A", with: "## A (2)\n")
            == "# T\n\nSee ## A below.\n\n## A (2)\n\n")
    }
}
