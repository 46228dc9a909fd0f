// CPUModel: the built-in CPU models as data — the psABI levels x86-64-v2/
// v3/v4 and QEMU's qemu64 (vendor-neutral: they take the host's vendor and
// family/model/stepping, as QEMU does under KVM), and the three CPUs whose
// MSRs MSRPolicy's profiles model (intel-skylake-server,
// intel-icelake-client, amd-zen3), each with the source of its values.
//
// Left out of every model, on purpose, the way QEMU's named models leave
// them out: nested virtualisation (vmx, svm), MONITOR/MWAIT, TSX (hle,
// rtm: disabled by microcode on most of these parts), MPX (removed from
// Linux and the compilers), Intel PT, the invariant TSC (it blocks
// migration; add it with +invtsc) and counters KVM never passes through
// (irperf, rdpru). Each is a `+feature` away where the host can give it.

/// A built-in model: what it fixes; nil fields are taken from the host.
public struct CPUModelDefinition: Sendable, Hashable {
    public var name: String
    public var summary: String
    /// "GenuineIntel" / "AuthenticAMD"; nil: the host's vendor.
    public var vendor: String?
    /// nil: the host's family/model/stepping.
    public var family: Int?
    public var model: Int?
    public var stepping: Int?
    /// nil: the host's brand string.
    public var brand: String?
    /// Linux names, sorted.
    public var features: [String]
    /// The MSRPolicy profile of the same CPU.
    public var profileName: String?
    /// Highest basic and extended leaf of the real part (the host's, if lower, wins).
    public var maxBasicLeaf: UInt32?
    public var maxExtendedLeaf: UInt32?
    /// Physical and linear address bits of the real part (leaf 0x80000008 EAX; min with the host's).
    public var physicalAddressBits: Int?
    public var linearAddressBits: Int?
    /// Where the values come from.
    public var source: String

    public init(name: String, summary: String, vendor: String? = nil, family: Int? = nil, model: Int? = nil,
                stepping: Int? = nil, brand: String? = nil, features: [String], profileName: String? = nil,
                maxBasicLeaf: UInt32? = nil, maxExtendedLeaf: UInt32? = nil, physicalAddressBits: Int? = nil,
                linearAddressBits: Int? = nil, source: String) {
        self.name = name; self.summary = summary; self.vendor = vendor
        self.family = family; self.model = model; self.stepping = stepping; self.brand = brand
        self.features = Set(features).sorted(); self.profileName = profileName
        self.maxBasicLeaf = maxBasicLeaf; self.maxExtendedLeaf = maxExtendedLeaf
        self.physicalAddressBits = physicalAddressBits; self.linearAddressBits = linearAddressBits
        self.source = source
    }
}

enum BuiltInModels {
    /// What every 64-bit model has: the architectural leaf-1 EDX bits a PC
    /// guest expects (the psABI baseline CMOV, CX8, FPU, FXSR, MMX, SSE,
    /// SSE2 and SYSCALL, plus paging, APIC, MSR, TSC, MTRR, PAT, MCA), LM and NX.
    static let x86_64Base = ["apic", "clflush", "cmov", "cx8", "de", "fpu", "fxsr", "lm", "mca", "mce", "mmx", "msr",
                             "mtrr", "nx", "pae", "pat", "pge", "pse", "pse36", "sep", "sse", "sse2", "syscall", "tsc"]
    /// psABI x86-64-v2: CMPXCHG16B, LAHF-SAHF, POPCNT, SSE3, SSE4.1, SSE4.2, SSSE3.
    static let v2Additions = ["cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"]
    /// psABI x86-64-v3: AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE, XSAVE (OSXSAVE follows CR4).
    static let v3Additions = ["abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"]
    /// psABI x86-64-v4: AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL.
    static let v4Additions = ["avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"]

    static let psABI = "System V AMD64 psABI, \"Micro-architecture levels\" (x86-64-psABI 1.0, section 3.1.1)"

    /// Intel features shared by the Skylake-SP and Ice Lake client models (both are Skylake-derived cores).
    static let intelSkylakeCommon = [
        "abm", "adx", "aes", "arat", "avx", "avx2", "avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl", "bmi1",
        "bmi2", "clflushopt", "cx16", "erms", "f16c", "fma", "fsgsbase", "invpcid", "lahf_lm", "md_clear", "movbe",
        "pcid", "pclmulqdq", "pdpe1gb", "pku", "pni", "popcnt", "rdrand", "rdseed", "rdtscp", "smap", "smep",
        "spec_ctrl", "sse4_1", "sse4_2", "ssbd", "ssse3", "stibp", "tsc_adjust", "tsc_deadline_timer", "vme",
        "x2apic", "xgetbv1", "xsave", "xsavec", "xsaveopt", "xsaves", "3dnowprefetch",
    ]

