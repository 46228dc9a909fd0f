// ControlAPITests: `deflect top`'s renderer with synthetic reports: rates
// from cumulative counts, sorting, counter resets, new rows, terminal sizes,
// KVM's counters and their absence, the plain line group.
@testable import ControlAPI
import Testing

/// A timing whose handling percentiles are recognizable.
private func timing(_ count: UInt64, p50: UInt64 = 7_200, p99: UInt64 = 12_000, runP50: UInt64 = 1_100) -> ExitTiming {
    ExitTiming(count: count,
               inKvmRun: LatencySummary(count: count, totalNs: count * runP50, p50Ns: runP50, p90Ns: runP50, p99Ns: runP50, maxNs: runP50),
               handling: LatencySummary(count: count, totalNs: count * p50, p50Ns: p50, p90Ns: p99, p99Ns: p99, maxNs: p99))
}

private func report(uptime: Double, kinds: [String: UInt64] = [:], msrs: [(UInt64?, AccessDirection, UInt64)] = [],
                    ports: [(Int?, AccessDirection, UInt64)] = [], vcpus: [VCPUStatsRow] = [],
                    kvm: KVMBinaryStats = .unavailable("KVM_CAP_BINARY_STATS_FD is not offered"),
                    state: VMState = .running) -> StatsReport {
    StatsReport(state: state, uptimeSeconds: uptime, totalExits: kinds.values.reduce(0, +),
                exits: kinds.sorted { $0.key < $1.key }.map { ExitKindRow(kind: $0.key, timing: timing($0.value)) },
                ports: ports.map { PortRow(port: $0.0, direction: $0.1, timing: timing($0.2)) },
                msrs: msrs.map { MSRExitRow(index: $0.0.map(Hex64.init), name: $0.0 == 0x10 ? "IA32_TIME_STAMP_COUNTER" : nil,
                                            direction: $0.1, timing: timing($0.2)) },
                hypercalls: [], vcpus: vcpus, kvm: kvm)
}

private let info = VMInfo(state: .running,
                          configuration: VMConfiguration(image: "/tmp/guests/msr_counter.bin", mode: "long", memoryMib: 64,
                                                         vcpus: 1, platform: "bare", policyPath: nil),
                          uptimeSeconds: 12, pausedSeconds: 0)

@Suite("deflect top: rates")
struct TopRatesTests {
    @Test func ratesAreCountDifferencesOverTheInterval() {
        let before = report(uptime: 10, kinds: ["rdmsr": 1_000, "io": 10], msrs: [(0x2474, .read, 1_000)], ports: [(0x3f8, .write, 10)])
        let after = report(uptime: 12, kinds: ["rdmsr": 3_000, "io": 30], msrs: [(0x2474, .read, 3_000)], ports: [(0x3f8, .write, 30)])
        let rates = TopView.rates(previous: before, current: after, seconds: 2)
        #expect(!rates.sinceStart)
        #expect(rates.totalPerSecond == 1_010)
        #expect(rates.kinds.map(\.label) == ["rdmsr", "io"])
        #expect(rates.kinds.map(\.perSecond) == [1_000, 10])
        #expect(rates.kinds[0].total == 3_000)
        #expect(rates.kinds[0].handlingP50Ns == 7_200 && rates.kinds[0].handlingP99Ns == 12_000 && rates.kinds[0].inKvmRunP50Ns == 1_100)
        #expect(rates.msrs.map(\.index) == ["0x2474"] && rates.msrs[0].direction == "rd" && rates.msrs[0].rate.perSecond == 1_000)
        #expect(rates.ports.map(\.label) == ["0x3f8 out"] && rates.ports[0].perSecond == 10)
    }

    /// Hottest by rate over the interval, not by the count since start.
    @Test func sortedByRateNotByTotal() {
        let before = report(uptime: 1, kinds: ["hlt": 900_000, "io": 0],
                            msrs: [(0x10, .read, 900_000), (0x2474, .write, 5), (0x2474, .read, 5)])
        let after = report(uptime: 2, kinds: ["hlt": 900_000, "io": 50],
                           msrs: [(0x10, .read, 900_000), (0x2474, .write, 55), (0x2474, .read, 25)])
        let rates = TopView.rates(previous: before, current: after, seconds: 1)
        #expect(rates.kinds.map(\.label) == ["io", "hlt"])
        #expect(rates.msrs.map { "\($0.index) \($0.direction) \(Int($0.rate.perSecond))" } == ["0x2474 wr 50", "0x2474 rd 20", "0x10 rd 0"])
    }

