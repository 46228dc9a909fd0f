// VMMTests: pure parts of the VMM: exit statistics, event rate limiting,
// outcome statuses, the CPUID the vCPUs get, the S3 wake state.
import KVM
import Loader
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

    @Test func powerOffIsItsOwnCleanEnding() {
        // Before: S5 was reported as a debug-exit write of 0x2000.
        #expect(RunOutcome.powerOff.exitStatus == 0)
        #expect(RunOutcome.powerOff.report == "guest powered off (ACPI S5)")
        #expect(RunOutcome.powerOff.isGuestRequested)
        #expect(RunOutcome.resumeWithoutWakingVector.exitStatus == ExitStatus.reset)
        #expect(RunOutcome.resumeWithoutWakingVector.report.contains("without a FACS waking vector"))
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

@Suite("S3 wake state")
struct SleepResetTests {
    @Test func localAPICResetKeepsIDAndVersionAndMasksEveryLVT() {
        var current = LocalAPICState(bytes: [UInt8](repeating: 0xAB, count: LocalAPICState.size))
        current.setRegister(0x20, 0x0300_0000)
        current.setRegister(0x30, 0x0005_0014)
        for isBSP in [true, false] {
            let apic = SleepControl.resetLocalAPIC(current, isBSP: isBSP)
            #expect(apic.register(0x20) == 0x0300_0000)
            #expect(apic.register(0x30) == 0x0005_0014)
            #expect(apic.register(0xE0) == 0xFFFF_FFFF)
            #expect(apic.register(0xF0) == 0xFF)
            for lvt in [0x2F0, 0x320, 0x330, 0x340, 0x360, 0x370] { #expect(apic.register(lvt) == 0x1_0000) }
            // LINT0: ExtINT on the BSP so the 8259 reaches it; masked elsewhere.
            #expect(apic.register(0x350) == (isBSP ? 0x700 : 0x1_0000))
            // No stale in-service, pending or timer state.
            for offset in [0x80, 0x100, 0x180, 0x200, 0x280, 0x380, 0x3E0] { #expect(apic.register(offset) == 0) }
        }
        #expect(SleepControl.resetAPICBase(isBSP: true) == 0xFEE0_0900)
        #expect(SleepControl.resetAPICBase(isBSP: false) == 0xFEE0_0800)
    }

    @Test func resumeStateIsRealModeAtTheWakingVector() {
        let state = BootCPUState.s3Resume(wakingVector: 0x7_1234, stackSegment: 0x9FC0, stackPointer: 0x3C0)
        #expect(state.cs.selector == 0x7123 && state.cs.base == 0x7_1230 && state.rip == 4)
        #expect(state.ss.selector == 0x9FC0 && state.ss.base == 0x9_FC00 && state.rsp == 0x3C0)
        #expect(state.cr0 & 1 == 0 && state.rflags == 2)
        #expect(state.ds.selector == 0 && state.ds.base == 0)
        let ap = BootCPUState.afterINIT()
        #expect(ap.cs.selector == 0xF000 && ap.cs.base == 0xFFFF_0000 && ap.rip == 0xFFF0)
    }
}
