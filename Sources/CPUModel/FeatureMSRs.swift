// CPUModel: the MSRs a CPUID feature enumerates, so a model's MSR rules agree
// with its CPUID — an MSR whose feature the model lacks gets #GP, never a
// value. KVM applies the same rule to the MSRs it handles (it checks the
// guest's CPUID); this table covers the rules a model or its profile brings.
//
// Sources: Intel SDM Vol. 4, "Architectural MSRs" (each MSR's "Comment"
// column names the CPUID bit that enumerates it); AMD APM Vol. 2, appendix A.

import MSRPolicy

public enum FeatureMSRs {
    /// An MSR range and the features of which at least one must be present.
    public struct Entry: Sendable, Hashable {
        public var first: UInt32
        public var last: UInt32
        public var anyOf: [String]
    }

    /// Sorted by `first`.
    public static let all: [Entry] = [
        e(0x10, ["tsc"]),                                   // IA32_TIME_STAMP_COUNTER: CPUID.01H:EDX[4]
        e(0x1B, ["apic"]),                                  // IA32_APIC_BASE: CPUID.01H:EDX[9]
        e(0x3B, ["tsc_adjust"]),                            // IA32_TSC_ADJUST: CPUID.(EAX=07H,ECX=0):EBX[1]
        e(0x48, ["spec_ctrl", "amd_ibrs", "amd_ssbd"]),     // IA32_SPEC_CTRL: 07H:EDX[26] (Intel), 80000008H:EBX[14]/[24] (AMD)
        e(0x49, ["spec_ctrl", "ibpb"]),                     // IA32_PRED_CMD: 07H:EDX[26] (Intel), 80000008H:EBX[12] (AMD)
        e(0x10A, ["arch_capabilities"]),                    // IA32_ARCH_CAPABILITIES: 07H:EDX[29]
        e(0x10B, ["flush_l1d"]),                            // IA32_FLUSH_CMD: 07H:EDX[28]
        e(0x174, 0x176, ["sep"]),                           // IA32_SYSENTER_CS/ESP/EIP: 01H:EDX[11]
        e(0x179, 0x17B, ["mca"]),                           // IA32_MCG_CAP/STATUS/CTL: 01H:EDX[14]
        e(0x200, 0x26F, ["mtrr"]),                          // IA32_MTRR_PHYSBASE0 … FIX4K_F8000: 01H:EDX[12]
        e(0x277, ["pat"]),                                  // IA32_PAT: 01H:EDX[16]
        e(0x2FF, ["mtrr"]),                                 // IA32_MTRR_DEF_TYPE: 01H:EDX[12]
        e(0x400, 0x47F, ["mca"]),                           // IA32_MC0_CTL … MC31_MISC: 01H:EDX[14]
        e(0x6A0, 0x6A8, ["shstk", "ibt"]),                  // IA32_U_CET … IA32_INTERRUPT_SSP_TABLE_ADDR: 07H:ECX[7], EDX[20]
        e(0x6E0, ["tsc_deadline_timer"]),                   // IA32_TSC_DEADLINE: 01H:ECX[24]
        e(0x6E1, ["pks"]),                                  // IA32_PKRS: 07H:ECX[31]
        e(0xD90, ["mpx"]),                                  // IA32_BNDCFGS: 07H:EBX[14]
        e(0xDA0, ["xsaves"]),                               // IA32_XSS: (EAX=0DH,ECX=1):EAX[3]
        e(0xE1, ["waitpkg"]),                               // IA32_UMWAIT_CONTROL: 07H:ECX[5]
        e(0xC000_0081, 0xC000_0084, ["syscall"]),           // STAR, LSTAR, CSTAR, FMASK: 80000001H:EDX[11]
        e(0xC000_0100, 0xC000_0102, ["lm"]),                // FS_BASE, GS_BASE, KERNEL_GS_BASE: 80000001H:EDX[29]
        e(0xC000_0103, ["rdtscp", "rdpid"]),                // IA32_TSC_AUX: 80000001H:EDX[27] or 07H:ECX[22]
    ].sorted { $0.first < $1.first }

    /// `rules` with every rule for an MSR whose feature `features` lacks
    /// turned into `deny` (the guest gets #GP); the rest unchanged. A rule
    /// that covers such an MSR and others is split around it.
    public static func agreeing(_ rules: [MSRRule], features: Set<String>) -> [MSRRule] {
        let absent = all.filter { entry in !entry.anyOf.contains(where: features.contains) }
        guard !absent.isEmpty else { return rules }
        var result: [MSRRule] = []
        for rule in rules {
            var pieces = [rule]
            for entry in absent where entry.first <= rule.last && rule.first <= entry.last {
                pieces = pieces.flatMap { piece -> [MSRRule] in
                    guard entry.first <= piece.last && piece.first <= entry.last, !isDeny(piece) else { return [piece] }
                    var parts: [MSRRule] = []
                    if piece.first < entry.first { parts.append(with(piece, piece.first, entry.first - 1)) }
                    var denied = with(piece, max(piece.first, entry.first), min(piece.last, entry.last))
                    denied.action = .deny
                    denied.origin = "CPU model lacks \(entry.anyOf.joined(separator: "/")) (\(piece.origin ?? "model rule"))"
                    parts.append(denied)
                    if piece.last > entry.last { parts.append(with(piece, entry.last + 1, piece.last)) }
                    return parts
                }
            }
            result += pieces
        }
        return result
    }

    private static func isDeny(_ rule: MSRRule) -> Bool {
        if case .deny = rule.action { return true }
        return false
    }

    private static func with(_ rule: MSRRule, _ first: UInt32, _ last: UInt32) -> MSRRule {
        var piece = rule
        piece.first = first
        piece.last = last
        return piece
    }

    private static func e(_ index: UInt32, _ anyOf: [String]) -> Entry { Entry(first: index, last: index, anyOf: anyOf) }
    private static func e(_ first: UInt32, _ last: UInt32, _ anyOf: [String]) -> Entry { Entry(first: first, last: last, anyOf: anyOf) }
}