    /// A count below the previous one is a counter that started again: it
    /// counts from zero (never a negative or wrapped rate); a new row too.
    @Test func resetsAndNewRowsCountFromZero() {
        let before = report(uptime: 5, kinds: ["rdmsr": 10_000], msrs: [(0x2474, .read, 10_000)])
        let after = report(uptime: 6, kinds: ["rdmsr": 400, "io": 7], msrs: [(0x2474, .read, 400), (nil, .read, 3)],
                           ports: [(0x80, .write, 7)])
        let rates = TopView.rates(previous: before, current: after, seconds: 1)
        #expect(rates.kinds.first { $0.label == "rdmsr" }?.perSecond == 400)
        #expect(rates.kinds.first { $0.label == "io" }?.perSecond == 7)
        #expect(rates.msrs.map(\.index) == ["0x2474", "other"])
        #expect(rates.msrs.map(\.rate.perSecond) == [400, 3])
        #expect(rates.ports.first?.perSecond == 7)
        #expect(rates.totalPerSecond == 407)
    }

    /// With no previous report, or one from before a restart (larger
    /// uptime), the rates are averages since the VM started.
    @Test func withoutAUsablePreviousReportRatesAreAveragesSinceStart() {
        let now = report(uptime: 4, kinds: ["rdmsr": 2_000])
        for previous in [nil, report(uptime: 100, kinds: ["rdmsr": 1_000_000])] {
            let rates = TopView.rates(previous: previous, current: now, seconds: 1)
            #expect(rates.sinceStart)
            #expect(rates.seconds == 4)
            #expect(rates.kinds.first?.perSecond == 500)
        }
        #expect(TopView.rates(previous: nil, current: report(uptime: 0, kinds: ["io": 5]), seconds: 0).totalPerSecond == 0)
    }

    @Test func vcpuRowsSplitTheIntervalBetweenKVMRunAndHandling() {
        let before = report(uptime: 1, vcpus: [VCPUStatsRow(vcpu: 0, exits: 100, inKvmRunNs: 0, handlingNs: 0),
                                               VCPUStatsRow(vcpu: 1, exits: 0, inKvmRunNs: 0, handlingNs: 0)])
        let after = report(uptime: 3, vcpus: [VCPUStatsRow(vcpu: 0, exits: 2_100, inKvmRunNs: 1_000_000_000, handlingNs: 500_000_000),
                                              VCPUStatsRow(vcpu: 1, exits: 4, inKvmRunNs: 2_100_000_000, handlingNs: 0)])
        let rates = TopView.rates(previous: before, current: after, seconds: 2)
        #expect(rates.vcpus.map(\.perSecond) == [1_000, 2])
        #expect(rates.vcpus[0].inKvmRunPercent == 50 && rates.vcpus[0].handlingPercent == 25)
        // A little over the interval (the reports are not taken exactly at their uptimes): shown as 100 %.
        #expect(rates.vcpus[1].inKvmRunPercent == 100)
    }

    /// KVM's cumulative counters, summed over the vCPUs; instant values
    /// (a rate of them would mean nothing) and counters still at zero are
    /// left out.
    @Test func kvmCountersAreSummedOverVCPUs() {
        func stats(_ exits: UInt64, _ halts: UInt64) -> KVMBinaryStats {
            KVMBinaryStats(available: true, reason: nil, vm: ["remote_tlb_flush": 1],
                           vcpus: [["exits": exits, "halt_exits": halts, "io_exits": 0, "blocking": 1], ["exits": exits, "halt_exits": 0, "blocking": 0]])
        }
        let rates = TopView.rates(previous: report(uptime: 1, kvm: stats(100, 1)), current: report(uptime: 2, kvm: stats(600, 3)), seconds: 1)
        #expect(rates.kvm?.map(\.name) == ["exits", "halt_exits"])
        #expect(rates.kvm?.map(\.perSecond) == [1_000, 2])
        #expect(rates.kvm?.first?.total == 1_200)
        #expect(rates.kvmUnavailableReason == nil)
    }
}

@Suite("deflect top: screen and plain lines")
struct TopScreenTests {
    private func busy(msrCount: Int) -> TopRates {
        let msrs = (0..<msrCount).map { (UInt64(0x4000_0000 + $0), AccessDirection.read, UInt64($0 * 10)) }
        let before = report(uptime: 1, kinds: ["rdmsr": 0, "io": 0], msrs: msrs.map { ($0.0, $0.1, 0) }, ports: [(0x3f8, .write, 0)],
                            vcpus: [VCPUStatsRow(vcpu: 0, exits: 0, inKvmRunNs: 0, handlingNs: 0)])
        let after = report(uptime: 2, kinds: ["rdmsr": UInt64(msrs.reduce(0) { $0 + Int($1.2) }), "io": 9], msrs: msrs,
                           ports: [(0x3f8, .write, 9)],
                           vcpus: [VCPUStatsRow(vcpu: 0, exits: 9, inKvmRunNs: 300_000_000, handlingNs: 600_000_000)])
        return TopView.rates(previous: before, current: after, seconds: 1)
    }

