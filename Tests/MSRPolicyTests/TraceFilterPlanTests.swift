// MSRPolicyTests: the trace's filter: everything exits until first seen, then
// passes per direction; saturation to default allow when 16 ranges no longer fit.
import KVMABI
import MSRPolicy
import SeededRandom
import Testing

/// KVM's decision for a guest access, with direction-specific ranges:
/// the first range of the access's kind containing the index decides.
private func kvmAllows(_ filter: CompiledFilter, _ index: UInt32, write: Bool) -> Bool {
    if MSRCatalogue.x2APICRange.contains(index) { return true }
    let kind = write ? MSRFilterRange.write : MSRFilterRange.read
    for range in filter.ranges where range.flags & kind != 0 && range.contains(index) { return range.bit(index) }
    return filter.defaultAllow
}

@Suite("Trace filter plan")
struct TraceFilterPlanTests {
    @Test func everythingExitsAtFirst() {
        let filter = TraceFilterPlan().filter
        #expect(!filter.defaultAllow)
        #expect(!filter.ranges.isEmpty)   // KVM refuses default deny without ranges
        for index: UInt32 in [0, 0x10, 0x8b, 0xC000_0080, 0xFFFF_FFFF] {
            #expect(!kvmAllows(filter, index, write: false))
            #expect(!kvmAllows(filter, index, write: true))
        }
        #expect(filter.exitReasons == TraceFilterPlan.exitReasons)
    }

    @Test func aSeenDirectionPassesAndTheOtherStillExits() {
        var plan = TraceFilterPlan()
        _ = plan.allow(0x8b, write: true)
        let filter = plan.allow(0xC000_0080, write: false)
        #expect(kvmAllows(filter, 0x8b, write: true))
        #expect(!kvmAllows(filter, 0x8b, write: false))
        #expect(kvmAllows(filter, 0xC000_0080, write: false))
        #expect(!kvmAllows(filter, 0xC000_0080, write: true))
        #expect(!kvmAllows(filter, 0x8c, write: true))
        #expect(filter.ranges.allSatisfy { $0.bitmap.count % 8 == 0 && $0.bitmap.count * 8 >= Int($0.count) })
    }

    @Test func randomSetsMatchTheModelUntilSaturation() {
        var random = SeededGenerator(seed: 0x7ACE)
        var plan = TraceFilterPlan()
        var reads = Set<UInt32>(), writes = Set<UInt32>()
        for step in 0..<400 {
            // Mostly clustered like real MSRs, sometimes anywhere.
            let index: UInt32 = step % 10 == 9 ? UInt32.random(in: 0...UInt32.max, using: &random)
                : [0, 0xC000_0000, 0x4000_0000][Int.random(in: 0..<3, using: &random)] + UInt32.random(in: 0..<0x3000, using: &random)
            let write = Bool.random(using: &random)
            if write { writes.insert(index) } else { reads.insert(index) }
            let filter = plan.allow(index, write: write)
            #expect(filter.ranges.count <= MSRFilter.maxRanges)
            if plan.saturated {
                #expect(filter.defaultAllow && filter.ranges.isEmpty)
                continue
            }
            // x2APIC MSRs never exit (KVM ignores the filter there), so they are not probed.
            for probe in reads.union(writes).filter({ !MSRCatalogue.x2APICRange.contains($0) }).prefix(50) {
                #expect(kvmAllows(filter, probe, write: false) == reads.contains(probe))
                #expect(kvmAllows(filter, probe, write: true) == writes.contains(probe))
            }
        }
        #expect(plan.saturated)   // 40 scattered MSRs cannot fit in 16 ranges
    }
}
