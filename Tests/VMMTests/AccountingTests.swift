// VMMTests: pure parts of the VMM: exit statistics, event rate limiting,
// outcome statuses and the CPUID the vCPUs get.
import KVM
import Testing
@testable import VMM

@Suite("Exit statistics")
struct ExitStatisticsTests {
    @Test func recordsAndMerges() {
        var a = ExitStatistics()
        a.record(.ioOut, runNanoseconds: 100, handlingNanoseconds: 10)
        a.record(.ioOut, runNanoseconds: 300, handlingNanoseconds: 30)
        var b = ExitStatistics()
        b.record(.halt, runNanoseconds: 5, handlingNanoseconds: 1)
        b.record(.ioOut, runNanoseconds: 1, handlingNanoseconds: 50)
        a.merge(b)
        #expect(a[.ioOut].count == 3)
        #expect(a[.ioOut].handlingNanoseconds == 90)
        #expect(a[.ioOut].maxHandlingNanoseconds == 50)
        #expect(a[.ioOut].runNanoseconds == 401)
        #expect(a[.halt].count == 1)
        #expect(a.totalExits == 4)
    }

    @Test func tableListsHotKindsFirst() {
        var s = ExitStatistics()
        s.record(.halt, runNanoseconds: 0, handlingNanoseconds: 0)
        for _ in 0..<5 { s.record(.ioIn, runNanoseconds: 0, handlingNanoseconds: 2000) }
        let lines = s.table().split(separator: "\n")
        #expect(lines[1].hasPrefix("io-in"))
        #expect(lines[1].contains(" 5 "))
        #expect(lines[2].hasPrefix("hlt"))
        #expect(lines.last?.contains("6") == true)
        #expect(!s.table().contains("mmio"))
    }
}

@Suite("Event log")
struct EventLogTests {
    @Test func rateLimitsPerPlace() {
        let sink = CollectingEventSink()
        var limits = EventLog.Limits()
        limits.burst = 3
        limits.sampleEvery = 100
        let log = EventLog(sink: sink, limits: limits)
        for _ in 0..<250 { log.record(.unownedPortRead(vcpu: 0, port: 0x2F8, size: 1)) }
        log.record(.unownedPortRead(vcpu: 0, port: 0x3E8, size: 1))
        // 3 burst + occurrences 100 and 200 + the other port
        #expect(sink.collected.count == 6)
        #expect(sink.collected[3].hasSuffix("(occurrence 100)"))
        #expect(log.counts.total == 251)
        #expect(log.counts.suppressed == 245)
        #expect(log.summary() == "251 events, 245 not shown (rate limit)")
    }

    /// Issue 8, item 14: the limiter decides before the event is built, so a
    /// suppressed MSR event costs no catalogue lookup or register read.
    @Test func suppressedEventsAreNeverBuilt() {
        let sink = CollectingEventSink()
        var limits = EventLog.Limits()
        limits.burst = 2
        limits.sampleEvery = 1000
        let log = EventLog(sink: sink, limits: limits)
        var built = 0
        let key = MachineEvent.msrAccessKey(index: 0x2474, isWrite: false, rip: 0x100000)
        for _ in 0..<500 {
            log.record(key: key) {
                built += 1
                return .msrAccess(MSRAccessEvent(vcpu: 0, rip: 0x100000, index: 0x2474, name: nil, isWrite: false,
                                                 value: 0, outcome: "default-gp", injectedGP: true))
            }
        }
        #expect(built == 2)
        #expect(sink.collected.count == 2)
        #expect(log.counts == (500, 498))
    }

    @Test func memoryStaysBoundedUnderAStormOfDistinctPlaces() {
        let sink = CollectingEventSink()
        var limits = EventLog.Limits()
        limits.maxKeys = 16
        limits.burst = 1
        limits.sampleEvery = 1_000_000
        let log = EventLog(sink: sink, limits: limits)
        for address in 0..<10_000 as Range<UInt64> {
            log.record(.unownedMMIORead(vcpu: 0, address: address * 8, length: 8))
        }
        // 16 tracked keys print once each; everything after shares one overflow counter.
        #expect(sink.collected.count == 17)
        #expect(log.counts.total == 10_000)
    }
}

@Suite("Run outcomes")
struct RunOutcomeTests {
    @Test func statusesAreDistinctAndEven() {
        let dump = VCPURegisterDump(vcpu: 0, registers: nil, special: nil, unavailableReason: "test")
        let outcomes: [RunOutcome] = [.resetRequested(vcpu: 0), .tripleFault(dump), .guestFailure(description: "x", dump),
                                      .timeout(seconds: 1, []), .interruptedByUser, .hostError("x"), .outputFailed("x")]
        let statuses = outcomes.map(\.exitStatus)
        #expect(Set(statuses).count == statuses.count)
        #expect(statuses.allSatisfy { $0 % 2 == 0 && $0 != 0 })
        #expect(RunOutcome.allHalted.exitStatus == 0)
        #expect(RunOutcome.guestExit(value: 0x80, status: 0x101).exitStatus == 1)
    }

    @Test func dumpPrintsEveryRegister() {
        var regs = Registers()
        regs.rip = 0xFFFF_8000_0000_1234
        regs.r15 = 0xABC
        let text = VCPURegisterDump(vcpu: 3, registers: regs, special: SpecialRegisters()).description
        #expect(text.contains("vCPU 3: RIP=ffff800000001234"))
        #expect(text.contains("R15=0000000000000abc"))
        #expect(text.contains("CR0="))
    }
}

@Suite("vCPU CPUID")
struct CPUIDSetupTests {
    @Test func apicIdsAndTopologyArePerVCPU() {
        let supported = [
            CPUIDEntry(function: 1, ebx: 0xFF00_0800, edx: 0),
            CPUIDEntry(function: 0xB, index: 0, edx: 99),
            CPUIDEntry(function: 0x1F, index: 1, edx: 99),
            CPUIDEntry(function: 7, ebx: 5),
        ]
        let mine = BootState.cpuid(from: supported, vcpu: 3, count: 4)
        #expect(mine[0].ebx >> 24 == 3)
        #expect((mine[0].ebx >> 16) & 0xFF == 4)
        #expect(mine[0].ebx & 0xFFFF == 0x0800)
        #expect(mine[0].edx & (1 << 28) != 0)
        #expect(mine[1].edx == 3 && mine[2].edx == 3)
        #expect(mine[3] == supported[3])
    }
}

@Suite("Event log, global limit")
struct EventLogGlobalLimitTests {
    @Test func aStormOfNewPlacesIsThrottledAsAWhole() {
        let sink = CollectingEventSink()
        var limits = EventLog.Limits()
        limits.globalBurst = 50
        limits.globalPerSecond = 0.001
        let log = EventLog(sink: sink, limits: limits)
        for port in 0..<1000 as Range<UInt16> { log.record(.unownedPortRead(vcpu: 0, port: port, size: 1)) }
        #expect(sink.collected.count == 50)
        #expect(log.counts.suppressed == 950)
    }
}
