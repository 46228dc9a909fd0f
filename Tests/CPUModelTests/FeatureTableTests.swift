// CPUModelTests: the feature table itself — sorted, names unique, every
// requirement known, no cycles — and `present(in:)` checked against
// this host's recorded table decoded by hand.

import Testing
@testable import CPUModel

@Suite struct CPUModelFeatureTableTests {
    @Test func tableIsSortedUniqueAndClosed() {
        let keys = CPUFeatures.all.map { ($0.function, $0.index, $0.register.rawValue, $0.bit) }
        let order: [CPUIDRegister: Int] = [.eax: 0, .ebx: 1, .ecx: 2, .edx: 3]
        for (a, b) in zip(CPUFeatures.all, CPUFeatures.all.dropFirst()) {
            #expect((a.function, a.index, order[a.register] ?? 0, a.bit) < (b.function, b.index, order[b.register] ?? 0, b.bit),
                    "\(a.name) before \(b.name)")
        }
        #expect(Set(CPUFeatures.all.map(\.name)).count == keys.count)
        for feature in CPUFeatures.all {
            for requirement in feature.requires { #expect(CPUFeatures.named(requirement) != nil, "\(feature.name) → \(requirement)") }
            #expect(!CPUFeatures.dependents(of: [feature.name]).subtracting([feature.name]).contains(where: { dependent in
                CPUFeatures.dependents(of: [dependent]).contains(feature.name)
            }), "no cycle through \(feature.name)")
        }
        for (_, target) in CPUFeatures.aliases { #expect(CPUFeatures.named(target) != nil, "alias → \(target)") }
    }

    /// Leaf by leaf from the recorded words: 1 EDX 0x078bfbff, 1 ECX 0x81202000, 6 EAX 4,
    /// 7 EBX 0x01800002 / ECX 4 / EDX 0xa8000000, 0x80000001 ECX 0x00400393 / EDX 0x23d3fbff,
    /// 0x80000007 EDX 0x100, 0x80000008 EBX 0x110ad205.
    @Test func presentDecodesThisHost() {
        let expected: Set<String> = [
            "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca", "cmov",
            "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2",
            "cx16", "x2apic", "tsc_deadline_timer",
            "arat",
            "tsc_adjust", "clflushopt", "clwb", "umip", "stibp", "arch_capabilities", "ssbd",
            "lahf_lm", "cmp_legacy", "cr8_legacy", "misalignsse", "3dnowprefetch", "osvw", "topoext",
            "syscall", "nx", "mmxext", "fxsr_opt", "lm",
            "invtsc",
            "clzero", "xsaveerptr", "wbnoinvd", "ibpb", "amd_ibrs", "amd_stibp", "amd_ssbd",
        ]
        #expect(!HostTables.thisHost.isEmpty)
        #expect(CPUFeatures.present(in: HostTables.thisHost) == expected)
    }

    @Test func presentOnReconstructedHosts() {
        let intel = CPUFeatures.present(in: HostTables.intel)
        #expect(intel.isSuperset(of: ["avx512f", "avx512_vnni", "la57", "vmx", "intel_pt", "sha_ni", "xsaves"]))
        #expect(intel.isDisjoint(with: ["svm", "sse4a", "clzero", "hle", "amx_tile"]))
        let amd = CPUFeatures.present(in: HostTables.amd)
        #expect(amd.isSuperset(of: ["svm", "sse4a", "clzero", "topoext", "vaes", "avx2", "xsaves"]))
        #expect(amd.isDisjoint(with: ["avx512f", "vmx", "intel_pt", "la57"]))
        #expect(CPUFeatures.present(in: []).isEmpty)
    }

    @Test func chainsAreDescribed() {
        #expect(CPUFeatures.brokenChain(in: ["avx512f", "avx2", "xsave", "fxsr", "fpu"]) == ["avx2", "avx"])
        #expect(CPUFeatures.brokenChain(in: ["avx512f", "avx2", "xsave", "fxsr", "fpu"], from: ["avx512f"])
                == ["avx512f", "avx2", "avx"])
        #expect(CPUFeatures.describeChain(["avx512f", "avx2", "avx"])
                == "avx512f needs avx2, which needs avx, which this model does not have")
        #expect(CPUFeatures.brokenChain(in: ["avx", "xsave", "fxsr", "fpu"]) == nil)
    }

    @Test func removingXSAVETakesItsDependents() {
        let removed = CPUFeatures.dependents(of: ["xsave"])
        #expect(removed.isSuperset(of: ["xsave", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                                        "xsaveopt", "xsavec", "xsaves", "xgetbv1", "pku", "vaes", "shstk", "amx_tile"]))
        #expect(!removed.contains("sse2"))
        #expect(!removed.contains("fxsr"))
    }

    @Test func canonicalNamesAndSuggestions() {
        #expect(CPUFeatures.canonicalName("tsc-deadline") == "tsc_deadline_timer")
        #expect(CPUFeatures.canonicalName("sse4.1") == "sse4_1")
        #expect(CPUFeatures.canonicalName("SSE4-2") == "sse4_2")
        #expect(CPUFeatures.canonicalName("lahf-lm") == "lahf_lm")
        #expect(CPUFeatures.canonicalName("avx512vnni") == "avx512_vnni")
        #expect(CPUFeatures.canonicalName("sse3") == "pni")
        #expect(CPUFeatures.canonicalName("nosuch") == nil)
        #expect(CPUFeatures.suggestion(for: "avx3") != nil)
        #expect(CPUFeatures.suggestion(for: "x2apc") == "x2apic")
    }
}
