// CPUModelTests: parsing --cpu specs — Deflect's and every QEMU spelling
// the issue names — and the bad inputs, each refused with a reason.

import Testing
@testable import CPUModel

@Suite struct CPUModelSpecTests {
    typealias Change = CPUModelSpec.FeatureChange

    @Test func qemuSpellings() throws {
        let qemu = try CPUModelSpec.parse("qemu64,+x2apic,+tsc-deadline")
        #expect(qemu.base == "qemu64")
        #expect(qemu.changes == [Change(feature: "x2apic", enabled: true), Change(feature: "tsc_deadline_timer", enabled: true)])
        #expect(qemu.description == "qemu64,+x2apic,+tsc_deadline_timer")

        #expect(try CPUModelSpec.parse("max").isHost)
        #expect(try CPUModelSpec.parse("host").isHost)
        #expect(try CPUModelSpec.parse("host,-x2apic").changes == [Change(feature: "x2apic", enabled: false)])
        #expect(try CPUModelSpec.parse("x86-64-v2,sse4.1=on,lahf-lm=off").changes
                == [Change(feature: "sse4_1", enabled: true), Change(feature: "lahf_lm", enabled: false)])
        #expect(try CPUModelSpec.parse("x86-64-v3,avx2=off,cx16=true").changes
                == [Change(feature: "avx2", enabled: false), Change(feature: "cx16", enabled: true)])
        #expect(try CPUModelSpec.parse("host,vendor=GenuineIntel").vendor == "GenuineIntel")
        #expect(try CPUModelSpec.parse("qemu64,enforce,check").changes.isEmpty)
        #expect(try CPUModelSpec.parse("qemu64,x2apic").changes == [Change(feature: "x2apic", enabled: true)])
        let overrides = try CPUModelSpec.parse("x86-64-v2,family=6,model=0x55,stepping=4,model-id=Test CPU")
        #expect(overrides.family == 6 && overrides.model == 0x55 && overrides.stepping == 4 && overrides.brand == "Test CPU")
        #expect(try CPUModelSpec.parse("./fleet.toml,+avx2").isFile)
        #expect(try CPUModelSpec.parse("/etc/deflect/cpu.toml").base == "/etc/deflect/cpu.toml")
        #expect(try CPUModelSpec.parse("X86-64-V3").base == "x86-64-v3")
        // QEMU's AMD speculation-control names.
        #expect(try CPUModelSpec.parse("host,ibrs=on,amd-ssbd,virt-ssbd=off,amd-stibp").changes
                == [Change(feature: "amd_ibrs", enabled: true), Change(feature: "amd_ssbd", enabled: true),
                    Change(feature: "virt_ssbd", enabled: false), Change(feature: "amd_stibp", enabled: true)])
        #expect(try CPUModelSpec.parse("host,+spec-ctrl,+tsx-ldtrk,+core-capability").changes.map(\.feature)
                == ["spec_ctrl", "tsxldtrk", "core_capabilities"])
    }

    @Test func badSpecsAreRefusedWithAReason() {
        let cases: [(String, String)] = [
            ("", "needs a model"),
            ("skylake", "unknown CPU model \"skylake\""),
            ("host,+nosuch", "unknown CPU feature \"nosuch\""),
            ("host,+x2apc", "did you mean x2apic?"),
            ("host,,+x2apic", "empty modifier"),
            ("host,", "empty modifier"),
            ("host,+", "without a feature name"),
            ("host,x2apic=maybe", "takes on or off"),
            ("host,family=999", "family=999"),
            ("host,stepping=16", "stepping=16"),
            ("host,vendor=", "vendor="),
            ("host,vendor=ThisIsFarTooLong", "1 to 12"),
            ("host,model-id=" + String(repeating: "x", count: 49), "at most 48"),
            ("host,enforce=perhaps", "expected on or off"),
            ("host,-hypervisor", "hypervisor is not a model feature: leaf 1 ECX[31] is set by the VMM"),
            ("qemu64,+osxsave", "follows the guest's CR4.OSXSAVE"),
        ]
        for (text, fragment) in cases {
            do {
                _ = try CPUModelSpec.parse(text)
                Issue.record("\"\(text)\" parsed")
            } catch {
                #expect("\(error)".contains(fragment), "\(text): \(error)")
                #expect(!"\(error)".contains("\n"))
            }
        }
    }

    @Test func specsRoundTripThroughDescription() throws {
        for text in ["host", "x86-64-v3,+avx512f,-x2apic", "intel-skylake-server,-avx512f,vendor=GenuineIntel"] {
            let spec = try CPUModelSpec.parse(text)
            #expect(try CPUModelSpec.parse(spec.description) == spec)
        }
    }
}
