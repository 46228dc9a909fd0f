// CPUModelTests: model files — a full one resolving with its raw CPUID
// modifiers and MSR rules, and every kind of mistake located at
// PATH:LINE:COL.

import Testing
import MSRPolicy
@testable import CPUModel

@Suite struct CPUModelFileTests {
    static let fleet = """
        # A fleet model: Skylake-SP without AVX-512, with its own brand.
        [cpu]
        name = "fleet-a"
        base = "intel-skylake-server"
        brand = "Fleet CPU A"
        features = ["-avx512f", "+invtsc", "sse4.1"]

        [[cpuid]]
        leaf = 0x6
        register = "eax"
        clear = 0x4

        [[msr]]
        msr = "MSR_PLATFORM_INFO"
        action = "emulate"
        value = 0x0000_0800_0000_1000
        writable = 0
        """

    func resolve(_ files: [String: String], _ spec: String, on host: [CPUIDLeaf]) throws -> ResolvedCPUModel {
        try CPUModels.resolve(try CPUModelSpec.parse(spec), host: host, readFile: HostTables.files(files))
    }

    func failure(_ text: String, on host: [CPUIDLeaf] = HostTables.intel) -> String {
        do {
            let model = try resolve(["./bad.toml": text], "./bad.toml", on: host)
            return "resolved: \(model.name)"
        } catch {
            return "\(error)"
        }
    }

    @Test func aFullModelFileResolves() throws {
        let model = try resolve(["./fleet-a.toml": Self.fleet], "./fleet-a.toml,-x2apic", on: HostTables.intel)
        #expect(model.name == "fleet-a" && model.spec == "./fleet-a.toml,-x2apic")
        #expect(model.profileName == "intel-skylake-server")
        #expect(CPUModels.brandString(of: model.table) == "Fleet CPU A")
        #expect(model.table.testValue(1, register: .eax) == 0x0005_0654)
        #expect(model.features.contains("invtsc") && !model.features.contains("x2apic") && !model.features.contains("avx512bw"))
        #expect(!model.features.contains("arat"))   // the [[cpuid]] modifier cleared leaf 6 EAX bit 2
        let rules = try CPUModels.msrRules(for: try CPUModelSpec.parse("./fleet-a.toml"), readFile: HostTables.files(["./fleet-a.toml": Self.fleet]))
        #expect(rules.count == 1 && rules.first?.first == 0xCE)
    }

    @Test func baseLessFileHasExactlyItsFeatures() throws {
        let text = """
            [cpu]
            vendor = "AuthenticAMD"
            family = 0x19
            model = 1
            stepping = 1
            features = ["+fpu", "+fxsr", "+sse", "+sse2", "+lm", "+pae", "+mmx", "+syscall"]
            profile = "amd-zen3"
            """
        let model = try resolve(["/models/tiny.toml": text], "/models/tiny.toml", on: HostTables.amd)
        #expect(model.name == "tiny" && model.profileName == "amd-zen3")
        #expect(model.features == ["fpu", "fxsr", "lm", "mmx", "pae", "sse", "sse2", "syscall"])
        #expect(model.table.testValue(1, register: .eax) == 0x00A0_0F11)
    }

