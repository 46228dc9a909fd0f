// VMMTests: the live accounting a vCPU writes and the control API copies:
// the sequence-locked counters are never seen torn by a concurrent reader,
// the live histogram cells give the same distributions as HdrHistogram, and
// places stay capped.
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import KVM
@testable import VMM

@Suite("Live accounting")
struct LiveAccountingTests {
    @Test func layoutsMatchTheFixedCellArrays() {
        #expect(HistogramLayout.precise.cellCount == 3840)
        #expect(HistogramLayout.coarse.cellCount == 528)
        #expect(ExitKind.allCases.count == ExitCounters.kinds)
    }

    /// The writer records exit number i with i ns in KVM_RUN, cycling over
    /// four kinds, so any whole copy of the counters holds n exits whose run
    /// times add up to n(n+1)/2, with the kinds' counts at most one apart
    /// in cycle order. A torn copy breaks one of these.
    @Test func aReaderNeverSeesATornCopy() {
        let accounting = VCPUAccounting()
        let kinds: [VCPUExit] = [.halt, .shutdown, .debug, .irqWindowOpen]
        let total = 300_000
        let done = Atomic<Bool>(false)
        let writer = Thread {
            var places = PlaceDirectory()
            for i in 1...total {
                accounting.recordExit(kinds[i % 4], runNanoseconds: UInt64(i), handlingNanoseconds: 5, places: &places)
                pauseAsAnExitWould()
            }
            done.store(true, ordering: .releasing)
        }
        writer.start()
        var copies = 0, attempts = 0, torn = 0, lastSeen: UInt64 = 0
        repeat {
            let statistics = accounting.statistics(attempts: &attempts)
            copies += 1
            let counts = kinds.map { statistics[$0.kind].count }
            let n = counts.reduce(0, +)
            let runs = kinds.reduce(UInt64(0)) { $0 + statistics[$1.kind].runNanoseconds }
            let handling = kinds.reduce(UInt64(0)) { $0 + statistics[$1.kind].handlingNanoseconds }
            // Exit i goes to kinds[i % 4]: kind 1 first, then 2, 3, 0.
            let order = [counts[1], counts[2], counts[3], counts[0]]
            let cycleConsistent = zip(order, order.dropFirst()).allSatisfy { $0 >= $1 && $0 - $1 <= 1 }
                && order[0] - order[3] <= 1
            if runs != n * (n + 1) / 2 || handling != 5 * n || !cycleConsistent || n < lastSeen { torn += 1 }
            lastSeen = n
        } while !done.load(ordering: .acquiring)
        #expect(torn == 0)
        #expect(copies > 0 && attempts >= copies)
        #expect(accounting.statistics.totalExits == UInt64(total))
        #expect(accounting.statistics[.halt].maxHandlingNanoseconds == 5)
    }

    /// Exits alternate between two ports and one MSR: a whole copy of the
    /// profile has the places add up to their kinds.
    @Test func aWholeProfileCopyHasPlacesAgreeingWithKinds() {
        let accounting = VCPUAccounting()
        let exits: [VCPUExit] = [
            .io(IOExit(direction: .output, port: 0x80, size: 1, count: 1, dataOffset: 0)),
            .io(IOExit(direction: .output, port: 0x81, size: 1, count: 1, dataOffset: 0)),
            .readMSR(MSRExit(index: 0x2474, reason: .filter, data: 0)),
        ]
        let done = Atomic<Bool>(false)
        let writer = Thread {
            var places = PlaceDirectory()
            for i in 1...60_000 {
                accounting.recordExit(exits[i % 3], runNanoseconds: UInt64(1000 + i % 5000), handlingNanoseconds: 300, places: &places)
                pauseAsAnExitWould()
            }
            done.store(true, ordering: .releasing)
        }
        writer.start()
        var whole = 0, disagreeing = 0
        repeat {
            let (profile, isWhole) = accounting.profile(maxAttempts: 64)
            guard isWhole else { continue }
            whole += 1
            let ports = profile.places.filter { if case .port = $0.key { true } else { false } }.reduce(UInt64(0)) { $0 + $1.value.count }
            let msrs = profile.places.filter { if case .msr = $0.key { true } else { false } }.reduce(UInt64(0)) { $0 + $1.value.count }
            if ports != profile[.ioOut].count || msrs != profile[.readMSR].count
                || profile[.ioOut].handling.totalNanoseconds != 300 * profile[.ioOut].count { disagreeing += 1 }
        } while !done.load(ordering: .acquiring)
        #expect(whole > 0)
        #expect(disagreeing == 0)
        #expect(accounting.profile.totalExits == 60_000)
    }

