// CPUModelTests: resolving models against the recorded and reconstructed
// host tables — each built-in's vendor, signature, brand, feature words and
// dependent leaves; dependency closure; the refusals and their wording.

import Foundation
import Testing
@testable import CPUModel

@Suite struct CPUModelResolveTests {
    func resolve(_ text: String, on host: [CPUIDLeaf]) throws -> ResolvedCPUModel {
        try CPUModels.resolve(try CPUModelSpec.parse(text), host: host, readFile: HostTables.noFiles)
    }

    func refusal(_ text: String, on host: [CPUIDLeaf]) -> String {
        do {
            let model = try resolve(text, on: host)
            return "resolved: \(model.features)"
        } catch {
            return "\(error)"
        }
    }

    @Test func hostIsTheHostsTable() throws {
        for host in [HostTables.thisHost, HostTables.intel, HostTables.amd] {
            let model = try resolve("host", on: host)
            #expect(model.table == host.sortedByLeaf)
            #expect(model.features == CPUFeatures.present(in: host).sorted())
            #expect(model.profileName == nil && model.name == "host")
            #expect(CPUModels.missingFeatures(model, host: host).isEmpty)
        }
        let max = try resolve("max", on: HostTables.thisHost)
        #expect(max.table == HostTables.thisHost.sortedByLeaf)
    }

    @Test func hostMinusX2APIC() throws {
        let model = try resolve("host,-x2apic", on: HostTables.thisHost)
        #expect(model.table.testValue(1, register: .ecx) == UInt32(0x8120_2000) & ~(UInt32(1) << 21))
        #expect(!model.features.contains("x2apic"))
        #expect(model.features.contains("tsc_deadline_timer"))
        #expect(model.spec == "host,-x2apic")
        // -apic takes x2apic and the TSC-deadline timer with it.
        let noAPIC = try resolve("host,-apic", on: HostTables.thisHost)
        #expect(Set(noAPIC.features).isDisjoint(with: ["apic", "x2apic", "tsc_deadline_timer"]))
    }

