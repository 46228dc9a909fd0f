// CPUModelTests: the fleet questions — compare, baseline (its text parses
// back and resolves on every input host), and missingFeatures as a
// restore/migration check uses it.

import Testing
@testable import CPUModel

@Suite struct CPUModelFleetTests {
    func resolve(_ text: String, on host: [CPUIDLeaf]) throws -> ResolvedCPUModel {
        try CPUModels.resolve(try CPUModelSpec.parse(text), host: host, readFile: HostTables.noFiles)
    }

    @Test func compareNamesWhatEachHasAlone() throws {
        let skylake = try resolve("intel-skylake-server", on: HostTables.intel)
        let icelake = try resolve("intel-icelake-client", on: HostTables.intel)
        let (onlySkylake, onlyIcelake) = CPUModels.compare(skylake, icelake)
        #expect(onlySkylake == ["clwb"])
        #expect(onlyIcelake.contains("avx512_vnni") && onlyIcelake.contains("sha_ni") && onlyIcelake == onlyIcelake.sorted())
        #expect(CPUModels.compare(skylake, skylake) == ([], []))
    }

    @Test func baselineParsesBackAndResolvesOnEveryHost() throws {
        // Two Intel hosts: the Ice Lake-SP one, and the same with AVX-512 and SHA fused off.
        let smallerHost = HostTables.clearing(HostTables.clearing(HostTables.intel, 7, 0, .ebx, 0xFFFF_0000), 7, 0, .ecx, 0x0000_5F42)
        let big = try resolve("host", on: HostTables.intel)
        let small = try resolve("host", on: smallerHost)
        let text = try CPUModels.baseline([big, small])
        let readFile = HostTables.files(["./baseline.toml": text])
        let spec = try CPUModelSpec.parse("./baseline.toml")
        for host in [HostTables.intel, smallerHost] {
            let model = try CPUModels.resolve(spec, host: host, readFile: readFile)
            #expect(Set(model.features) == Set(big.features).intersection(small.features), "\(text)")
            #expect(CPUModels.missingFeatures(model, host: host).isEmpty)
            #expect(model.name == "baseline")
        }
        #expect(text.contains("family = 6\nmodel = 106\nstepping = 6"))
        #expect(text.contains("vendor = \"GenuineIntel\""))
    }

    @Test func baselineOfBuiltInsIsTheirIntersection() throws {
        let text = try CPUModels.baseline([try resolve("intel-skylake-server", on: HostTables.intel),
                                           try resolve("intel-icelake-client", on: HostTables.intel)])
        let model = try CPUModels.resolve(try CPUModelSpec.parse("./b.toml"), host: HostTables.intel,
                                          readFile: HostTables.files(["./b.toml": text]))
        #expect(!model.features.contains("clwb") && !model.features.contains("avx512_vnni"))
        #expect(model.features.contains("avx512f"))
        #expect(model.table.testValue(0x8000_0008, register: .eax).map { $0 & 0xFF } == 39)
    }

    @Test func baselineRefusesMixedVendorsAndNothing() throws {
        let intel = try resolve("x86-64-v2", on: HostTables.intel)
        let amd = try resolve("x86-64-v2", on: HostTables.amd)
        #expect(throws: CPUModelError.self) { try CPUModels.baseline([intel, amd]) }
        #expect(throws: CPUModelError.self) { try CPUModels.baseline([]) }
    }

    @Test func savedModelIsCheckedOnAnotherHost() throws {
        let saved = try resolve("host", on: HostTables.amd)
        #expect(CPUModels.missingFeatures(saved, host: HostTables.amd).isEmpty)
        let missingHere = CPUModels.missingFeatures(saved, host: HostTables.thisHost)
        #expect(missingHere.contains("avx2") && missingHere.contains("svm") && missingHere == missingHere.sorted())

        #expect(throws: Never.self) { try CPUModels.checkRunnable(saved, host: HostTables.amd) }
        do {
            try CPUModels.checkRunnable(saved, host: HostTables.thisHost)
            Issue.record("a Milan model passed the check on this host")
        } catch {
            #expect(error.description.hasPrefix("this host's KVM cannot give CPU model host: missing"))
            #expect(error.description.contains("avx2, "))
        }
        do {
            try CPUModels.checkRunnable(saved, host: HostTables.intel)
            Issue.record("an AMD model passed the check on an Intel host")
        } catch {
            #expect(error.description.hasPrefix("CPU model host is AuthenticAMD but this host is GenuineIntel"))
        }
    }
}