    static let all: [CPUModelDefinition] = [
        CPUModelDefinition(
            name: "amd-zen3",
            summary: "AMD EPYC 7003 (Zen 3, Milan), family 19h model 01h: the CPU of the amd-zen3 MSR profile",
            vendor: "AuthenticAMD", family: 0x19, model: 0x01, stepping: 1,
            brand: "AMD EPYC 7713 64-Core Processor",
            features: x86_64Base + [
                "abm", "adx", "aes", "arat", "avx", "avx2", "bmi1", "bmi2", "clflushopt", "clwb", "clzero", "cr8_legacy",
                "cx16", "erms", "f16c", "fma", "fsgsbase", "fsrm", "fxsr_opt", "ibpb", "amd_ibrs", "amd_ssbd",
                "amd_stibp", "invpcid", "lahf_lm", "misalignsse", "mmxext", "movbe", "osvw", "pcid", "pclmulqdq",
                "pdpe1gb", "perfctr_core", "pku", "pni", "popcnt", "rdpid", "rdrand", "rdseed", "rdtscp", "sha_ni", "smap", "smep",
                "sse4_1", "sse4_2", "sse4a", "ssse3", "topoext", "tsc_deadline_timer", "umip", "vaes", "vme",
                "vpclmulqdq", "wbnoinvd", "x2apic", "xgetbv1", "xsave", "xsavec", "xsaveerptr", "xsaveopt", "xsaves",
                "3dnowprefetch",
            ],
            profileName: "amd-zen3", maxBasicLeaf: 0x10, maxExtendedLeaf: 0x8000_0023,
            physicalAddressBits: 48, linearAddressBits: 48,
            source: "AMD PPR for Family 19h Model 01h (pub. 55898), CPUID Fn0000_0001/0000_0007/8000_0001/8000_0008; "
                + "cross-checked with QEMU target/i386/cpu.c EPYC-Milan and an EPYC 7713 /proc/cpuinfo"),
        CPUModelDefinition(
            name: "intel-icelake-client",
            summary: "Intel Core i7-1065G7 (Ice Lake client), family 6 model 7Eh: the CPU of the intel-icelake-client MSR profile",
            vendor: "GenuineIntel", family: 6, model: 0x7E, stepping: 5,
            brand: "Intel(R) Core(TM) i7-1065G7 CPU @ 1.30GHz",
            features: x86_64Base + intelSkylakeCommon + [
                "arch_capabilities", "avx512_bitalg", "avx512_vbmi2", "avx512_vnni", "avx512_vpopcntdq", "avx512ifma",
                "avx512vbmi", "flush_l1d", "fsrm", "gfni", "rdpid", "sha_ni", "umip", "vaes", "vpclmulqdq",
            ],
            profileName: "intel-icelake-client", maxBasicLeaf: 0x1B, maxExtendedLeaf: 0x8000_0008,
            physicalAddressBits: 39, linearAddressBits: 48,
            source: "Intel SDM Vol. 2A CPUID and Vol. 4 Table 2-1 (06_7EH = Ice Lake client); Intel ARK i7-1065G7; "
                + "cross-checked with QEMU target/i386/cpu.c Icelake-Client and an i7-1065G7 /proc/cpuinfo"),
        CPUModelDefinition(
            name: "intel-skylake-server",
            summary: "Intel Xeon Gold 6148 (Skylake-SP), family 6 model 55h stepping 4: the CPU of the intel-skylake-server MSR profile",
            vendor: "GenuineIntel", family: 6, model: 0x55, stepping: 4,
            brand: "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
            features: x86_64Base + intelSkylakeCommon + ["clwb"],
            profileName: "intel-skylake-server", maxBasicLeaf: 0x16, maxExtendedLeaf: 0x8000_0008,
            physicalAddressBits: 46, linearAddressBits: 48,
            source: "Intel SDM Vol. 2A CPUID and Vol. 4 Table 2-1 (06_55H = Xeon Scalable); Intel ARK Xeon Gold 6148; "
                + "cross-checked with QEMU target/i386/cpu.c Skylake-Server (its -noTSX variant) and a Gold 6148 /proc/cpuinfo"),
        CPUModelDefinition(
            name: "qemu64",
            summary: "QEMU's default 64-bit model (family 15 model 107, \"QEMU Virtual CPU version 2.5+\"), vendor-neutral",
            family: 15, model: 107, stepping: 1, brand: "QEMU Virtual CPU version 2.5+",
            features: x86_64Base + ["cx16", "lahf_lm", "pni"],
            maxBasicLeaf: 0xD, maxExtendedLeaf: 0x8000_0008, physicalAddressBits: 40, linearAddressBits: 48,
            source: "QEMU target/i386/cpu.c, qemu64 (PPRO_FEATURES + CLFLUSH, PSE36, SSE3, CX16, LM, SYSCALL, NX, LAHF_LM; "
                + "its SVM bit left out like every model's nested virtualisation)"),
        CPUModelDefinition(
            name: "x86-64-v2", summary: "psABI x86-64-v2 (Nehalem-class ISA) on the host's vendor and family/model/stepping",
            features: x86_64Base + v2Additions, source: psABI),
        CPUModelDefinition(
            name: "x86-64-v3", summary: "psABI x86-64-v3 (Haswell-class ISA: AVX2, BMI, FMA) on the host's vendor and family/model/stepping",
            features: x86_64Base + v2Additions + v3Additions, source: psABI),
        CPUModelDefinition(
            name: "x86-64-v4", summary: "psABI x86-64-v4 (AVX-512 F/BW/CD/DQ/VL) on the host's vendor and family/model/stepping",
            features: x86_64Base + v2Additions + v3Additions + v4Additions, source: psABI),
    ]
}
