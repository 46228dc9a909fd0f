// VMM: the CPUID table a VM's vCPUs start from — KVM's supported table, or
// the VM's CPU model after checking that this host's KVM can give every
// feature it names (a snapshot or a migrated guest has already seen them) —
// and the model's MSR rules layered under the VM's policy.
import CPUModel
import KVM
import MSRPolicy

public enum CPUModelSetup {
    /// `model`'s table as KVM entries, or `supported` itself without a
    /// model. Throws when this host is of another vendor or lacks features.
    static func table(_ model: ResolvedCPUModel?, supported: [CPUIDEntry]) throws(KVMError) -> [CPUIDEntry] {
        guard let model else { return supported }
        if let refusal = refusal(model, host: supported.map(CPUIDLeaf.init)) {
            throw .invalidArgument(request: "CPU model", reason: refusal)
        }
        return model.table.map(CPUIDEntry.init)
    }

    /// The guest's physical address width (MAXPHYADDR): CPUID 0x80000008
    /// EAX[7:0] of `table`, or 36 where the leaf is missing (the SDM's value
    /// for a CPU with PAE and no such leaf).
    static func physicalAddressBits(_ table: [CPUIDEntry]) -> Int {
        let bits = table.first { $0.function == 0x8000_0008 && $0.index == 0 }.map { Int($0.eax & 0xFF) } ?? 0
        return bits > 0 ? bits : 36
    }

    /// `msr` with the model's MSR rules layered under its policy: the policy's
    /// rules win MSR by MSR; a policy that names its own `profile` keeps it
    /// and the model's rules stay out. Trace records every MSR as it is.
    /// A model rule for an MSR whose CPUID feature the model lacks becomes
    /// `deny`: the guest gets #GP, as KVM answers for the MSRs it handles.
    static func layered(_ msr: MSRSetup, model: ResolvedCPUModel?, rules: [MSRRule]) -> MSRSetup {
        guard let model, !rules.isEmpty else { return msr }
        let carried = CPUProfile(name: model.profileName ?? model.name, vendor: model.vendor,
                                 summary: "the MSRs of CPU model \(model.name)",
                                 rules: FeatureMSRs.agreeing(rules, features: Set(model.features)))
        switch msr {
        case .trace:
            return .trace
        case .kernelOnly:
            return .policy(CPUProfiles.apply(carried, under: MSRPolicy(rules: [])))
        case let .policy(policy):
            guard policy.profile == nil else { return .policy(policy) }
            var layered = CPUProfiles.apply(carried, under: policy)
            layered.profile = nil
            return .policy(layered)
        }
    }

    /// Restore and receive with `--cpu`: why a guest started with `saved`
    /// (nil: host) is not the model `expected` names; `.none`: no `--cpu`,
    /// any model is fine.
    public static func mismatch(saved: ResolvedCPUModel?, expected: ResolvedCPUModel??) -> String? {
        guard case let .some(wanted) = expected else { return nil }
        switch (saved, wanted) {
        case (nil, nil): return nil
        case let (saved?, wanted?) where saved.vendor == wanted.vendor && saved.features == wanted.features: return nil
        default:
            return "the guest runs CPU model \(saved?.name ?? "host"); --cpu \(wanted?.spec ?? "host") is another model"
        }
    }

    /// Why `model` cannot run on `host`, in one line, or nil.
    public static func refusal(_ model: ResolvedCPUModel, host: [CPUIDLeaf]) -> String? {
        do {
            try CPUModels.checkRunnable(model, host: host)
            return nil
        } catch {
            return error.description
        }
    }
}

extension CPUIDLeaf {
    public init(_ entry: CPUIDEntry) {
        self.init(function: entry.function, index: entry.index, flags: entry.flags,
                  eax: entry.eax, ebx: entry.ebx, ecx: entry.ecx, edx: entry.edx)
    }
}

extension CPUIDEntry {
    public init(_ leaf: CPUIDLeaf) {
        self.init(function: leaf.function, index: leaf.index, flags: leaf.flags,
                  eax: leaf.eax, ebx: leaf.ebx, ecx: leaf.ecx, edx: leaf.edx)
    }
}