    @Test func removingXSAVEShrinksLeafD() throws {
        let full = try resolve("x86-64-v4", on: HostTables.intel)
        // x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM: PKRU goes (x86-64-v4 has no pku); size = 1664 + 1024.
        #expect(full.table.testValue(0xD, 0, .eax) == 0xE7)
        #expect(full.table.testValue(0xD, 0, .ecx) == 2688 && full.table.testValue(0xD, 0, .ebx) == 2688)
        #expect(full.table.testValue(0xD, 9, .eax) == nil)

        let noAVX512 = try resolve("x86-64-v4,-avx512f", on: HostTables.intel)
        #expect(Set(noAVX512.features).isDisjoint(with: ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]))
        #expect(noAVX512.table.testValue(0xD, 0, .eax) == 0x7)
        #expect(noAVX512.table.testValue(0xD, 0, .ecx) == 832)
        #expect(noAVX512.table.testValue(0xD, 5, .eax) == nil)

        let noXSAVE = try resolve("x86-64-v4,-xsave", on: HostTables.intel)
        #expect(Set(noXSAVE.features).isDisjoint(with: ["xsave", "avx", "avx2", "fma", "f16c", "avx512f", "avx512vl"]))
        #expect(!noXSAVE.table.contains { $0.function == 0xD })
        #expect(noXSAVE.features.contains("sse4_2"))

        let hostNoXSAVE = try resolve("host,-xsave", on: HostTables.intel)
        #expect(Set(hostNoXSAVE.features).isDisjoint(with: ["xsave", "avx", "avx512f", "xsaveopt", "xsavec", "xsaves",
                                                            "xgetbv1", "pku", "vaes", "vpclmulqdq", "avx512_vnni"]))
        #expect(!hostNoXSAVE.table.contains { $0.function == 0xD })
        #expect(hostNoXSAVE.features.contains("la57"))
    }

    @Test func addingAFeatureWithoutItsRequirementIsRefusedWithTheChain() {
        #expect(refusal("x86-64-v2,+avx2", on: HostTables.intel).contains("avx2 needs avx, which CPU model x86-64-v2 does not have"))
        #expect(refusal("x86-64-v3,-avx,+avx512f", on: HostTables.intel)
                .contains("avx512f needs avx2, which CPU model x86-64-v3 does not have"))
        // The host itself lacks xsave here: +avx is refused for the chain before the missing-feature check.
        #expect(refusal("host,+avx", on: HostTables.thisHost).contains("avx needs xsave"))
        // Adding what is needed too works.
        #expect((try? resolve("x86-64-v2,+avx2,+avx,+xsave", on: HostTables.intel)) != nil)
    }

    @Test func skylakeServerOnTheIntelHost() throws {
        let model = try resolve("intel-skylake-server", on: HostTables.intel)
        let definition = try #require(CPUModels.definition(named: "intel-skylake-server"))
        #expect(model.vendor == "GenuineIntel" && model.profileName == "intel-skylake-server")
        #expect(model.table.testValue(1, register: .eax) == 0x0005_0654)
        #expect(CPUModels.brandString(of: model.table) == "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz")
        #expect(model.features == definition.features)
        // Leaf 1 ECX: exactly the model's bits plus the hypervisor bit; no VMX although the host has it.
        #expect(model.table.testValue(1, register: .ecx) == 0xF7FA_3203)
        #expect(model.table.testValue(1, register: .edx) == 0x078B_FBFF)
        #expect(model.table.testValue(7, 0, .ebx) == 0xD19F_07AB)
        #expect(model.table.testValue(7, 0, .ecx) == 0x8)
        #expect(model.table.testValue(7, 0, .edx) == 0x8C00_0400)
        #expect(model.table.testValue(0, register: .eax) == 0x16)
        #expect(!model.table.contains { $0.function > 0x16 && $0.function < 0x4000_0000 })
        #expect(!model.table.contains { $0.function == 0x14 })
        #expect(model.table.testValue(0x8000_0008, register: .eax) == 0x302E)
        #expect(model.table.testValue(0x4000_0000, register: .ebx) == 0x4B4D_564B)
        #expect(CPUModels.missingFeatures(model, host: HostTables.intel).isEmpty)
        #expect(CPUModels.missingFeatures(model, host: HostTables.amd).contains("avx512f"))
    }

    @Test func icelakeClientOnTheIntelHost() throws {
        let model = try resolve("intel-icelake-client", on: HostTables.intel)
        #expect(model.table.testValue(1, register: .eax) == 0x0007_06E5)
        #expect(CPUModels.brandString(of: model.table) == "Intel(R) Core(TM) i7-1065G7 CPU @ 1.30GHz")
        #expect(model.table.testValue(0x8000_0008, register: .eax) == 0x3027)
        #expect(model.features.contains("avx512_vnni") && !model.features.contains("la57") && !model.features.contains("clwb"))
        #expect(model.profileName == "intel-icelake-client")
        #expect(model.table.testValue(0, register: .eax) == 0x1B)
    }

    @Test func zen3OnTheAMDHost() throws {
        let model = try resolve("amd-zen3", on: HostTables.amd)
        let definition = try #require(CPUModels.definition(named: "amd-zen3"))
        #expect(model.vendor == "AuthenticAMD" && model.profileName == "amd-zen3")
        #expect(model.table.testValue(1, register: .eax) == 0x00A0_0F11)
        #expect(model.table.testValue(0x8000_0001, register: .eax) == 0x00A0_0F11)
        #expect(CPUModels.brandString(of: model.table) == "AMD EPYC 7713 64-Core Processor")
        #expect(model.features == definition.features)
        #expect(!model.features.contains("svm") && !model.features.contains("virt_ssbd"))
        // 0x80000001 EDX repeats leaf 1's bits 0-9, 12-17, 23, 24 on AMD.
        let leaf1 = try #require(model.table.testValue(1, register: .edx))
        let extended = try #require(model.table.testValue(0x8000_0001, register: .edx))
        #expect(extended & 0x0183_F3FF == leaf1 & 0x0183_F3FF)
        #expect(model.table.testValue(0xD, 0, .eax) == 0x207 && model.table.testValue(0xD, 0, .ecx) == 0x988)
    }

    @Test func vendorNeutralModelsTakeTheHostsVendorAndSignature() throws {
        for host in [HostTables.intel, HostTables.amd] {
            let v3 = try resolve("x86-64-v3", on: host)
            #expect(v3.vendor == host.vendor)
            #expect(v3.table.testValue(1, register: .eax) == host.testValue(1, register: .eax))
            #expect(v3.profileName == nil)
            #expect(Set(v3.features) == Set(BuiltInModels.x86_64Base + BuiltInModels.v2Additions + BuiltInModels.v3Additions))
        }
        let qemu64 = try resolve("qemu64,+x2apic,+tsc-deadline", on: HostTables.intel)
        #expect(qemu64.table.testValue(1, register: .eax) == 0x0006_0FB1)
        #expect(qemu64.features.contains("x2apic") && qemu64.features.contains("tsc_deadline_timer"))
        #expect(CPUModels.brandString(of: qemu64.table) == "QEMU Virtual CPU version 2.5+")
    }

    @Test func missingFeaturesAreAllNamedInOneLine() {
        let message = refusal("x86-64-v4", on: HostTables.amd)
        #expect(message.contains("missing 5 features avx512bw, avx512cd, avx512dq, avx512f, avx512vl"), "\(message)")
        let here = refusal("amd-zen3", on: HostTables.thisHost)
        #expect(here.contains("this host's KVM cannot give CPU model amd-zen3"))
        for feature in ["avx", "avx2", "xsave", "pni", "ssse3", "sse4_2", "aes", "sha_ni", "vaes"] {
            #expect(here.contains(feature), "\(feature) in \(here)")
        }
        #expect(!here.contains("\n"))
        #expect(refusal("x86-64-v2", on: HostTables.thisHost).contains("missing 5 features pni, popcnt, sse4_1, sse4_2, ssse3"))
    }

    @Test func otherVendorIsRefusedSayingWhy() {
        let message = refusal("amd-zen3", on: HostTables.intel)
        #expect(message.hasPrefix("CPU model amd-zen3 is AuthenticAMD but this host is GenuineIntel: KVM emulates vendor-specific instructions"))
        #expect(refusal("intel-skylake-server", on: HostTables.amd).contains("is GenuineIntel but this host is AuthenticAMD"))
        #expect(refusal("host,vendor=GenuineIntel", on: HostTables.amd).contains("is GenuineIntel but this host is AuthenticAMD"))
        #expect(refusal("amd-zen3,vendor=GenuineIntel", on: HostTables.amd).contains("contradicts CPU model amd-zen3"))
        #expect((try? resolve("x86-64-v2,vendor=GenuineIntel", on: HostTables.intel)) != nil)
    }

    @Test func builtInModelsAreConsistentAndSorted() {
        #expect(CPUModels.names == CPUModels.names.sorted())
        for definition in CPUModels.builtIn {
            #expect(CPUFeatures.brokenChain(in: Set(definition.features)) == nil, "\(definition.name)")
            for name in definition.features { #expect(CPUFeatures.named(name) != nil, "\(definition.name): \(name)") }
            if let profile = definition.profileName { #expect(definition.vendor != nil, "\(profile)") }
        }
    }

    @Test func resolvedModelsRoundTripThroughJSON() throws {
        let model = try resolve("intel-skylake-server,-avx512f", on: HostTables.intel)
        let data = try JSONEncoder().encode(model)
        #expect(try JSONDecoder().decode(ResolvedCPUModel.self, from: data) == model)
    }
}


/// Invariants over every built-in model and every feature, on both reconstructed hosts.
@Suite struct CPUModelInvariantTests {
    func resolve(_ text: String, on host: [CPUIDLeaf]) throws -> ResolvedCPUModel {
        try CPUModels.resolve(try CPUModelSpec.parse(text), host: host, readFile: HostTables.noFiles)
    }

    /// Each built-in either resolves to exactly its features or is refused naming exactly what the host lacks.
    @Test func everyBuiltInIsExactlyItsFeaturesOrRefusedForWhatIsMissing() throws {
        for definition in CPUModels.builtIn {
            for host in [HostTables.intel, HostTables.amd, HostTables.thisHost] {
                if let vendor = definition.vendor, vendor != host.vendor { continue }
                let missing = Set(definition.features).subtracting(CPUFeatures.present(in: host)).sorted()
                do {
                    let model = try resolve(definition.name, on: host)
                    #expect(missing.isEmpty, "\(definition.name) resolved although \(missing) are missing")
                    #expect(model.features == definition.features, "\(definition.name)")
                    #expect(model.profileName == definition.profileName)
                    try CPUModels.checkRunnable(model, host: host)
                } catch {
                    #expect(!missing.isEmpty, "\(definition.name): \(error)")
                    #expect("\(error)".contains("missing") && "\(error)".contains(missing.joined(separator: ", ")), "\(error)")
                }
            }
        }
    }

    /// Removing any one feature leaves a consistent model without it and without anything that needs it,
    /// and leaf 0xD enables only components whose features remain.
    @Test func removingAnyFeatureLeavesAConsistentModel() throws {
        for feature in CPUFeatures.all.map(\.name) {
            for base in ["host", "x86-64-v4"] {
                let model = try resolve("\(base),-\(feature)", on: HostTables.intel)
                let features = Set(model.features)
                #expect(features.isDisjoint(with: CPUFeatures.dependents(of: [feature])), "\(base),-\(feature)")
                if base != "host" { #expect(CPUFeatures.brokenChain(in: features) == nil, "\(base),-\(feature)") }
                let xcr0 = model.table.testValue(0xD, 0, .eax) ?? 0
                for (component, owner) in CPUModels.xsaveComponents where component >= 2 && xcr0 & (1 << component) != 0 {
                    #expect(features.contains(owner), "\(base),-\(feature): XCR0 bit \(component) without \(owner)")
                }
                #expect(CPUModels.missingFeatures(model, host: HostTables.intel).isEmpty)
            }
        }
    }
}
