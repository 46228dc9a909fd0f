// MSRPolicy: from policy text to the policy a VM runs: parse and validate
// (with the known providers and profiles), then layer the rules over the
// named CPU-model profile.

public enum PolicyLoader {
    /// Parses, validates and applies the profile. Errors carry file:line:column.
    public static func load(_ text: String, file: String) throws(PolicyErrors) -> MSRPolicy {
        let document = try PolicyParser.parse(text, file: file, knownProviders: ValueProviders.names,
                                              knownProfiles: CPUProfiles.names)
        let policy = document.policy
        guard let name = policy.profile, let profile = CPUProfiles.named(name) else { return policy }
        return CPUProfiles.apply(profile, under: policy)
    }
}

/// A policy that reproduces what a traced guest saw.
public enum TracePolicy {
    /// - refused accesses (KVM raised #GP) become `deny`;
    /// - MSRs in `kernelHandled` (KVM_GET_MSR_INDEX_LIST) stay `kernel`;
    /// - MSRs the guest wrote stay `kernel`: a write KVM accepted has effects
    ///   only KVM can carry out (EFER.LME before paging, APIC_BASE's x2APIC
    ///   mode, the SYSENTER and kvm-clock MSRs), so an emulated copy would
    ///   change what the guest does next (a Linux kernel triple-faults at its
    ///   first EFER write);
    /// - every MSR the guest only read becomes `emulate` at the first value it
    ///   read: the policy pins what the guest saw, on any host.
    /// MSRs the guest never touched are left to KVM (`default = kernel`).
    public static func reproducing(_ trace: MSRStatistics, kernelHandled: Set<UInt32> = []) -> MSRPolicy {
        var rules: [MSRRule] = []
        for entry in trace.entries {
            let refused = entry.outcomes["gp", default: 0] > 0 && entry.outcomes["ok", default: 0] == 0
            let action: MSRAction
            if refused {
                action = .deny
            } else if kernelHandled.contains(entry.index) || entry.writes > 0 {
                action = .kernel
            } else {
                action = .emulate(Emulation(initialValue: entry.firstReadValue))
            }
            rules.append(MSRRule(entry.index, action, origin: "deflect trace"))
        }
        return MSRPolicy(rules: rules, defaultAction: .kernel, defaultScope: .unknown, logDefault: true)
    }
}
