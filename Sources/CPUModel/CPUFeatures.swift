// CPUModel: the CPUID features Deflect knows by name — where each lives
// (leaf, sub-leaf, register, bit), what it requires — and the names QEMU
// uses for them. Names are Linux's /proc/cpuinfo flags (arch/x86/include/
// asm/cpufeatures.h); where Linux hides a CPUID bit or only shows a
// synthetic flag, QEMU's name is used (spec_ctrl, stibp, ssbd, invtsc).
// Requirements follow the kernel's arch/x86/kernel/cpu/cpuid-deps.c and
// the SDM/APM's "this instruction needs" notes; `avx512f` requires `avx2`
// (not just `avx`) so that every AVX-512 model is also an x86-64-v3 one.
//
// Bits this table does not name are either owned by someone else (the
// hypervisor bit, OSXSAVE/OSPKE which follow CR4, HTT which the VMM sets
// with the topology) or unknown: a built-in model clears unknown bits of
// the registers it names and keeps only the host-owned ones
// (`CPUFeatures.hostOwnedBits`).

/// A feature by its Linux /proc/cpuinfo flag name, where it lives in CPUID, and what it needs.
public struct CPUFeature: Sendable, Hashable {
    public var name: String
    public var function: UInt32
    public var index: UInt32
    public var register: CPUIDRegister
    public var bit: Int
    /// Names of the features this one needs (each in `CPUFeatures.all`).
    public var requires: [String]

    public init(name: String, function: UInt32, index: UInt32, register: CPUIDRegister, bit: Int, requires: [String]) {
        self.name = name; self.function = function; self.index = index
        self.register = register; self.bit = bit; self.requires = requires
    }

    var mask: UInt32 { 1 << UInt32(bit) }
}

public enum CPUFeatures {
    private static func f(_ name: String, _ function: UInt32, _ index: UInt32, _ register: CPUIDRegister, _ bit: Int,
                          _ requires: [String] = []) -> CPUFeature {
        CPUFeature(name: name, function: function, index: index, register: register, bit: bit, requires: requires)
    }

