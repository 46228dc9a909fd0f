// deflect: `--cpu SPEC`, the VM's CPU model — resolved against this host's
// KVM before anything is built (QEMU's `enforce`, always on), and the MSR
// rules the model carries layered under the VM's policy.
import ArgumentParser
import CPUModel
import KVM
import MSRPolicy
import VMM

/// The `--cpu` option of run, trace, restore and receive.
struct CPUModelOptions: ParsableArguments {
    @Option(name: .customLong("cpu"), help: ArgumentHelp(
        "The guest's CPU model: host (KVM's supported CPUID, the default), a built-in model (deflect cpu models), or a model file (TOML); each optionally followed by ,+FEATURE / ,-FEATURE (Linux /proc/cpuinfo names). QEMU's spellings work too: qemu64, max, host,-x2apic, X,FEATURE=off, vendor=GenuineIntel.",
        valueName: "SPEC"))
    var cpu: String?

    /// The spec as parsed (host without --cpu), or a usage error naming what is wrong.
    func spec() throws -> CPUModelSpec {
        guard let cpu else { return CPUModelSpec(base: "host") }
        do {
            return try CPUModelSpec.parse(cpu)
        } catch {
            throw fail("--cpu \(cpu): \(error)", status: ExitStatus.usage)
        }
    }

    /// Restore and receive: the guest keeps the model it was started with
    /// (saved with its state). `--cpu`, when given, must name that model:
    /// nil when it is absent, else the model it resolves to here (nil for host).
    func expectedModel(kvmDevicePath: String) throws -> ResolvedCPUModel?? {
        guard cpu != nil else { return .none }
        return .some(try choice(kvmDevicePath: kvmDevicePath).model)
    }

    /// Resolves the model on the host behind `kvmDevicePath`: nil for plain
    /// `host` (today's CPUID, nothing changes). Refusals are one line naming
    /// every missing feature, with status 72.
    func choice(kvmDevicePath: String) throws -> CPUModelChoice {
        let spec = try spec()
        guard spec != CPUModelSpec(base: "host") else { return CPUModelChoice(model: nil, msrRules: []) }
        let hostTable = try CPUModelHost.supportedTable(kvmDevicePath: kvmDevicePath)
        do {
            let model = try CPUModels.resolve(spec, host: hostTable, readFile: CPUModelFiles.read)
            return CPUModelChoice(model: model, msrRules: try CPUModelFiles.msrRules(of: model, spec: spec))
        } catch {
            // A model file's own errors are bad input; the rest says this host cannot run the model.
            let inFile = error.file != nil
            throw fail("--cpu \(cpu ?? "host"): \(error)", status: inFile ? ExitStatus.badInput : ExitStatus.cpuModelUnavailable)
        }
    }
}

/// A resolved `--cpu`: the model (nil = the host's CPUID unchanged) and the
/// MSR rules it brings (its profile's, then its file's own).
struct CPUModelChoice {
    var model: ResolvedCPUModel?
    var msrRules: [MSRRule]

    /// Sets the model on `configuration` (the VMM layers its rules under the
    /// policy); warns when the policy names a profile of the other vendor.
    func apply(to configuration: inout MachineConfiguration, policy: MSRPolicy?) {
        configuration.cpuModel = model
        configuration.cpuModelMSRRules = msrRules
        if let model, let own = policy?.profile, let profile = CPUProfiles.named(own), profile.vendor != model.vendor {
            StandardStreams.writeError("deflect: warning: the policy's profile \(own) is a \(profile.vendor) CPU's; the CPU model \(model.name) is \(model.vendor)\n")
        }
    }
}

/// This host's KVM_GET_SUPPORTED_CPUID as the CPU-model code reads it.
enum CPUModelHost {
    static func supportedTable(kvmDevicePath: String) throws -> [CPUIDLeaf] {
        let entries: [CPUIDEntry]
        do {
            entries = try KVMSystem(path: kvmDevicePath).supportedCPUID()
        } catch {
            throw fail("\(kvmDevicePath): \(error)", status: ExitStatus.kvmUnavailable)
        }
        return entries.map(CPUIDLeaf.init)
    }
}

/// Model files: regular files up to 1 MiB, as policies.
enum CPUModelFiles {
    static let maximumBytes = 1 << 20

    /// The MSR rules `model` carries: its profile's, then its file's own.
    static func msrRules(of model: ResolvedCPUModel, spec: CPUModelSpec) throws(CPUModelError) -> [MSRRule] {
        let own = try CPUModels.msrRules(for: spec, readFile: read)
        return (model.profileName.flatMap(CPUProfiles.named)?.rules ?? []) + own
    }

    static func read(_ path: String) throws -> String {
        let bytes = try InputFiles.mapRegularFile(path, limit: UInt64(maximumBytes))
        return String(decoding: bytes, as: UTF8.self)
    }
}