    @Test func liveCellsGiveHdrHistogramsDistributions() {
        let accounting = VCPUAccounting()
        var expected = ExitProfile()
        var places = PlaceDirectory()
        let values: [UInt64] = [0, 1, 2, 127, 128, 255, 256, 257, 1000, 12_345, 999_999, 1_000_000_000,
                                LatencyHistogram.highestTrackable, UInt64.max / 4]
        let msr = VCPUExit.readMSR(MSRExit(index: 0x10, reason: .filter, data: 0))
        let port = VCPUExit.io(IOExit(direction: .output, port: 0x80, size: 1, count: 1, dataOffset: 0))
        for (n, run) in values.enumerated() {
            for exit in [msr, port] {
                let handling = values[values.count - 1 - n] / 3
                accounting.recordExit(exit, runNanoseconds: run, handlingNanoseconds: handling, places: &places)
                expected.record(exit.kind, place: ExitPlace.of(exit), runNanoseconds: run, handlingNanoseconds: handling)
            }
        }
        let live = accounting.profile
        #expect(live.totalExits == expected.totalExits)
        for kind in [ExitKind.readMSR, .ioOut] {
            for (a, b) in [(live[kind].inKVMRun, expected[kind].inKVMRun), (live[kind].handling, expected[kind].handling)] {
                #expect(a.count == b.count && a.totalNanoseconds == b.totalNanoseconds && a.max == b.max)
                for percentile in [1.0, 25, 50, 90, 99, 100] { #expect(a.percentile(percentile) == b.percentile(percentile)) }
            }
        }
        #expect(Set(live.places.keys) == Set(expected.places.keys))
        for (place, latencies) in expected.places {
            let copy = live.places[place]
            #expect(copy?.handling.p99 == latencies.handling.p99 && copy?.inKVMRun.p50 == latencies.inKVMRun.p50)
            #expect(copy?.handling.totalNanoseconds == latencies.handling.totalNanoseconds)
        }
        let statistics = accounting.statistics
        #expect(statistics[.readMSR].count == UInt64(values.count))
        #expect(statistics[.ioOut].runNanoseconds == values.reduce(0, &+))
    }

    @Test func placesAreCappedAndTheRestIsOther() {
        let accounting = VCPUAccounting()
        var places = PlaceDirectory()
        for port in 0..<(ExitProfile.maxPlaces + 100) {
            let exit = VCPUExit.io(IOExit(direction: .input, port: UInt16(port), size: 1, count: 1, dataOffset: 0))
            accounting.recordExit(exit, runNanoseconds: 100, handlingNanoseconds: 10, places: &places)
        }
        let profile = accounting.profile
        #expect(profile.places.count == ExitProfile.maxPlaces)
        #expect(profile.other.count == 100)
        #expect(profile[.ioIn].count == UInt64(ExitProfile.maxPlaces + 100))
    }
}

/// About a microsecond without recording, as between two real exits (a
/// KVM_RUN round trip takes longer): the readers get windows to copy in.
private func pauseAsAnExitWould() {
    let until = DispatchTime.now().uptimeNanoseconds + 1_000
    while DispatchTime.now().uptimeNanoseconds < until {}
}
