// KVM: which MSRs a vCPU snapshot saves: KVM_GET_MSR_INDEX_LIST, filtered to
// what the guest's CPUID makes meaningful, plus the MTRRs (the index list
// omits them; cloud-hypervisor adds them the same way).
//
// The rules (each drops MSRs the guest cannot use with the CPUID it was
// given; Firecracker's msr.rs keeps an allow-list instead, cloud-hypervisor
// keeps everything). A dropped MSR is returned with its reason, never lost:
//  - architectural PMU (Intel, CPUID 0xA): no PMU MSR when the version is 0;
//    general counters/event selects (0xC1+, 0x186+, 0x4C1+) only up to
//    EAX[15:8]; fixed counters (0x309+) only up to EDX[4:0];
//  - vendor ranges: 0xC001_0000–0xC001_FFFF is AMD's model-specific space,
//    dropped for a GenuineIntel guest; VMX capability MSRs (0x480–0x491) only
//    with CPUID.1:ECX.VMX;
//  - paravirtual: KVM's MSRs (0x11, 0x12, 0x4B56_4D00–0x4B56_4DFF) only with
//    the "KVMKVMKVM" leaf 0x40000000; Hyper-V's (0x4000_0000–0x4000_0FFF)
//    only with the "Microsoft Hv" leaf;
//  - single features: TSC_DEADLINE (CPUID.1:ECX[24]), TSC_ADJUST (7:EBX[1]),
//    TSC_AUX (RDTSCP or RDPID), XSS (0xD.1:EAX[3]), XFD (0xD.1:EAX[4]),
//    UMWAIT_CONTROL (7:ECX[5]), CET (7:ECX[7] or 7:EDX[20]), PKRS
//    (7:ECX[31]), BNDCFGS (7:EBX[14]), Intel PT (7:EBX[25]), arch LBR
//    (7:EDX[19]).
// An MSR these rules keep but KVM still refuses on this host is recorded by
// the capture (VCPUSnapshot.refusedMSRs), not dropped here.

/// The MSR selection rules of a snapshot; pure, testable without KVM.
public enum SaveableMSRs {
    /// MTRRs: MTRRcap, MTRRdefType, the 8 variable pairs, the 11 fixed ones.
    public static let mtrrs: [UInt32] = [0xFE, 0x2FF] + Array(0x200...0x20F)
        + [0x250, 0x258, 0x259] + Array(0x268...0x26F)

    /// Saved but never written back: KVM refuses host writes to MTRRcap
    /// (0xFE); a restore checks that the target reads the same value instead.
    public static let readOnly: Set<UInt32> = [0xFE]

    public static let tsc: UInt32 = 0x10
    public static let tscDeadline: UInt32 = 0x6E0

    /// `indexList` (KVM_GET_MSR_INDEX_LIST) filtered by `cpuid`, plus the
    /// MTRRs, in index order; the dropped ones with the rule that dropped them.
    public static func select(indexList: [UInt32], cpuid: [CPUIDEntry]) -> (kept: [UInt32], dropped: [(index: UInt32, reason: String)]) {
        let features = GuestFeatures(cpuid)
        var kept: [UInt32] = []
        var dropped: [(index: UInt32, reason: String)] = []
        for index in Set(indexList + mtrrs).sorted() {
            if let reason = features.reasonToDrop(index) {
                dropped.append((index, reason))
            } else {
                kept.append(index)
            }
        }
        return (kept, dropped)
    }

    /// Restore order: IA32_TSC_DEADLINE after IA32_TSC (KVM computes the
    /// deadline against the TSC; the other order leaves the timer stuck).
    public static func restoreOrder(_ indices: [UInt32]) -> [UInt32] {
        indices.filter { $0 != tscDeadline } + indices.filter { $0 == tscDeadline }
    }
}

/// The parts of a CPUID table the rules above read.
struct GuestFeatures {
    let cpuid: [CPUIDEntry]

    init(_ cpuid: [CPUIDEntry]) { self.cpuid = cpuid }

    func leaf(_ function: UInt32, _ index: UInt32 = 0) -> CPUIDEntry? {
        cpuid.first { $0.function == function && ($0.index == index || $0.flags & CPUIDEntry.significantIndex == 0) }
    }

    func bit(_ function: UInt32, _ index: UInt32 = 0, _ register: KeyPath<CPUIDEntry, UInt32>, _ bit: UInt32) -> Bool {
        guard let entry = leaf(function, index) else { return false }
        return entry[keyPath: register] & (1 << bit) != 0
    }

