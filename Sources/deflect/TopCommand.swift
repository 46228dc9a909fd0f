// deflect top: a live view of a running VM's exits through its control API
// (`GET /stats` and `GET /vm` every interval, rendered by `TopView`): a
// redrawn screen on a terminal, one plain line group per interval otherwise.
import ArgumentParser
import ControlAPI
import FoundationEssentials
import Glibc
import VMM

struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live view of a running VM's exits: rates by kind, the hottest MSRs and ports, vCPUs, KVM's counters.",
        discussion: """
        On a terminal the screen is redrawn every interval until SIGINT (Ctrl-C), the VM stops or \
        --iterations refreshes are shown; otherwise (or with --plain) one group of plain lines is \
        written per interval. Rates are per second over the last interval; latency percentiles cover \
        the whole run. Exit status: 0 done (also when the VM stops); 64 usage error; 66 the VM refused \
        the request; 70 the API socket cannot be reached or the API failed; 74 standard output could \
        not be written.
        """
    )

    @Option(help: "The VM's API socket (the PATH given to deflect run --api-socket).")
    var socket: String

    @Option(help: "Seconds between refreshes (0.1 to 3600).")
    var interval: Double = 1

    @Option(help: "Stop after this many refreshes (default: until the VM stops or SIGINT).")
    var iterations: Int?

    @Flag(help: "Plain lines even on a terminal (one group per interval, for a log or a pipe).")
    var plain = false

    func validate() throws {
        guard interval.isFinite, interval >= 0.1, interval <= 3600 else {
            throw ValidationError("--interval must be between 0.1 and 3600 seconds")
        }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
    }

    func run() async throws {
        let session = TopSession(client: ControlClient(socketPath: socket, timeout: .seconds(10)),
                                 terminal: !plain && isatty(STDOUT_FILENO) == 1,
                                 interval: .milliseconds(Int64((interval * 1000).rounded())), iterations: iterations)
        // The first contact decides whether there is a VM at all: its error is
        // the user's, as `deflect ctl` reports it.
        let first = try await ctl { () async throws(ControlClientError) in try await session.sample() }
        let loop = Task { await session.loop(from: first) }
        // SIGINT/SIGTERM end the loop, so that the terminal is restored first.
        let interruption = SignalSources()
        for signo in [SIGINT, SIGTERM] { interruption.listen(signo) { loop.cancel() } }
        let end = await loop.value
        interruption.cancel()
        session.leaveScreen()
        switch end {
        case .done:
            return
        case .vmStopped(let why):
            guard StandardStreams.writeOutput("deflect top: \(why)\n") else { throw ExitCode(ExitStatus.outputFailed) }
        case .failed(let error):
            throw ctlFailure(error)
        case .outputFailed:
            throw fail("standard output could not be written", status: ExitStatus.outputFailed)
        }
    }
}

/// How a `deflect top` session ended.
enum TopEnd: Sendable {
    /// The iterations are done, or the user interrupted.
    case done
    /// The VM stopped or its API went away after it had answered: why, in words.
    case vmStopped(String)
    case failed(ControlClientError)
    case outputFailed
}

/// One `deflect top` run: sampling, rates and output.
struct TopSession: Sendable {
    /// What one refresh reads.
    struct Sample: Sendable {
        var stats: StatsReport
        var info: VMInfo
        var taken: ContinuousClock.Instant
    }

    let client: ControlClient
    let terminal: Bool
    let interval: Duration
    let iterations: Int?

    func sample() async throws(ControlClientError) -> Sample {
        let info = try await client.info()
        let stats = try await client.stats()
        return Sample(stats: stats, info: info, taken: .now)
    }

    /// Refreshes every interval until the iterations are done, the task is
    /// cancelled (SIGINT), the VM stops or the API fails.
    func loop(from first: Sample) async -> TopEnd {
        if terminal {
            // The alternate screen keeps the shell's scrollback as it was; the
            // first screen shows averages since start at once.
            guard StandardStreams.writeOutput("\u{1B}[?1049h\u{1B}[?25l") else { return .outputFailed }
            guard draw(TopView.rates(previous: nil, current: first.stats, seconds: 0), info: first.info) else { return .outputFailed }
        }
        var previous = first
        var shown = 0
        while iterations.map({ shown < $0 }) ?? true {
            do {
                try await Task.sleep(until: previous.taken + interval, clock: .continuous)
            } catch {
                return .done
            }
            let current: Sample
            do throws(ControlClientError) {
                current = try await sample()
            } catch {
                if Task.isCancelled { return .done }
                if let end = await stopped(after: error) { return end }
                continue
            }
            let rates = TopView.rates(previous: previous.stats, current: current.stats,
                                      seconds: Self.seconds(from: previous, to: current))
            let written = terminal ? draw(rates, info: current.info)
                : StandardStreams.writeOutput(TopView.plain(rates, timestamp: Date.now.formatted(.iso8601)))
            guard written else { return .outputFailed }
            shown += 1
            if current.stats.state == .stopped { return .vmStopped("the VM has stopped") }
            previous = current
        }
        return .done
    }

    /// Leaves the alternate screen and shows the cursor again (terminal mode).
    func leaveScreen() {
        if terminal { StandardStreams.writeOutput("\u{1B}[?25h\u{1B}[?1049l") }
    }

    /// The end a failed refresh means, or nil to go on: a socket that is gone
    /// or refuses after the VM answered is a VM that stopped; a broken
    /// connection is asked again once, since it may be the server closing.
    private func stopped(after error: ControlClientError, retried: Bool = false) async -> TopEnd? {
        switch error {
        case .noSocket, .refused:
            return .vmStopped("the VM has stopped (\(error))")
        case .connection where !retried:
            try? await Task.sleep(for: .milliseconds(300))
            do throws(ControlClientError) {
                _ = try await client.info()
                return nil
            } catch {
                return await stopped(after: error, retried: true)
            }
        default:
            return .failed(error)
        }
    }

    /// The interval between two samples by the VM's own uptime (what the
    /// counts were taken against), or by this process's clock when the
    /// uptime did not advance (a restarted VM).
    static func seconds(from previous: Sample, to current: Sample) -> Double {
        let byUptime = current.stats.uptimeSeconds - previous.stats.uptimeSeconds
        if byUptime > 0 { return byUptime }
        let elapsed = current.taken - previous.taken
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Clears the screen and draws one frame in a single write.
    private func draw(_ rates: TopRates, info: VMInfo) -> Bool {
        let (width, height) = TerminalSize.current()
        let screen = TopView.screen(rates, info: info, width: width, height: height)
        let lines = screen.lines.enumerated().map { i, line in
            screen.headings.contains(i) ? "\u{1B}[7m" + line + "\u{1B}[0m" : line
        }
        // No newline after the last line: on the bottom row it would scroll the screen.
        return StandardStreams.writeOutput("\u{1B}[H\u{1B}[2J" + lines.joined(separator: "\n"))
    }
}

/// The terminal's size in characters.
enum TerminalSize {
    /// Columns and rows of standard output's terminal (`TIOCGWINSZ`); 80 × 24
    /// when it has none or reports zero.
    static func current() -> (width: Int, height: Int) {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0, size.ws_row > 0 else { return (80, 24) }
        return (Int(size.ws_col), Int(size.ws_row))
    }
}
