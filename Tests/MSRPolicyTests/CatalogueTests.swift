// Tests for MSRCatalogue: the table's shape (sorted, unique) and its lookups.

import KVMABI
import Testing
@testable import MSRPolicy

@Suite struct CatalogueTests {
    @Test func tableIsSortedWithUniqueIndices() {
        let indices = MSRCatalogue.entries.map(\.index)
        #expect(zip(indices, indices.dropFirst()).allSatisfy { $0 < $1 })
        #expect(MSRCatalogue.entries.count >= 80)
    }

    @Test func namesAreUniqueEvenAfterNormalization() {
        let names = MSRCatalogue.entries.map(\.name)
        #expect(Set(names).count == names.count)
        let keys = names.map(MSRCatalogue.normalized)
        #expect(Set(keys).count == keys.count)
        // Every alias leads to its own index, never shadowed by an entry of another index.
        for (alias, index) in MSRCatalogue.aliases {
            #expect(MSRCatalogue.index(named: alias) == index, "alias \(alias)")
        }
    }

    @Test func nothingInTheX2APICRange() {
        #expect(MSRCatalogue.entries.allSatisfy { !MSRCatalogue.x2APICRange.contains($0.index) })
        #expect(MSRCatalogue.x2APICRange == 0x800...0x8ff)
        #expect(MSRCatalogue.describe(0x830) == "x2APIC register 0x00000830")
    }

    @Test func everyEntryIsFoundByIndexAndName() {
        for entry in MSRCatalogue.entries {
            #expect(MSRCatalogue.info(entry.index) == entry)
            #expect(MSRCatalogue.index(named: entry.name) == entry.index)
            #expect(MSRCatalogue.index(named: entry.name.lowercased()) == entry.index)
            #expect(!entry.summary.isEmpty)
        }
    }

    @Test(arguments: [
        ("MSR_IA32_TSC", 0x10), ("IA32_TSC", 0x10), ("tsc", 0x10), ("msr_tsc", 0x10),
        ("MSR_PLATFORM_INFO", 0xce), ("platform_info", 0xce), ("IA32_BIOS_SIGN_ID", 0x8b),
        ("MSR_AMD64_PATCH_LEVEL", 0x8b), ("IA32_PAT", 0x277), ("IA32_FMASK", 0xc000_0084),
        ("IA32_EFER", 0xc000_0080), ("efer", 0xc000_0080), ("MSR_KVM_MIGRATION_CONTROL", 0x4b56_4d08),
        ("hv_x64_msr_hypercall", 0x4000_0001), ("MSR_K7_HWCR", 0xc001_0015), ("MSR_AMD_PKG_ENERGY_STATUS", 0xc001_029b),
        ("IA32_FEATURE_CONTROL", 0x3a), ("MSR_MISC_FEATURES_ENABLES", 0x140),
    ] as [(String, UInt32)])
    func lookupByName(name: String, index: UInt32) {
        #expect(MSRCatalogue.index(named: name) == index)
    }

    @Test func requiredEntriesArePresent() {
        let required: [UInt32: MSRFamily] = [
            0x10: .architectural, 0x1b: .architectural, 0x3a: .architectural, 0x3b: .architectural, 0x48: .architectural,
            0x49: .architectural, 0x8b: .architectural, 0xfe: .architectural, 0x174: .architectural, 0x176: .architectural,
            0x198: .architectural, 0x199: .architectural, 0x19a: .architectural, 0x19b: .architectural, 0x19c: .architectural,
            0x1a0: .architectural, 0x277: .architectural, 0x2ff: .architectural, 0x1d9: .architectural, 0x10a: .architectural,
            0xda0: .architectural, 0x6a0: .architectural, 0x6a7: .architectural, 0x6e0: .architectural,
            0xc000_0080: .architectural, 0xc000_0084: .architectural, 0xc000_0102: .architectural, 0xc000_0103: .architectural,
            0xce: .intel, 0x35: .intel, 0x140: .intel, 0x1a2: .intel, 0x1b1: .intel, 0x1b2: .intel, 0x606: .intel,
            0x610: .intel, 0x611: .intel, 0x614: .intel, 0x619: .intel, 0x639: .intel, 0x641: .intel, 0x1ad: .intel,
            0xe2: .intel, 0x1fc: .intel, 0x34: .intel,
            0xc001_0015: .amd, 0xc001_0010: .amd, 0xc001_0114: .amd, 0xc001_0299: .amd, 0xc001_029a: .amd, 0xc001_029b: .amd,
            0x4b56_4d00: .kvm, 0x4b56_4d08: .kvm, 0x4000_0000: .hyperv, 0x4000_0001: .hyperv,
        ]
        for (index, family) in required {
            #expect(MSRCatalogue.info(index)?.family == family, "\(MSRCatalogue.hex(index))")
        }
        #expect(MSRCatalogue.info(0xffff_ffff) == nil)
        #expect(MSRCatalogue.name(0x11) == "MSR_KVM_WALL_CLOCK")
    }

    @Test func unknownNamesGetSuggestions() {
        #expect(MSRCatalogue.index(named: "MSR_PLATFORM_INFOO") == nil)
        #expect(MSRCatalogue.suggestion(for: "MSR_PLATFORM_INFOO") == "MSR_PLATFORM_INFO")
        #expect(MSRCatalogue.suggestion(for: "IA32_APIC_BAS") == "MSR_IA32_APICBASE")
        #expect(MSRCatalogue.suggestion(for: "completely unrelated words here") == nil)
        #expect(MSRCatalogue.index(named: "") == nil)
    }
}
