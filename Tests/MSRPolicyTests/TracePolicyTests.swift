// TracePolicyTests.swift — the policy `deflect trace --write-policy` writes:
// refused MSRs denied, MSRs KVM saves or the guest wrote left to KVM, MSRs
// only read pinned at the first value the guest saw.

import Testing
@testable import MSRPolicy

@Suite struct TracePolicyTests {
    @Test func readOnlyMSRsArePinnedAndWrittenOnesStayWithKVM() throws {
        var trace = MSRStatistics()
        // Read only: pinned at the first value read, later reads notwithstanding.
        trace.record(index: 0xFE, access: .read, value: 0x508, outcome: "ok", rip: nil)
        trace.record(index: 0xFE, access: .read, value: 0x509, outcome: "ok", rip: nil)
        // Read, then written (APIC_BASE switched to x2APIC): KVM must see the write.
        trace.record(index: 0x1B, access: .read, value: 0xFEE0_0900, outcome: "ok", rip: nil)
        trace.record(index: 0x1B, access: .write(0xFEE0_0D00), value: 0xFEE0_0D00, outcome: "ok", rip: nil)
        // Written only (EFER.LME before paging).
        trace.record(index: 0xC000_0080, access: .write(0x100), value: 0x100, outcome: "ok", rip: nil)
        // Refused every time.
        trace.record(index: 0x2474, access: .read, value: 0, outcome: "gp", rip: nil)
        // Read only, but KVM saves it (KVM_GET_MSR_INDEX_LIST).
        trace.record(index: 0x10, access: .read, value: 1234, outcome: "ok", rip: nil)

        let policy = TracePolicy.reproducing(trace, kernelHandled: [0x10])
        #expect(policy.rule(for: 0xFE)?.action == .emulate(Emulation(initialValue: 0x508)))
        #expect(policy.rule(for: 0x1B)?.action == .kernel)
        #expect(policy.rule(for: 0xC000_0080)?.action == .kernel)
        #expect(policy.rule(for: 0x2474)?.action == .deny)
        #expect(policy.rule(for: 0x10)?.action == .kernel)
        #expect(policy.defaultAction == .kernel)
        // What the file says is what was built.
        let reparsed = try PolicyLoader.load(PolicyWriter.toml(policy), file: "trace.toml")
        for index: UInt32 in [0xFE, 0x1B, 0xC000_0080, 0x2474, 0x10] {
            #expect(reparsed.rule(for: index)?.action == policy.rule(for: index)?.action)
        }
    }
}
