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

/// A model file runnable on any host: this host's CPU with another
/// signature and brand, x2apic off (KVM lists x2apic on every x86 host).
private let hostVariantModel = """
    [cpu]
    name = "test-variant"
    base = "host"
    family = 23
    model = 49
    stepping = 0
    brand = "Deflect Test CPU"
    features = ["-x2apic"]
    """

private func temporaryModel(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "deflect-cpu-\(UUID().uuidString).toml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite("deflect run --cpu: what the guest sees", .serialized,
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CPUModelGuestTests {
    @Test func withoutCPUTheGuestSeesTheHostsVendorAndKVMsBits() throws {
        let (result, seen) = try guestCPUID(nil)
        #expect(result.status == 3, "\(result.stderr)")
        let host = try hostFeatures()
        #expect(seen.vendor == host.vendor)
        // Bits KVM lists; a nested host may show the guest more than it lists.
        if host.features.contains("cx16") { #expect(seen.has(Bits.cx16) == true) }
        if host.features.contains("x2apic") { #expect(seen.has(Bits.x2apic) == true) }
    }

    @Test func aModelFileSetsSignatureBrandAndFeatures() throws {
        let file = try temporaryModel(hostVariantModel)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let (result, seen) = try guestCPUID(file)
        #expect(result.status == 3, "\(result.stderr)")
        #expect(seen.family == 23 && seen.model == 49 && seen.stepping == 0, "\(result.stdout)")
        #expect(result.stdout.contains("BRAND Deflect Test CPU\n"), "\(result.stdout)")
        #expect(seen.has(Bits.x2apic) == false)
        #expect(seen.vendor == (try hostFeatures().vendor))
    }

    @Test func modifiersRemoveAFeatureAndWhatDependsOnIt() throws {
        let host = try hostFeatures()
        let (noX2APIC, seenA) = try guestCPUID("host,-x2apic")
        #expect(noX2APIC.status == 3, "\(noX2APIC.stderr)")
        #expect(seenA.has(Bits.x2apic) == false)
        if host.features.contains("cx16") { #expect(seenA.has(Bits.cx16) == true, "the rest stays the host's") }
        let (noCX16, seenB) = try guestCPUID("host,-cx16")
        #expect(noCX16.status == 3, "\(noCX16.stderr)")
        #expect(seenB.has(Bits.cx16) == false)
        // xsave's dependents, where this host's KVM lists xsave (the pure
        // tests check the closure on recorded tables of other hosts).
        if host.features.contains("xsave") {
            let (noXSAVE, seenC) = try guestCPUID("host,-xsave")
            #expect(noXSAVE.status == 3, "\(noXSAVE.stderr)")
            #expect(seenC.has(Bits.xsave) == false)
            #expect(seenC.has(Bits.avx) == false, "avx needs xsave")
        }
    }

    @Test func qemuSpellingsAreAccepted() throws {
        let (result, seen) = try guestCPUID("host,x2apic=off")
        #expect(result.status == 3, "\(result.stderr)")
        #expect(seen.has(Bits.x2apic) == false)
        let (maxResult, _) = try guestCPUID("max")
        #expect(maxResult.status == 3, "\(maxResult.stderr)")
    }

    /// x86-64-v2 runs where this host's KVM lists its features, and is refused
    /// naming exactly the missing ones where it does not (QEMU's enforce):
    /// the nested test host lists few (pni, sse4_2, … are missing).
    @Test func x86_64_v2RunsOrIsRefusedNamingWhatIsMissing() throws {
        let host = try hostFeatures()
        let needed: Set<String> = ["cx16", "lahf_lm", "pni", "popcnt", "sse4_1", "sse4_2", "ssse3"]
        let missing = needed.subtracting(host.features).sorted()
        let (result, seen) = try guestCPUID("x86-64-v2")
        if missing.isEmpty {
            #expect(result.status == 3, "\(result.stderr)")
            for bit in [Bits.cx16, Bits.sse42, Bits.popcnt] { #expect(seen.has(bit) == true) }
            if host.features.contains("avx2") { #expect(seen.has(Bits.avx2) == false, "no avx2 in v2") }
        } else {
            #expect(result.status == 72, "\(result.stderr)")
            for name in missing { #expect(result.stderr.contains(name), "\(name): \(result.stderr)") }
            #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
            #expect(!result.stdout.contains("VENDOR"), "no guest instruction ran")
        }
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
        #expect(unknown.status == 64, "\(unknown.stderr)")
        #expect(unknown.stderr.contains("no-such-feature"), "\(unknown.stderr)")

        let file = try temporaryModel("[cpu]\nbase = \"host\"\nfeatures = [\"-x2apic\", 7]\n")
        defer { try? FileManager.default.removeItem(atPath: file) }
        let broken = try deflect(["run", image, "--cpu", file])
        #expect(broken.status == 66, "\(broken.stderr)")
        #expect(broken.stderr.contains("\(file):3:"), "located: \(broken.stderr)")
        let missing = try deflect(["run", image, "--cpu", "/nonexistent/model.toml"])
        #expect(missing.status == 66, "\(missing.stderr)")
    }

    @Test func restoreKeepsTheModelAndRefusesAnotherCPU() throws {
        let file = try temporaryModel(hostVariantModel)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let directory = NSTemporaryDirectory() + "deflect-cpu-restore-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/api.sock", state = directory + "/s.snap"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: deflectBinary)
        process.arguments = ["run", try GuestImages.path("real/spin.bin"), "--mode", "real", "--cpu", file,
                             "--api-socket", socket, "--timeout", "30", "--quiet"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
        let cpuid = try deflect(["ctl", "--socket", socket, "cpuid"])
        #expect(cpuid.status == 0, "\(cpuid.stderr)")
        #expect(cpuid.stdout.hasPrefix("model test-variant"), "\(cpuid.stdout)")
        #expect(!cpuid.stdout.contains(" x2apic"), "\(cpuid.stdout)")
        let snap = try deflect(["ctl", "--socket", socket, "snapshot", state, "--then", "stop"])
        #expect(snap.status == 0, "\(snap.stderr)")
        process.waitUntilExit()
        let inspect = try deflect(["snapshot", "inspect", state])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any]
        #expect((json?["cpu_model"] as? [String: Any])?["name"] as? String == "test-variant", "\(inspect.stdout)")
        // Another --cpu than the guest's: refused before it runs.
        let other = try deflect(["restore", state, "--cpu", "host", "--timeout", "1"])
        #expect(other.status == 72, "\(other.stderr)")
        #expect(other.stderr.contains("test-variant"), "\(other.stderr)")
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
        let host = try hostFeatures()
        let result = try deflect(["cpu", "show", "host,-x2apic", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let features = Set(json?["features"] as? [String] ?? [])
        #expect(features == host.features.subtracting(["x2apic"]), "\(features.symmetricDifference(host.features))")
        #expect((json?["cpuid"] as? [Any])?.isEmpty == false)
        #expect(json?["vendor"] as? String == host.vendor)
        // A model of the other vendor is not shown as runnable here.
        let other = try deflect(["cpu", "show", host.vendor == "AuthenticAMD" ? "intel-icelake-client" : "amd-zen3"])
        #expect(other.status == 72, "\(other.stderr)")
    }

    @Test func aHostWrittenAsAModelFileIsThisHost() throws {
        let written = try deflect(["cpu", "host", "--model"])
        #expect(written.status == 0, "\(written.stderr)")
        let file = NSTemporaryDirectory() + "deflect-host-\(UUID().uuidString).toml"
        try written.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let compare = try deflect(["cpu", "compare", file, "host"])
        #expect(compare.status == 0, "\(compare.stderr)")
        // Nothing the host lacks; of the host's own features only those whose
        // requirement it does not list are left out (this nested host lists
        // xsaveerptr without xsave).
        #expect(compare.stdout.contains("only in host-") && compare.stdout.contains(" (0): \n"), "\(compare.stdout)")
        #expect(!compare.stdout.contains("vendors differ"), "\(compare.stdout)")
        let firstLine = compare.stdout.split(separator: "\n").first ?? ""
        #expect(firstLine.hasSuffix("(0): ") || firstLine.hasSuffix("(0):"), "the file has nothing the host lacks: \(compare.stdout)")
        let run = try deflect(["run", try GuestImages.path("multiboot/cpuid.elf"), "--cpu", file])
        #expect(run.status == 3, "this host runs its own model: \(run.stderr)")
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