    /// The 12-byte vendor or hypervisor signature in EBX, ECX, EDX (leaf 0)
    /// or EBX, ECX, EDX (leaf 0x40000000 has the same register order).
    func signature(_ function: UInt32, order: [KeyPath<CPUIDEntry, UInt32>]) -> String {
        guard let entry = leaf(function) else { return "" }
        let bytes = order.flatMap { path in (0..<4).map { UInt8(truncatingIfNeeded: entry[keyPath: path] >> (8 * $0)) } }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    var isIntel: Bool { signature(0, order: [\.ebx, \.edx, \.ecx]) == "GenuineIntel" }
    var hypervisor: String { signature(0x4000_0000, order: [\.ebx, \.ecx, \.edx]) }

    /// Architectural PMU: (version, general counters, fixed counters).
    var pmu: (version: UInt32, general: UInt32, fixed: UInt32) {
        guard let a = leaf(0xA) else { return (0, 0, 0) }
        return (a.eax & 0xFF, (a.eax >> 8) & 0xFF, a.edx & 0x1F)
    }

    func reasonToDrop(_ index: UInt32) -> String? {
        let pmu = self.pmu
        func counter(_ base: UInt32, _ count: UInt32, _ span: UInt32) -> String? {
            guard index >= base, index < base + span else { return nil }
            if pmu.version == 0 { return "no architectural PMU (CPUID 0xA version 0)" }
            return index - base >= count ? "PMU counter beyond the \(count) CPUID 0xA advertises" : nil
        }
        for (base, count, span) in [(UInt32(0xC1), pmu.general, UInt32(8)), (0x186, pmu.general, 8),
                                    (0x4C1, pmu.general, 8), (0x309, pmu.fixed, 4)] {
            if let reason = counter(base, count, span) { return reason }
        }
        if (0x38D...0x390).contains(index), pmu.version == 0 {   // fixed control, global status/control/overflow
            return "no architectural PMU (CPUID 0xA version 0)"
        }
        if (0xC001_0000...0xC001_FFFF).contains(index), isIntel { return "AMD-only MSR on a GenuineIntel guest" }
        if (0x480...0x491).contains(index), !bit(1, 0, \.ecx, 5) { return "VMX capability MSR without CPUID.1:ECX.VMX" }
        if index == 0x11 || index == 0x12 || (0x4B56_4D00...0x4B56_4DFF).contains(index), hypervisor != "KVMKVMKVM" {
            return "KVM paravirtual MSR without the KVM CPUID leaf"
        }
        if (0x4000_0000...0x4000_0FFF).contains(index), hypervisor != "Microsoft Hv" {
            return "Hyper-V MSR without the Hyper-V CPUID leaf"
        }
        let single: [(UInt32, Bool, String)] = [
            (0x6E0, bit(1, 0, \.ecx, 24), "TSC_DEADLINE without CPUID.1:ECX[24]"),
            (0x3B, bit(7, 0, \.ebx, 1), "TSC_ADJUST without CPUID.7:EBX[1]"),
            (0xC000_0103, bit(0x8000_0001, 0, \.edx, 27) || bit(7, 0, \.ecx, 22), "TSC_AUX without RDTSCP or RDPID"),
            (0xDA0, bit(0xD, 1, \.eax, 3), "XSS without XSAVES"),
            (0x1C4, bit(0xD, 1, \.eax, 4), "XFD without CPUID.0xD.1:EAX[4]"),
            (0x1C5, bit(0xD, 1, \.eax, 4), "XFD_ERR without CPUID.0xD.1:EAX[4]"),
            (0xE1, bit(7, 0, \.ecx, 5), "UMWAIT_CONTROL without WAITPKG"),
            (0x6E1, bit(7, 0, \.ecx, 31), "PKRS without CPUID.7:ECX[31]"),
            (0xD90, bit(7, 0, \.ebx, 14), "BNDCFGS without MPX"),
            (0x14CE, bit(7, 0, \.edx, 19), "arch LBR without CPUID.7:EDX[19]"),
            (0x14CF, bit(7, 0, \.edx, 19), "arch LBR without CPUID.7:EDX[19]"),
        ]
        for (msr, present, reason) in single where msr == index && !present { return reason }
        if (0x6A0...0x6A8).contains(index), !(bit(7, 0, \.ecx, 7) || bit(7, 0, \.edx, 20)) {
            return "CET MSR without shadow stacks or IBT"
        }
        if index == 0x560 || index == 0x561 || (0x570...0x572).contains(index) || (0x580...0x58F).contains(index),
           !bit(7, 0, \.ebx, 25) {
            return "Intel PT MSR without CPUID.7:EBX[25]"
        }
        return nil
    }
}

extension KVMSystem {
    /// KVM_GET_MSR_INDEX_LIST filtered by the guest's CPUID, plus the MTRRs
    /// (see `SaveableMSRs` for the rules).
    public func saveableMSRs(cpuid: [CPUIDEntry]) throws(KVMError) -> [UInt32] {
        SaveableMSRs.select(indexList: try msrIndexList(), cpuid: cpuid).kept
    }
}

/// `saveableMSRs(system:cpuid:)`: the same as `KVMSystem.saveableMSRs(cpuid:)`.
public func saveableMSRs(system: KVMSystem, cpuid: [CPUIDEntry]) throws(KVMError) -> [UInt32] {
    try system.saveableMSRs(cpuid: cpuid)
}
