// Tests for the example policies shipped in examples/policies: they parse,
// validate and compile, and mean what their comments say.

import KVMABI
import Foundation
import Testing
@testable import MSRPolicy

@Suite struct PolicyExamplesTests {
    /// examples/policies/NAME, found from this file's place in the package.
    private func example(_ name: String) throws -> PolicyDocument {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/policies/\(name)")
        let text = try String(contentsOf: url, encoding: .utf8)
        return try PolicyParser.parse(text, file: name)
    }

    @Test func productionStrict() throws {
        let policy = try example("production-strict.toml").policy
        #expect(policy.defaultAction == .gp && policy.defaultScope == .all && policy.logDefault)
        for name in ["MSR_IA32_TSC", "MSR_IA32_APICBASE", "MSR_IA32_SYSENTER_EIP", "MSR_EFER", "MSR_STAR", "MSR_LSTAR",
                     "MSR_CSTAR", "MSR_SYSCALL_MASK", "MSR_FS_BASE", "MSR_GS_BASE", "MSR_KERNEL_GS_BASE", "MSR_TSC_AUX",
                     "IA32_PAT", "MSR_MTRRDEFTYPE", "MSR_MTRRPHYSMASK7", "MSR_KVM_SYSTEM_TIME_NEW", "MSR_IA32_SPEC_CTRL",
                     "MSR_IA32_PRED_CMD", "MSR_IA32_MISC_ENABLE"] {
            let index = try #require(MSRCatalogue.index(named: name))
            #expect(policy.rule(for: index)?.action == .kernel, "\(name)")
        }
        #expect(policy.rule(for: 0xce) == nil)  // PLATFORM_INFO: #GP, not the host's
        let filter = try FilterCompiler.compile(policy)
        #expect(!filter.defaultAllow && filter.ranges.count == 4 && filter.exitReasons == .all)
        #expect(filter.allows(0x10) && !filter.allows(0xce) && !filter.allows(0x4b56_4d08) && filter.allows(0x830))
    }

    @Test func experimentalPermissive() throws {
        let policy = try example("experimental-permissive.toml").policy
        #expect(policy.defaultAction == .ignore && policy.defaultScope == .unknown && policy.logDefault)
        guard case .emulate(let info)? = policy.rule(for: 0xce)?.action else {
            Issue.record("MSR_PLATFORM_INFO is not emulated"); return
        }
        #expect((info.initialValue >> 8) & 0xff == 24 && info.scope == .vm && info.writes == .readOnly)
        #expect(policy.rule(for: 0x611)?.action == .computed(provider: "rapl-package-energy"))
        #expect(policy.rule(for: 0x4000_0001)?.action == .deny)
        let filter = try FilterCompiler.compile(policy)
        #expect(filter.defaultAllow && filter.exitReasons == .all)
        #expect(!filter.allows(0xce) && filter.allows(0x10) && !filter.allows(0x4000_0000))
    }

    @Test func examplesRoundTripThroughTheWriter() throws {
        for name in ["production-strict.toml", "experimental-permissive.toml"] {
            let policy = try example(name).policy
            let again = try PolicyParser.parse(PolicyWriter.toml(policy), file: "again.toml").policy
            #expect(again.strippingLocations() == policy.strippingLocations(), "\(name)")
        }
    }
}
