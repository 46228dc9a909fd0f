// MachineControlTests: GET /cpuid and GET /vm of a machine with a CPU model —
// the table vCPU 0 started with, read before any vCPU ran.
import ControlAPI
import CPUModel
import DeflectTestSupport
import KVM
import MachineControl
import Testing
import VMM

@Suite("GET /cpuid", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct CPUIDRouteTests {
    @Test func cpuidShowsTheModelAndTheTableTheGuestSees() async throws {
        var config = MachineConfiguration(image: try GuestImages.bytes("long/sequence.bin"), mode: .long, memoryMiB: 16)
        let model = try CPUModels.resolve(try CPUModelSpec.parse("host,-x2apic"),
                                          host: try KVMSystem().supportedCPUID().map(CPUIDLeaf.init), readFile: { _ in "" })
        config.cpuModel = model
        let machine = try Machine(configuration: config, serialOutput: CaptureSink())
        let control = MachineControl(machine: machine, configuration: VMConfiguration(
            image: "sequence.bin", mode: "long", memoryMib: 16, vcpus: 1, platform: "minimal", policyPath: nil,
            cpuModel: model.name, cpuSpec: model.spec, cpuVendor: model.vendor))
        let report = await control.cpuid()
        #expect(report.model == model.name && report.spec == model.spec)
        #expect(report.vendor == model.vendor)
        #expect(!report.features.contains("x2apic") && report.features.contains("cx16"), "\(report.features)")
        let leaf1 = try #require(report.leaves.first { $0.function.value == 1 })
        #expect(leaf1.ecx.value & (1 << 21) == 0)
        #expect(leaf1.ecx.value & (1 << 31) != 0, "the hypervisor bit stays")
        let info = await control.info()
        #expect(info.configuration.cpuModel == model.name && info.configuration.cpuVendor == model.vendor)
    }
}