    /// Sorted by leaf, sub-leaf, register, bit; one comment per entry (SDM Vol. 2A "CPUID", AMD APM Vol. 3 App. E).
    public static let all: [CPUFeature] = [
        // Leaf 1 ECX
        f("pni", 1, 0, .ecx, 0, ["sse2"]),              // SSE3 (Linux calls it pni)
        f("pclmulqdq", 1, 0, .ecx, 1, ["sse2"]),        // carry-less multiply
        f("monitor", 1, 0, .ecx, 3),                    // MONITOR/MWAIT
        f("vmx", 1, 0, .ecx, 5),                        // VMX (nested virtualisation)
        f("ssse3", 1, 0, .ecx, 9, ["sse2"]),            // supplemental SSE3
        f("fma", 1, 0, .ecx, 12, ["avx"]),              // FMA3, VEX-encoded
        f("cx16", 1, 0, .ecx, 13),                      // CMPXCHG16B
        f("pdcm", 1, 0, .ecx, 15),                      // IA32_PERF_CAPABILITIES
        f("pcid", 1, 0, .ecx, 17, ["lm"]),              // process-context ids (CR4.PCIDE needs long mode)
        f("sse4_1", 1, 0, .ecx, 19, ["sse2"]),          // SSE4.1
        f("sse4_2", 1, 0, .ecx, 20, ["sse2"]),          // SSE4.2
        f("x2apic", 1, 0, .ecx, 21, ["apic"]),          // x2APIC mode
        f("movbe", 1, 0, .ecx, 22),                     // MOVBE
        f("popcnt", 1, 0, .ecx, 23),                    // POPCNT
        f("tsc_deadline_timer", 1, 0, .ecx, 24, ["apic"]), // LAPIC TSC-deadline mode
        f("aes", 1, 0, .ecx, 25, ["sse2"]),             // AES-NI
        f("xsave", 1, 0, .ecx, 26, ["fxsr"]),           // XSAVE/XRSTOR, XCR0
        f("avx", 1, 0, .ecx, 28, ["xsave"]),            // AVX (YMM state is XSAVE component 2)
        f("f16c", 1, 0, .ecx, 29, ["avx"]),             // half-precision convert, VEX-encoded
        f("rdrand", 1, 0, .ecx, 30),                    // RDRAND
        // Leaf 1 EDX
        f("fpu", 1, 0, .edx, 0),                        // x87
        f("vme", 1, 0, .edx, 1),                        // virtual-8086 extensions
        f("de", 1, 0, .edx, 2),                         // debugging extensions
        f("pse", 1, 0, .edx, 3),                        // 4 MiB pages
        f("tsc", 1, 0, .edx, 4),                        // RDTSC
        f("msr", 1, 0, .edx, 5),                        // RDMSR/WRMSR
        f("pae", 1, 0, .edx, 6),                        // PAE
        f("mce", 1, 0, .edx, 7),                        // machine-check exception
        f("cx8", 1, 0, .edx, 8),                        // CMPXCHG8B
        f("apic", 1, 0, .edx, 9),                       // local APIC
        f("sep", 1, 0, .edx, 11),                       // SYSENTER/SYSEXIT
        f("mtrr", 1, 0, .edx, 12),                      // MTRRs
        f("pge", 1, 0, .edx, 13),                       // global pages
        f("mca", 1, 0, .edx, 14),                       // machine-check architecture
        f("cmov", 1, 0, .edx, 15),                      // CMOVcc
        f("pat", 1, 0, .edx, 16),                       // page attribute table
        f("pse36", 1, 0, .edx, 17),                     // 36-bit PSE
        f("clflush", 1, 0, .edx, 19),                   // CLFLUSH
        f("mmx", 1, 0, .edx, 23, ["fxsr"]),             // MMX (cpuid-deps: MMX needs FXSR)
        f("fxsr", 1, 0, .edx, 24, ["fpu"]),             // FXSAVE/FXRSTOR
        f("sse", 1, 0, .edx, 25, ["fxsr"]),             // SSE
        f("sse2", 1, 0, .edx, 26, ["sse"]),             // SSE2
        // Leaf 6 EAX
        f("arat", 6, 0, .eax, 2),                       // APIC timer always running
        // Leaf 7 sub-leaf 0 EBX
        f("fsgsbase", 7, 0, .ebx, 0, ["lm"]),           // RD/WR FS/GS BASE
        f("tsc_adjust", 7, 0, .ebx, 1, ["tsc"]),        // IA32_TSC_ADJUST
        f("bmi1", 7, 0, .ebx, 3),                       // BMI1 (ANDN, BEXTR, ...)
        f("hle", 7, 0, .ebx, 4),                        // TSX hardware lock elision
        f("avx2", 7, 0, .ebx, 5, ["avx"]),              // AVX2
        f("smep", 7, 0, .ebx, 7),                       // supervisor-mode execution prevention
        f("bmi2", 7, 0, .ebx, 8),                       // BMI2
        f("erms", 7, 0, .ebx, 9),                       // enhanced REP MOVSB/STOSB
        f("invpcid", 7, 0, .ebx, 10, ["pcid"]),         // INVPCID
        f("rtm", 7, 0, .ebx, 11),                       // TSX restricted transactional memory
        f("mpx", 7, 0, .ebx, 14, ["xsave"]),            // MPX (XSAVE components 3, 4)
        f("avx512f", 7, 0, .ebx, 16, ["avx2"]),         // AVX-512 foundation (XSAVE components 5-7)
        f("avx512dq", 7, 0, .ebx, 17, ["avx512f"]),     // AVX-512 DQ
        f("rdseed", 7, 0, .ebx, 18),                    // RDSEED
        f("adx", 7, 0, .ebx, 19),                       // ADCX/ADOX
        f("smap", 7, 0, .ebx, 20),                      // supervisor-mode access prevention
        f("avx512ifma", 7, 0, .ebx, 21, ["avx512f"]),   // AVX-512 IFMA
        f("clflushopt", 7, 0, .ebx, 23),                // CLFLUSHOPT
        f("clwb", 7, 0, .ebx, 24),                      // CLWB
        f("intel_pt", 7, 0, .ebx, 25),                  // processor trace (leaf 0x14)
        f("avx512pf", 7, 0, .ebx, 26, ["avx512f"]),     // AVX-512 prefetch (Xeon Phi)
        f("avx512er", 7, 0, .ebx, 27, ["avx512f"]),     // AVX-512 exponential/reciprocal (Xeon Phi)
        f("avx512cd", 7, 0, .ebx, 28, ["avx512f"]),     // AVX-512 conflict detection
        f("sha_ni", 7, 0, .ebx, 29, ["sse2"]),          // SHA extensions
        f("avx512bw", 7, 0, .ebx, 30, ["avx512f"]),     // AVX-512 byte/word
        f("avx512vl", 7, 0, .ebx, 31, ["avx512f"]),     // AVX-512 vector length
        // Leaf 7 sub-leaf 0 ECX
        f("avx512vbmi", 7, 0, .ecx, 1, ["avx512bw"]),   // AVX-512 VBMI
        f("umip", 7, 0, .ecx, 2),                       // user-mode instruction prevention
        f("pku", 7, 0, .ecx, 3, ["xsave"]),             // protection keys (XSAVE component 9)
        f("waitpkg", 7, 0, .ecx, 5),                    // UMONITOR/UMWAIT/TPAUSE
        f("avx512_vbmi2", 7, 0, .ecx, 6, ["avx512vl"]), // AVX-512 VBMI2
        f("shstk", 7, 0, .ecx, 7, ["xsaves"]),          // CET shadow stacks (XSS components 11, 12)
        f("gfni", 7, 0, .ecx, 8, ["sse2"]),             // Galois-field instructions
        f("vaes", 7, 0, .ecx, 9, ["avx", "aes"]),       // VEX/EVEX AES
        f("vpclmulqdq", 7, 0, .ecx, 10, ["avx", "pclmulqdq"]), // VEX/EVEX carry-less multiply
        f("avx512_vnni", 7, 0, .ecx, 11, ["avx512vl"]), // AVX-512 VNNI
        f("avx512_bitalg", 7, 0, .ecx, 12, ["avx512vl"]), // AVX-512 BITALG
        f("avx512_vpopcntdq", 7, 0, .ecx, 14, ["avx512f"]), // AVX-512 VPOPCNTD/Q
        f("la57", 7, 0, .ecx, 16, ["lm"]),              // 5-level paging
        f("rdpid", 7, 0, .ecx, 22),                     // RDPID
        f("bus_lock_detect", 7, 0, .ecx, 24),           // bus-lock debug exception
        f("cldemote", 7, 0, .ecx, 25),                  // CLDEMOTE
        f("movdiri", 7, 0, .ecx, 27),                   // MOVDIRI
        f("movdir64b", 7, 0, .ecx, 28),                 // MOVDIR64B
        f("enqcmd", 7, 0, .ecx, 29),                    // ENQCMD
        f("pks", 7, 0, .ecx, 31),                       // supervisor protection keys
        // Leaf 7 sub-leaf 0 EDX
        f("avx512_4vnniw", 7, 0, .edx, 2, ["avx512f"]), // AVX-512 4VNNIW (Xeon Phi)
        f("avx512_4fmaps", 7, 0, .edx, 3, ["avx512f"]), // AVX-512 4FMAPS (Xeon Phi)
        f("fsrm", 7, 0, .edx, 4),                       // fast short REP MOV
        f("avx512_vp2intersect", 7, 0, .edx, 8, ["avx512vl"]), // AVX-512 VP2INTERSECT
        f("md_clear", 7, 0, .edx, 10),                  // VERW clears CPU buffers
        f("serialize", 7, 0, .edx, 14),                 // SERIALIZE
        f("tsxldtrk", 7, 0, .edx, 16),                  // TSX suspend load tracking
        f("arch_lbr", 7, 0, .edx, 19),                  // architectural LBRs
        f("ibt", 7, 0, .edx, 20, ["xsaves"]),           // CET indirect-branch tracking
        f("amx_bf16", 7, 0, .edx, 22, ["amx_tile"]),    // AMX BF16
        f("avx512_fp16", 7, 0, .edx, 23, ["avx512bw"]), // AVX-512 FP16
        f("amx_tile", 7, 0, .edx, 24, ["xfd"]),         // AMX tiles (XSAVE components 17, 18)
        f("amx_int8", 7, 0, .edx, 25, ["amx_tile"]),    // AMX INT8
        f("spec_ctrl", 7, 0, .edx, 26),                 // IBRS/IBPB, IA32_SPEC_CTRL (QEMU: spec-ctrl)
        f("stibp", 7, 0, .edx, 27),                     // single-thread indirect branch predictors (KVM reports it apart from spec_ctrl)
        f("flush_l1d", 7, 0, .edx, 28),                 // IA32_FLUSH_CMD
        f("arch_capabilities", 7, 0, .edx, 29),         // IA32_ARCH_CAPABILITIES
        f("core_capabilities", 7, 0, .edx, 30),         // IA32_CORE_CAPABILITIES
        f("ssbd", 7, 0, .edx, 31),                      // speculative store bypass disable (KVM reports it apart from spec_ctrl)
        // Leaf 7 sub-leaf 1 EAX
        f("avx_vnni", 7, 1, .eax, 4, ["avx2"]),         // VEX-encoded VNNI
        f("avx512_bf16", 7, 1, .eax, 5, ["avx512vl"]),  // AVX-512 BF16
        f("fzrm", 7, 1, .eax, 10),                      // fast zero-length REP MOVSB
        f("fsrs", 7, 1, .eax, 11),                      // fast short REP STOSB
        f("fsrc", 7, 1, .eax, 12),                      // fast short REP CMPSB/SCASB
        f("amx_fp16", 7, 1, .eax, 21, ["amx_tile"]),    // AMX FP16
        f("avx_ifma", 7, 1, .eax, 23, ["avx2"]),        // VEX-encoded IFMA
        f("lam", 7, 1, .eax, 26, ["lm"]),               // linear-address masking
        // Leaf 0xD sub-leaf 1 EAX
        f("xsaveopt", 0xD, 1, .eax, 0, ["xsave"]),      // XSAVEOPT
        f("xsavec", 0xD, 1, .eax, 1, ["xsave"]),        // XSAVEC (compacted format)
        f("xgetbv1", 0xD, 1, .eax, 2, ["xsave"]),       // XGETBV with ECX = 1
        f("xsaves", 0xD, 1, .eax, 3, ["xsave"]),        // XSAVES/XRSTORS, IA32_XSS
        f("xfd", 0xD, 1, .eax, 4, ["xsave"]),           // extended feature disable
        // Leaf 0x80000001 ECX
        f("lahf_lm", 0x8000_0001, 0, .ecx, 0),          // LAHF/SAHF in long mode
        f("cmp_legacy", 0x8000_0001, 0, .ecx, 1),       // AMD: HTT not valid (core multi-processing legacy)
        f("svm", 0x8000_0001, 0, .ecx, 2),              // AMD-V (nested virtualisation)
        f("extapic", 0x8000_0001, 0, .ecx, 3, ["apic"]), // AMD extended APIC space
        f("cr8_legacy", 0x8000_0001, 0, .ecx, 4),       // AMD: LOCK MOV CR0 is MOV CR8
        f("abm", 0x8000_0001, 0, .ecx, 5),              // LZCNT (Linux: abm)
        f("sse4a", 0x8000_0001, 0, .ecx, 6, ["sse2"]),  // AMD SSE4a
        f("misalignsse", 0x8000_0001, 0, .ecx, 7, ["sse"]), // AMD misaligned SSE mode
        f("3dnowprefetch", 0x8000_0001, 0, .ecx, 8),    // PREFETCHW
        f("osvw", 0x8000_0001, 0, .ecx, 9),             // AMD OS-visible workarounds
        f("ibs", 0x8000_0001, 0, .ecx, 10),             // AMD instruction-based sampling
        f("xop", 0x8000_0001, 0, .ecx, 11, ["avx"]),    // AMD XOP
        f("skinit", 0x8000_0001, 0, .ecx, 12),          // AMD SKINIT/STGI
        f("wdt", 0x8000_0001, 0, .ecx, 13),             // AMD watchdog timer
        f("lwp", 0x8000_0001, 0, .ecx, 15, ["xsave"]),  // AMD lightweight profiling
        f("fma4", 0x8000_0001, 0, .ecx, 16, ["avx"]),   // AMD FMA4
        f("tce", 0x8000_0001, 0, .ecx, 17),             // AMD translation-cache extension
        f("nodeid_msr", 0x8000_0001, 0, .ecx, 19),      // AMD NodeId MSR
        f("tbm", 0x8000_0001, 0, .ecx, 21),             // AMD trailing bit manipulation
        f("topoext", 0x8000_0001, 0, .ecx, 22),         // AMD topology extensions (0x8000001D/E)
        f("perfctr_core", 0x8000_0001, 0, .ecx, 23),    // AMD core performance counter extensions
        f("perfctr_nb", 0x8000_0001, 0, .ecx, 24),      // AMD NB performance counters
        f("perfctr_llc", 0x8000_0001, 0, .ecx, 28),     // AMD last-level-cache counters
        f("mwaitx", 0x8000_0001, 0, .ecx, 29),          // AMD MONITORX/MWAITX
        // Leaf 0x80000001 EDX (bits that mirror leaf 1 EDX on AMD follow leaf 1, see CPUModels)
        f("syscall", 0x8000_0001, 0, .edx, 11),         // SYSCALL/SYSRET
        f("nx", 0x8000_0001, 0, .edx, 20),              // no-execute pages
        f("mmxext", 0x8000_0001, 0, .edx, 22, ["mmx"]), // AMD MMX extensions
        f("fxsr_opt", 0x8000_0001, 0, .edx, 25, ["fxsr"]), // AMD FXSAVE optimisations
        f("pdpe1gb", 0x8000_0001, 0, .edx, 26, ["lm"]), // 1 GiB pages
        f("rdtscp", 0x8000_0001, 0, .edx, 27, ["tsc"]), // RDTSCP
        f("lm", 0x8000_0001, 0, .edx, 29, ["pae"]),     // long mode
        f("3dnowext", 0x8000_0001, 0, .edx, 30, ["3dnow"]), // AMD 3DNow! extensions
        f("3dnow", 0x8000_0001, 0, .edx, 31, ["mmx"]),  // AMD 3DNow!
        // Leaf 0x80000007 EDX
        f("invtsc", 0x8000_0007, 0, .edx, 8, ["tsc"]),  // invariant TSC (Linux: constant_tsc + nonstop_tsc)
        // Leaf 0x80000008 EBX
        f("clzero", 0x8000_0008, 0, .ebx, 0),           // AMD CLZERO
        f("irperf", 0x8000_0008, 0, .ebx, 1),           // AMD instructions-retired counter
        f("xsaveerptr", 0x8000_0008, 0, .ebx, 2, ["xsave"]), // AMD: XSAVE always saves FP error pointers
        f("rdpru", 0x8000_0008, 0, .ebx, 4),            // AMD RDPRU
        f("wbnoinvd", 0x8000_0008, 0, .ebx, 9),         // WBNOINVD
        f("ibpb", 0x8000_0008, 0, .ebx, 12),            // AMD IBPB
        f("amd_ibrs", 0x8000_0008, 0, .ebx, 14),        // AMD IBRS
        f("amd_stibp", 0x8000_0008, 0, .ebx, 15),       // AMD STIBP
        f("amd_ssbd", 0x8000_0008, 0, .ebx, 24),        // AMD SSBD through SPEC_CTRL
        f("virt_ssbd", 0x8000_0008, 0, .ebx, 25),       // AMD SSBD through VIRT_SPEC_CTRL
        f("amd_ssb_no", 0x8000_0008, 0, .ebx, 26),      // AMD: not affected by speculative store bypass
    ]

