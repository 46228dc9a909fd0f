// CLITests: `--cpu` and `deflect cpu` as a user runs them — what a guest that
// prints its CPUID (Guests/multiboot/cpuid.c) sees under each model and
// modifier, and every refusal in one line with its status.
import DeflectTestSupport
import Foundation
import Testing

/// What cpuid.elf printed: its VENDOR, FMS and LEAF lines.
struct GuestCPUID {
    var vendor = ""
    var family = -1, model = -1, stepping = -1
    /// (function, index) → [eax, ebx, ecx, edx]
    var leaves: [String: [UInt32]] = [:]
    var xsaveComponents: [Int] = []

    init(_ output: String) {
        for line in output.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            switch words.first {
            case "VENDOR": vendor = words.dropFirst().joined(separator: " ")
            case "FMS" where words.count == 4:
                family = Int(words[1]) ?? -1; model = Int(words[2]) ?? -1; stepping = Int(words[3]) ?? -1
            case "LEAF" where words.count == 7:
                leaves["\(words[1]).\(words[2])"] = words[3...].map { UInt32($0, radix: 16) ?? 0 }
            case "XSAVE" where words.count == 4:
                xsaveComponents.append(Int(words[1]) ?? -1)
            default: break
            }
        }
    }

    /// Bit `bit` of `register` (0 eax … 3 edx) of leaf `function`.`index`; nil if the guest did not print it.
    func bit(_ function: UInt32, _ index: UInt32 = 0, _ register: Int, _ bit: Int) -> Bool? {
        let key = hex8(function) + "." + hex8(index)
        return leaves[key].map { $0[register] & (1 << UInt32(bit)) != 0 }
    }

    private func hex8(_ v: UInt32) -> String {
        let digits = String(v, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// Feature bits the tests look at: (function, index, register 0…3, bit).
enum Bits {
    static let cx16 = (UInt32(1), UInt32(0), 2, 13)
    static let sse42 = (UInt32(1), UInt32(0), 2, 20)
    static let x2apic = (UInt32(1), UInt32(0), 2, 21)
    static let popcnt = (UInt32(1), UInt32(0), 2, 23)
    static let xsave = (UInt32(1), UInt32(0), 2, 26)
    static let avx = (UInt32(1), UInt32(0), 2, 28)
    static let avx2 = (UInt32(7), UInt32(0), 1, 5)
    static let avx512f = (UInt32(7), UInt32(0), 1, 16)
}

extension GuestCPUID {
    func has(_ b: (UInt32, UInt32, Int, Int)) -> Bool? { bit(b.0, b.1, b.2, b.3) }
}

/// Runs cpuid.elf under `cpu` (nil: no --cpu); the result and what the guest saw.
private func guestCPUID(_ cpu: String?) throws -> (CommandResult, GuestCPUID) {
    var arguments = ["run", try GuestImages.path("multiboot/cpuid.elf")]
    if let cpu { arguments += ["--cpu", cpu] }
    let result = try deflect(arguments, limit: 60)
    return (result, GuestCPUID(result.stdout))
}

/// This host's features by name (`deflect cpu host --json`).
private func hostFeatures() throws -> (vendor: String, features: Set<String>) {
    let result = try deflect(["cpu", "host", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    return (json?["vendor"] as? String ?? "", Set(json?["features"] as? [String] ?? []))
}

@Suite("deflect run --cpu: what the guest sees", .serialized,
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CPUModelGuestTests {
    @Test func withoutCPUTheGuestSeesTheHostsVendorAndFeatures() throws {
        let (result, seen) = try guestCPUID(nil)
        #expect(result.status == 1, "\(result.stderr)")
        let host = try hostFeatures()
        #expect(seen.vendor == host.vendor)
        #expect(seen.has(Bits.cx16) == host.features.contains("cx16"))
        #expect(seen.has(Bits.avx2) == host.features.contains("avx2"))
    }

    @Test func x86_64_v2HasItsLevelAndNothingAbove() throws {
        let (result, seen) = try guestCPUID("x86-64-v2")
        #expect(result.status == 1, "\(result.stderr)")
        #expect(seen.vendor == (try hostFeatures().vendor), "the psABI levels keep the host's vendor")
        for bit in [Bits.cx16, Bits.sse42, Bits.popcnt] { #expect(seen.has(bit) == true, "\(seen.leaves)") }
        for bit in [Bits.avx, Bits.avx2, Bits.avx512f] { #expect(seen.has(bit) != true, "\(seen.leaves)") }
    }

    @Test func x86_64_v3AddsAVX2ButNotAVX512() throws {
        let host = try hostFeatures()
        let (result, seen) = try guestCPUID("x86-64-v3")
        guard host.features.isSuperset(of: ["avx2", "fma", "bmi2", "movbe"]) else {
            #expect(result.status == 72, "this host lacks v3: refused. \(result.stderr)")
            return
        }
        #expect(result.status == 1, "\(result.stderr)")
        #expect(seen.has(Bits.avx2) == true)
        #expect(seen.has(Bits.avx512f) != true)
    }

    @Test func modifiersRemoveOneFeatureAndWhatDependsOnIt() throws {
        let host = try hostFeatures()
        let (noX2APIC, seenA) = try guestCPUID("host,-x2apic")
        #expect(noX2APIC.status == 1, "\(noX2APIC.stderr)")
        #expect(seenA.has(Bits.x2apic) == false)
        #expect(seenA.has(Bits.cx16) == host.features.contains("cx16"), "the rest stays the host's")

        let (noXSAVE, seenB) = try guestCPUID("host,-xsave")
        #expect(noXSAVE.status == 1, "\(noXSAVE.stderr)")
        #expect(seenB.has(Bits.xsave) == false)
        #expect(seenB.has(Bits.avx) == false, "avx needs xsave")
        #expect(seenB.has(Bits.avx2) != true, "avx2 needs avx")
        #expect(seenB.xsaveComponents.isEmpty, "no XSAVE state components without xsave: \(seenB.xsaveComponents)")
    }

    @Test func qemuSpellingsAreAccepted() throws {
        let (result, seen) = try guestCPUID("host,x2apic=off")
        #expect(result.status == 1, "\(result.stderr)")
        #expect(seen.has(Bits.x2apic) == false)
        let (maxResult, _) = try guestCPUID("max")
        #expect(maxResult.status == 1, "\(maxResult.stderr)")
    }

    @Test func aFeatureTheHostLacksIsRefusedNamingIt() throws {
        let host = try hostFeatures()
        guard !host.features.contains("avx512f") else { return }  // checked on the recorded tables in CPUModelTests
        let (result, _) = try guestCPUID("x86-64-v4")
        #expect(result.status == 72)
        #expect(result.stderr.contains("avx512f"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        #expect(!result.stdout.contains("VENDOR"), "no guest instruction ran")
    }

    @Test func theOtherVendorsModelIsRefusedSayingWhy() throws {
        let host = try hostFeatures()
        let other = host.vendor == "AuthenticAMD" ? "intel-skylake-server" : "amd-zen3"
        let (result, _) = try guestCPUID(other)
        #expect(result.status == 72, "\(result.stderr)")
        #expect(result.stderr.contains(host.vendor) && result.stderr.contains("vendor"), "\(result.stderr)")
    }

    @Test func malformedSpecsAndModelFilesGetOneLine() throws {
        let image = try GuestImages.path("multiboot/cpuid.elf")
        let unknown = try deflect(["run", image, "--cpu", "host,+no-such-feature"])
        #expect(unknown.status == 64 || unknown.status == 72, "\(unknown.stderr)")
        #expect(unknown.stderr.contains("no-such-feature"), "\(unknown.stderr)")

        let file = NSTemporaryDirectory() + "deflect-cpu-\(UUID().uuidString).toml"
        try "[cpu]\nbase = \"x86-64-v2\"\nfeatures = [\"+sse4_2\", 7]\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let broken = try deflect(["run", image, "--cpu", file])
        #expect(broken.status != 0 && broken.status != 1, "\(broken.stderr)")
        #expect(broken.stderr.contains("\(file):3:"), "located: \(broken.stderr)")
    }
}

@Suite("deflect cpu", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CPUCommandTests {
    @Test func modelsListsEveryBuiltInModel() throws {
        let result = try deflect(["cpu", "models"])
        #expect(result.status == 0)
        for name in ["host", "x86-64-v2", "x86-64-v3", "x86-64-v4", "intel-skylake-server", "intel-icelake-client", "amd-zen3"] {
            #expect(result.stdout.contains("\(name):"), "\(name) in \(result.stdout)")
        }
    }

    @Test func showGivesTheTableAndFeaturesAsJSON() throws {
        let result = try deflect(["cpu", "show", "x86-64-v2", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let features = Set(json?["features"] as? [String] ?? [])
        #expect(features.isSuperset(of: ["cx16", "sse4_2", "popcnt"]))
        #expect(!features.contains("avx2"))
        #expect((json?["cpuid"] as? [Any])?.isEmpty == false)
    }

    @Test func compareAndBaselineAgree() throws {
        let compare = try deflect(["cpu", "compare", "x86-64-v2", "x86-64-v3"])
        #expect(compare.status == 0, "\(compare.stderr)")
        let onlyV3 = compare.stdout.split(separator: "\n").first { $0.hasPrefix("only in x86-64-v3") } ?? ""
        #expect(onlyV3.contains("avx2"), "\(compare.stdout)")

        let baseline = try deflect(["cpu", "baseline", "x86-64-v2", "x86-64-v3"])
        #expect(baseline.status == 0, "\(baseline.stderr)")
        let file = NSTemporaryDirectory() + "deflect-baseline-\(UUID().uuidString).toml"
        try baseline.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let again = try deflect(["cpu", "compare", file, "x86-64-v2"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("only in x86-64-v2 (0)"), "the baseline of v2 and v3 is v2: \(again.stdout)")
    }
}
