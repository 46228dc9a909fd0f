// deflect doctor: what this host's KVM offers, checked rather than assumed.
import ArgumentParser
import KVM
import VMM

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Report what this host's KVM offers to Deflect.",
        discussion: "Exit status: 0 when KVM is usable, 68 when it is not."
    )

    @Option(help: "Seconds to wait for the guest hypercall probe before kicking the vCPU.")
    var probeTimeout: Double = 2

    @Option(help: .hidden)
    var kvmDevice: String = KVMSystem.defaultPath

    func validate() throws {
        guard probeTimeout > 0, probeTimeout <= 60 else { throw ValidationError("--probe-timeout must be in (0, 60]") }
    }

    func run() throws {
        let system: KVMSystem
        do {
            system = try KVMSystem(path: kvmDevice)
        } catch {
            print("\(kvmDevice): not usable: \(error)")
            throw fail("KVM is not usable: \(error)", status: ExitStatus.kvmUnavailable)
        }
        print("Deflect doctor: \(kvmDevice)")
        print(row("KVM API version", value(try? system.apiVersion()) + " (Deflect speaks \(KVMSystem.expectedAPIVersion))"))
        print(row("vCPU run area (KVM_GET_VCPU_MMAP_SIZE)", "\(system.vcpuMapSize) bytes"))

        print("capabilities (KVM_CHECK_EXTENSION; system fd / VM fd):")
        let vm = try? system.createVM()
        for capability in Capability.reported {
            let onSystem = value(try? system.check(capability))
            let onVM = vm.map { value(try? $0.check(capability)) } ?? "-"
            print(row("  " + capability.description, "\(onSystem) / \(onVM)" + note(capability, system: system)))
        }

        do { print(row("MSR index list (KVM_GET_MSR_INDEX_LIST)", "\(try system.msrIndexList().count) MSRs")) }
        catch { print(row("MSR index list", "error: \(error)")) }
        do { print(row("feature MSR list (KVM_GET_MSR_FEATURE_INDEX_LIST)", "\(try system.featureMSRIndexList().count) MSRs")) }
        catch { print(row("feature MSR list", "error: \(error)")) }
        do { print(row("supported CPUID entries", "\(try system.supportedCPUID().count)")) }
        catch { print(row("supported CPUID entries", "error: \(error)")) }
        if let vm {
            do {
                let vcpu = try vm.createVCPU(id: 0)
                let list = try vcpu.registerList()
                print(row("KVM_GET_REG_LIST (KVM-defined registers)", list.isEmpty ? "0 registers" : list.map(\.description).joined(separator: ", ")))
            } catch {
                print(row("KVM_GET_REG_LIST", "error: \(error)"))
            }
        }
        print(row("vCPU kick signal handler", VCPUKicker.handlerInstalled ? "installed" : "NOT installed: vCPUs cannot be kicked"))
        print("probing whether a guest hypercall reaches user space (watchdog \(probeTimeout) s)...")
        let answer = HostProbe.hypercallReachesUserSpace(system: system, timeout: probeTimeout)
        print(row("guest hypercall reaches user space", answer.text))
    }

    private func value(_ v: Int32?) -> String { v.map { "\($0)" } ?? "error" }

    private func note(_ c: Capability, system: KVMSystem) -> String {
        switch c {
        case .x86UserSpaceMSR: return "   (exit reasons: INVAL 1, UNKNOWN 2, FILTER 4)"
        case .exitHypercall:
            guard let mask = try? system.check(c), mask > 0 else { return "" }
            return "   (hypercall mask 0x\(String(mask, radix: 16))\(mask & (1 << 12) != 0 ? ", includes KVM_HC_MAP_GPA_RANGE" : ""))"
        default: return ""
        }
    }

    private func row(_ label: String, _ text: String) -> String {
        label + String(repeating: " ", count: max(1, 48 - label.count)) + text
    }
}