    private static let byName: [String: CPUFeature] = Dictionary(all.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })

    public static func named(_ name: String) -> CPUFeature? { byName[name] }

    /// Feature names set in `table` (by the leaves/bits above).
    public static func present(in table: [CPUIDLeaf]) -> Set<String> {
        Set(all.filter { feature in
            table.value(feature.function, feature.index, feature.register) & feature.mask != 0
        }.map(\.name))
    }

    /// Bits of named feature registers that a model keeps from the host
    /// because someone else owns them, by (leaf, sub-leaf, register); each
    /// with why. Every other bit this table does not name is cleared by a
    /// built-in model (unknown = not promised; a guest never sees a feature
    /// the model did not choose).
    static let hostOwnedBits: [FeatureRegister: UInt32] = [
        // Leaf 1 ECX: 27 OSXSAVE mirrors the guest's CR4.OSXSAVE (KVM updates it); 31 the hypervisor bit (the VMM's).
        FeatureRegister(1, 0, .ecx): 1 << 27 | 1 << 31,
        // Leaf 1 EDX: 28 HTT, set by the VMM with the topology.
        FeatureRegister(1, 0, .edx): 1 << 28,
        // Leaf 7.0 ECX: 4 OSPKE mirrors the guest's CR4.PKE (KVM updates it).
        FeatureRegister(7, 0, .ecx): 1 << 4,
    ]

    /// Bits people may name that no model sets, with who sets them instead.
    static let ownedElsewhere: [String: String] = [
        "ht": "leaf 1 EDX[28] (HTT) follows the VM's topology, which the VMM sets",
        "hypervisor": "leaf 1 ECX[31] is set by the VMM for every guest",
        "ospke": "7.0 ECX[4] follows the guest's CR4.PKE (KVM updates it)",
        "osxsave": "leaf 1 ECX[27] follows the guest's CR4.OSXSAVE (KVM updates it)",
    ]

    /// Every register that holds named features: the registers a model owns.
    static let featureRegisters: [FeatureRegister] = {
        var seen: [FeatureRegister] = []
        for feature in all {
            let register = FeatureRegister(feature.function, feature.index, feature.register)
            if !seen.contains(register) { seen.append(register) }
        }
        return seen
    }()

    /// Names that differ between QEMU (`-cpu X,+name`) or common usage and Linux's flag names,
    /// after lower-casing and turning '-' and '.' into '_'. Sorted by spelling.
    static let aliases: [String: String] = [
        "amd_no_ssb": "amd_ssb_no",                 // QEMU amd-no-ssb
        "avx512_vbmi": "avx512vbmi",                // underscore variant
        "avx512bitalg": "avx512_bitalg",            // QEMU avx512bitalg
        "avx512vbmi2": "avx512_vbmi2",              // QEMU avx512vbmi2
        "avx512vnni": "avx512_vnni",                // QEMU avx512vnni
        "avx512vpopcntdq": "avx512_vpopcntdq",      // without the separator
        "core_capability": "core_capabilities",     // QEMU core-capability
        "cr8legacy": "cr8_legacy",                  // QEMU cr8legacy
        "i64": "lm",                                // QEMU i64
        "ibrs": "amd_ibrs",                         // QEMU ibrs: 0x80000008 EBX[14] (Intel's IBRS is spec-ctrl)
        "intel_stibp": "stibp",                     // Linux's hidden name
        "lzcnt": "abm",                             // LZCNT is what the abm bit enumerates
        "pclmuldq": "pclmulqdq",                    // QEMU pclmuldq
        "sha": "sha_ni",                            // short form
        "spec_ctrl_ssbd": "ssbd",                   // Linux's hidden name
        "sse3": "pni",                              // SSE3 (Linux: pni)
        "sse41": "sse4_1",                          // without the separator
        "sse42": "sse4_2",                          // without the separator
        "tsc_deadline": "tsc_deadline_timer",       // QEMU tsc-deadline
        "tsx_ldtrk": "tsxldtrk",                    // QEMU tsx-ldtrk
        "xd": "nx",                                 // Intel's name for NX
    ]

    /// The Linux name for a feature spelled the Linux or the QEMU way, nil if unknown.
    static func canonicalName(_ spelling: String) -> String? {
        var name = spelling.lowercased().replacingSeparators()
        if let alias = aliases[name] { name = alias }
        return byName[name] == nil ? nil : name
    }

    /// The known name closest to `spelling`, for "did you mean".
    static func suggestion(for spelling: String) -> String? {
        let target = Array(spelling.lowercased().replacingSeparators())
        var best: (name: String, distance: Int)?
        for name in all.map(\.name) + aliases.keys.sorted() {
            let distance = editDistance(target, Array(name))
            if distance <= max(1, target.count / 3), distance < (best?.distance ?? .max) {
                best = (canonicalName(name) ?? name, distance)
            }
        }
        return best?.name
    }

    /// Levenshtein distance.
    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    // MARK: Dependencies

    /// `names` plus every feature that (transitively) requires one of them.
    static func dependents(of names: Set<String>) -> Set<String> {
        var result = names
        var changed = true
        while changed {
            changed = false
            for feature in all where !result.contains(feature.name) && feature.requires.contains(where: result.contains) {
                result.insert(feature.name)
                changed = true
            }
        }
        return result
    }

    /// The first broken requirement in `features`, as a chain: ["avx512f", "avx2", "avx"] means avx512f
    /// needs avx2, which needs avx, which `features` lacks. Nil if every requirement is met.
    /// `heads`: only chains starting at these features (those a `+` added); nil: every feature's.
    static func brokenChain(in features: Set<String>, from heads: Set<String>? = nil) -> [String]? {
        for name in (heads ?? features).intersection(features).sorted() {
            if let chain = missingRequirement(of: name, in: features, visited: []) { return chain }
        }
        return nil
    }

    private static func missingRequirement(of name: String, in features: Set<String>, visited: Set<String>) -> [String]? {
        guard let feature = byName[name], !visited.contains(name) else { return nil }
        for requirement in feature.requires {
            if !features.contains(requirement) { return [name, requirement] }
            if let chain = missingRequirement(of: requirement, in: features, visited: visited.union([name])) {
                return [name] + chain
            }
        }
        return nil
    }

    /// "avx512f needs avx2, which needs avx, which this model does not have".
    static func describeChain(_ chain: [String], owner: String = "this model") -> String {
        guard let first = chain.first else { return "" }
        var text = first
        for (position, name) in chain.dropFirst().enumerated() {
            text += position == 0 ? " needs \(name)" : ", which needs \(name)"
        }
        return text + ", which \(owner) does not have"
    }
}

/// One register of one (sub-)leaf.
struct FeatureRegister: Hashable, Sendable {
    var function: UInt32
    var index: UInt32
    var register: CPUIDRegister
    init(_ function: UInt32, _ index: UInt32, _ register: CPUIDRegister) {
        self.function = function; self.index = index; self.register = register
    }
}

extension String {
    /// QEMU writes features with '-' and '.', Linux with '_': one spelling for lookups.
    func replacingSeparators() -> String {
        String(map { $0 == "-" || $0 == "." ? "_" : $0 })
    }
}
