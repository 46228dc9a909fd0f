// CPUModelTests: a model's MSR rules agree with its CPUID — a rule for an MSR
// whose enumerating feature the model lacks becomes deny (#GP).
@testable import CPUModel
import MSRPolicy
import Testing

@Suite struct FeatureMSRsTests {
    @Test func aRuleForAnMSRWhoseFeatureIsAbsentBecomesDeny() {
        let xss = MSRRule(0xDA0, .emulate(Emulation(initialValue: 0)), origin: "profile")
        let tscAux = MSRRule(0xC000_0103, .ignore(readValue: 0), origin: "profile")
        let unrelated = MSRRule(0xCE, .ignore(readValue: 0x1800), origin: "profile")
        let kept = FeatureMSRs.agreeing([xss, tscAux, unrelated], features: ["xsaves", "rdtscp"])
        #expect(kept == [xss, tscAux, unrelated])

        let agreed = FeatureMSRs.agreeing([xss, tscAux, unrelated], features: ["rdpid"])
        #expect(agreed.count == 3)
        guard case .deny = agreed[0].action else { Issue.record("IA32_XSS without xsaves: \(agreed[0])"); return }
        #expect(agreed[0].origin?.contains("xsaves") == true)
        #expect(agreed[1] == tscAux, "rdpid alone enumerates IA32_TSC_AUX")
        #expect(agreed[2] == unrelated, "an MSR no feature enumerates stays as it was")
    }

    @Test func aRangeIsSplitAroundTheMSRsItMayNotAnswer() {
        // 0x170–0x17F covers the SYSENTER MSRs (sep) and the MCG MSRs (mca).
        let range = MSRRule(first: 0x170, last: 0x17F, action: .ignore(readValue: 0), origin: "file")
        let agreed = FeatureMSRs.agreeing([range], features: ["mca"])
        #expect(agreed.map { [$0.first, $0.last] } == [[0x170, 0x173], [0x174, 0x176], [0x177, 0x17F]])
        guard case .deny = agreed[1].action else { Issue.record("SYSENTER without sep: \(agreed[1])"); return }
        guard case .ignore = agreed[2].action else { Issue.record("the rest keeps its action"); return }
        let neither = FeatureMSRs.agreeing([range], features: [])
        #expect(neither.filter { if case .deny = $0.action { true } else { false } }.map { [$0.first, $0.last] }
                == [[0x174, 0x176], [0x179, 0x17B]])
    }

    @Test func everyEnumeratingFeatureIsAKnownFeature() {
        for entry in FeatureMSRs.all {
            #expect(entry.first <= entry.last)
            for name in entry.anyOf { #expect(CPUFeatures.named(name) != nil, "\(name) for MSR 0x\(String(entry.first, radix: 16))") }
        }
        #expect(FeatureMSRs.all.map(\.first) == FeatureMSRs.all.map(\.first).sorted())
    }
}
