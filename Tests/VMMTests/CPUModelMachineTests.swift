// VMMTests: a machine with a CPU model — the table its vCPUs start from, the
// model's MSR rules under the policy, and a snapshot whose model a host
// cannot give refused before anything is built.
import CPUModel
import DeflectTestSupport
import Foundation
import KVM
import MSRPolicy
import Testing
@testable import VMM

/// A model any host can run: this host's CPU with another signature, cx16
/// kept and x2apic off (KVM lists both on every x86 host).
let hostVariantModelText = """
    [cpu]
    name = "test-variant"
    base = "host"
    family = 23
    model = 49
    stepping = 0
    features = ["-x2apic"]
    """

/// `text` (a spec; "variant.toml" is `hostVariantModelText`) resolved against this host's KVM.
func resolvedModel(_ text: String) throws -> ResolvedCPUModel {
    try CPUModels.resolve(try CPUModelSpec.parse(text), host: try KVMSystem().supportedCPUID().map(CPUIDLeaf.init),
                          readFile: { _ in hostVariantModelText })
}

/// This host as a restore sees it, with cx16 (CPUID.1:ECX[13]) taken away.
func hostWithoutCX16(_ host: RestoreHost) -> RestoreHost {
    var lacking = host
    lacking.supportedCPUID = host.supportedCPUID.map { entry in
        var e = entry
        if e.function == 1 { e.ecx &= ~(UInt32(1) << 13) }
        return e
    }
    return lacking
}

@Suite("CPU models in a machine", .serialized, .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CPUModelMachineTests {
    @Test func theVCPUsStartFromTheModelsTable() throws {
        var config = MachineConfiguration(image: try GuestImages.bytes("long/sequence.bin"), mode: .long, memoryMiB: 16)
        config.cpuModel = try resolvedModel("variant.toml")
        let machine = try Machine(configuration: config, serialOutput: CaptureSink())
        let leaf1 = try #require(machine.startingCPUID.first { $0.function == 1 })
        #expect(leaf1.ecx & (1 << 13) != 0, "cx16 kept")
        #expect(leaf1.ecx & (1 << 21) == 0, "x2apic off")
        #expect(leaf1.eax == 0x0083_0F10, "family 23 model 49 stepping 0: \(String(leaf1.eax, radix: 16))")
        // The KVM leaves stay: the hypervisor bit and the KVM signature.
        #expect(leaf1.ecx & (1 << 31) != 0)
        #expect(machine.startingCPUID.contains { $0.function == 0x4000_0000 })
    }

    @Test func aModelsMSRRulesLieUnderThePolicy() throws {
        let vendor = try KVMSystem().supportedCPUID().map(CPUIDLeaf.init).vendor
        let profile = try #require(CPUProfiles.all.first { $0.vendor == vendor })
        let rule = try #require(profile.rules.first)
        var config = MachineConfiguration(image: try GuestImages.bytes("long/sequence.bin"), mode: .long, memoryMiB: 16)
        config.cpuModel = ResolvedCPUModel(spec: profile.name, name: profile.name, vendor: profile.vendor,
                                           table: try KVMSystem().supportedCPUID().map(CPUIDLeaf.init),
                                           profileName: profile.name, features: [])
        config.cpuModelMSRRules = profile.rules
        // Without a policy the model's rules decide their MSRs.
        guard case let .policy(alone)? = try? Machine.effectiveMSRSetup(config) else {
            Issue.record("a model with MSR rules gives a policy"); return
        }
        #expect(alone.rule(for: rule.first) != nil)
        // A policy's own rule for the same MSR wins.
        config.msr = .policy(MSRPolicy(rules: [MSRRule(rule.first, .deny, origin: "test")]))
        guard case let .policy(layered)? = try? Machine.effectiveMSRSetup(config) else {
            Issue.record("still a policy"); return
        }
        #expect(layered.rule(for: rule.first)?.origin == "test")
    }

    @Test func aSnapshotWhoseModelThisHostCannotGiveIsRefusedBeforeAnythingIsBuilt() throws {
        let directory = NSTemporaryDirectory() + "deflect-cpu-snap-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/model.snap"
        var config = MachineConfiguration(image: try GuestImages.bytes("long/sequence.bin"), mode: .long, memoryMiB: 16,
                                          timeoutSeconds: 60)
        config.cpuModel = try resolvedModel("variant.toml")
        let output = CaptureSink()
        let run = BackgroundRun(try Machine(configuration: config, serialOutput: output), output: output)
        #expect(run.waitForOutput("SEQ 5\n"))
        try run.machine.pause()
        _ = try run.machine.snapshot(to: path)
        run.machine.requestStop()
        _ = run.finish()

        // This host, as it is: the model comes back with the state.
        let here = try RestoreHost.current(try KVMSystem())
        #expect(try LoadedSnapshot.load(path, on: here).configuration.cpuModel?.name == "test-variant")
        // A host whose KVM lacks cx16: refused, naming it, in one line.
        let error = #expect(throws: MachineError.self) { try LoadedSnapshot.load(path, on: hostWithoutCX16(here)) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("cx16") && !text.contains("\n"), "\(text)")
    }
}