    @Test func everySectionFitsAnEightyByTwentyFourTerminal() {
        let screen = TopView.screen(busy(msrCount: 50), info: info, width: 80, height: 24)
        #expect(screen.lines.count == 24)
        #expect(screen.lines.allSatisfy { $0.count <= 80 }, "\(screen.lines)")
        let text = screen.lines.joined(separator: "\n")
        #expect(screen.lines[0] == "msr_counter.bin  running  up 2.0s  paused 0.0s  long, 1 vCPU, 64 MiB")
        #expect(screen.lines[1] == "12259 exits/s (last 1.0 s), 12259 exits in all; p50/p99 since start")
        // The hottest MSR is shown, the cut is said, the later sections keep their place.
        #expect(text.contains("0x40000031"))
        #expect(text.contains("more"))
        for heading in ["EXIT KIND", "MSR", "PORT", "VCPU", "KVM statistics"] {
            #expect(screen.lines.enumerated().contains { screen.headings.contains($0.offset) && $0.element.hasPrefix(heading) }, "\(heading)")
        }
        #expect(text.contains("not available: KVM_CAP_BINARY_STATS_FD is not offered"))
        #expect(text.contains("0x3f8 out"))
        // vCPU 0: 30 % in KVM_RUN, 60 % handling over the interval.
        #expect(screen.lines.contains { $0.hasPrefix("0 ") && $0.contains("30.0") && $0.contains("60.0") }, "\(text)")
    }

    /// A narrow or short terminal: lines are cut, never wrapped, and the
    /// screen never has more lines than the terminal.
    @Test(arguments: [(40, 10), (20, 3), (200, 60), (1, 1)])
    func cutToTheTerminal(width: Int, height: Int) {
        let screen = TopView.screen(busy(msrCount: 50), info: info, width: width, height: height)
        #expect(screen.lines.count <= height)
        #expect(screen.lines.allSatisfy { $0.count <= width && !$0.contains("\n") })
        #expect(screen.headings.allSatisfy { $0 < screen.lines.count })
        #expect(screen.lines.first?.hasPrefix(String("msr_counter.bin".prefix(width))) == true)
    }

    /// With room for everything, every row is there and nothing says "more".
    @Test func aTallTerminalShowsEveryRow() {
        let screen = TopView.screen(busy(msrCount: 5), info: nil, width: 120, height: 60)
        let text = screen.lines.joined(separator: "\n")
        #expect(!text.contains("more"))
        for i in 0..<5 { #expect(text.contains("0x4000000\(i)")) }
        #expect(screen.lines.count < 60)
    }

    @Test func kvmCountersArePackedAcrossTheWidth() {
        let kvm = KVMBinaryStats(available: true, reason: nil, vm: [:],
                                 vcpus: [["exits": 5_000, "io_exits": 20, "halt_exits": 1, "insn_emulation": 3_000]])
        let rates = TopView.rates(previous: nil, current: report(uptime: 1, kinds: ["io": 20], kvm: kvm), seconds: 0)
        let screen = TopView.screen(rates, info: info, width: 80, height: 24)
        let text = screen.lines.joined(separator: "\n")
        #expect(text.contains("KVM (KVM_GET_STATS_FD, all vCPUs)"))
        #expect(!text.contains("not available"))
        // Two counters per 80-column line.
        #expect(screen.lines.contains { $0.hasPrefix("exits") && $0.contains("5000/s") && $0.contains("io_exits") })
        #expect(screen.lines.contains { $0.hasPrefix("halt_exits") && $0.contains("insn_emulation") && $0.contains("3000/s") })
        #expect(screen.lines[1].contains("average since start"))
    }

    @Test func plainGroupHasTheKindsAndTheThreeHottestMSRsAndPorts() {
        let text = TopView.plain(busy(msrCount: 6), timestamp: "2026-11-30T10:00:00Z")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 4 && lines.last == "", "\(text)")
        #expect(lines[0] == "2026-11-30T10:00:00Z running up=2.0s exits/s=159 rdmsr=150 io=9.0")
        #expect(lines[1] == "  msrs: 0x40000005 rd 50.0/s p50=7.2µs p99=12.0µs, 0x40000004 rd 40.0/s p50=7.2µs p99=12.0µs, 0x40000003 rd 30.0/s p50=7.2µs p99=12.0µs")
        #expect(lines[2] == "  ports: 0x3f8 out 9.0/s p50=7.2µs p99=12.0µs")
    }

    @Test func numbersAreShortAndRounded() {
        #expect(TopView.nanoseconds(0) == "-")
        #expect(TopView.nanoseconds(850) == "850ns")
        #expect(TopView.nanoseconds(7_249) == "7.2µs")
        #expect(TopView.nanoseconds(12_360_000) == "12.4ms")
        #expect(TopView.nanoseconds(2_000_000_000) == "2.00s")
        #expect(TopView.rate(0.04) == "0.0" && TopView.rate(99.94) == "99.9" && TopView.rate(99.96) == "100" && TopView.rate(84_210.4) == "84210")
        #expect(TopView.fixed(-1.25, 1) == "-1.3" && TopView.fixed(-0.01, 1) == "0.0" && TopView.fixed(.nan, 1) == "?")
        #expect(TopView.duration(59.94) == "59.9s" && TopView.duration(192) == "3m 12s" && TopView.duration(7_500) == "2h 05m")
    }
}