    @Test func mistakesAreLocated() {
        let cases: [(String, String)] = [
            ("[cpu]\nname = \"x\"\nbase = \"x86-64-v3\"\nfeatures = [\"+avx9\"]\n", "./bad.toml:4:12: unknown CPU feature \"avx9\""),
            ("[cpu]\nbase = \"skylake\"\n", "./bad.toml:2:8: unknown base model \"skylake\""),
            ("[cpu]\nbase = \"host\"\ncolour = \"blue\"\n", "./bad.toml:3:1: unknown key \"colour\" in [cpu]"),
            ("[cpu]\nbase = \"host\"\nfamily = \"six\"\n", "./bad.toml:3:10: family must be a number"),
            ("[cpu]\nbase = \"host\"\nmodel = 300\n", "./bad.toml:3:9: model is 300; at most 255"),
            ("[cpu]\nbase = \"host\"\nprofile = \"amd-zen9\"\n", "./bad.toml:3:11: unknown MSR profile \"amd-zen9\""),
            ("[cpu\n", "./bad.toml:1:"),
            ("speed = 3\n[cpu]\n", "./bad.toml:1:1: unknown key \"speed\" at the top level"),
            ("[cpu]\nfeatures = [\"+avx2\", \"+fpu\"]\n", "./bad.toml:2:12: CPU model bad is inconsistent: features: avx2 needs avx"),
            ("[cpu]\nbase = \"host\"\n\n[[cpuid]]\nleaf = 7\nregister = \"ebx\"\nset = 1\nclear = 1\n",
             "./bad.toml:7:7: set and clear share bits 0x1"),
            ("[cpu]\nbase = \"host\"\n\n[[cpuid]]\nleaf = 7\nregister = \"esi\"\nset = 1\n", "./bad.toml:6:12: [[cpuid]] needs register"),
            ("[cpu]\nbase = \"host\"\n\n[[cpuid]]\nleaf = 0x40000001\nregister = \"eax\"\nset = 1\n", "./bad.toml:5:8: leaf 0x40000001 is a hypervisor leaf"),
            ("[cpu]\nbase = \"host\"\n\n[[cpuid]]\nleaf = 7\nregister = \"ebx\"\n", "./bad.toml:4:1: [[cpuid]] changes nothing"),
            ("[cpu]\nbase = \"host\"\n\n[[msr]]\nmsr = \"MSR_NOPE\"\naction = \"deny\"\n", "./bad.toml:5:7: unknown MSR name \"MSR_NOPE\""),
            ("[cpu]\nbase = \"host\"\n\n[[msr]]\nmsr = 0x10\n", "./bad.toml:4:1: rule has no action"),
            ("name = 1\n", "./bad.toml:1:1: unknown key \"name\""),
            ("[cpu]\nbase = \"amd-zen3\"\nvendor = \"GenuineIntel\"\n",
             "./bad.toml:3:10: vendor GenuineIntel contradicts the base model amd-zen3, which is AuthenticAMD"),
            ("[cpu]\nbase = \"host\"\n\n[[msr]]\nmsr = 0x10\naction = \"deny\"\nspeed = 1\n",
             "./bad.toml:7:1: unknown key \"speed\" in [[msr]]"),
            ("[cpu]\nbase = \"host\"\nmsr = 3\n", "./bad.toml:3:1: unknown key \"msr\" in [cpu]"),
            ("msr = 3\n[cpu]\n", "./bad.toml:1:7: msr must be an array of tables ([[msr]])"),
        ]
        for (text, expected) in cases {
            let message = failure(text)
            #expect(message.hasPrefix(expected), "\(message)\n  expected: \(expected)")
            #expect(!message.contains("\n"))
        }
        #expect(failure("[cpu]\n") .hasPrefix("resolved"))
    }

    @Test func rawModifiersAreCheckedAgainstTheHost() {
        // Setting AVX-512F by hand on the AMD host: a feature this host cannot give, named.
        let text = "[cpu]\nbase = \"host\"\n\n[[cpuid]]\nleaf = 7\nregister = \"ebx\"\nset = 0x10000\n"
        let message = failure(text, on: HostTables.amd)
        #expect(message.contains("avx512f needs avx2") || message.contains("missing feature avx512f"), "\(message)")
    }

    @Test func unreadableFilesSaySo() {
        do {
            _ = try resolve([:], "./missing.toml", on: HostTables.intel)
            Issue.record("resolved a missing file")
        } catch {
            #expect("\(error)".hasPrefix("./missing.toml: cannot read CPU model file: no such file"))
        }
    }
}

/// Mangled model files and specs end in a result or a one-line error, never a trap.
@Suite struct CPUModelInputRobustnessTests {
    /// A fixed linear congruential sequence: the same inputs every run.
    struct Sequence {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33) % max(bound, 1)
        }
    }

    @Test func mangledFilesAndSpecsNeverTrap() {
        var random = Sequence()
        let alphabet = Array("[]{}=\",.+-_#\n 0123456789abcdefxyz'\\\u{0}é")
        let original = Array(CPUModelFileTests.fleet)
        let specOriginal = Array("intel-skylake-server,+avx512f,-x2apic,vendor=GenuineIntel,family=6")
        for _ in 0..<1000 {
            var text = original, spec = specOriginal
            for _ in 0..<(1 + random.next(4)) {
                switch random.next(3) {
                case 0: if !text.isEmpty { text.remove(at: random.next(text.count)) }
                case 1: text.insert(alphabet[random.next(alphabet.count)], at: random.next(text.count + 1))
                default: if !text.isEmpty { text[random.next(text.count)] = alphabet[random.next(alphabet.count)] }
                }
                if !spec.isEmpty { spec[random.next(spec.count)] = alphabet[random.next(alphabet.count)] }
            }
            let files = HostTables.files(["./m.toml": String(text)])
            for input in ["./m.toml", String(spec)] {
                do {
                    _ = try CPUModels.resolve(try CPUModelSpec.parse(input), host: HostTables.intel, readFile: files)
                } catch {
                    #expect(!"\(error)".isEmpty)
                }
            }
        }
    }
}
