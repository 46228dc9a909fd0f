#!/usr/bin/env python3
# Writes the two reconstructed host tables here (intel-icelake-sp-kvm.json,
# amd-milan-kvm.json): what KVM_GET_SUPPORTED_CPUID returns on hosts we do
# not have. Each table is the feature list of the part's published
# /proc/cpuinfo flags, kept to what KVM 6.x reports to user space
# (arch/x86/kvm/cpuid.c, kvm_set_cpu_caps: e.g. no MONITOR, DS, EST; the
# hypervisor bit set; ARCH_CAPABILITIES, SPEC_CTRL/STIBP/SSBD synthesised),
# and the non-feature words (signature, XSAVE sizes, address sizes, brand,
# max leaves) from the vendors' documents. Feature bit positions are the
# SDM's/APM's; the script reads them from CPUFeatures.swift only to spell
# the names the same way. Run from this directory: python3 reconstruct-hosts.py
import json, re

swift = open("../../../Sources/CPUModel/CPUFeatures.swift").read()
bits = {}
for name, fn, idx, reg, bit in re.findall(r'f\("([^"]+)", (0x[0-9A-Fa-f_]+|\d+), (\d+), \.(e[abcd]x), (\d+)', swift):
    bits[name] = (int(fn.replace("_", ""), 0), int(idx), reg, int(bit))

def words(s):
    b = s.encode().ljust(len(s) + (-len(s)) % 4, b"\0")
    return [int.from_bytes(b[i:i + 4], "little") for i in range(0, len(b), 4)]

def table(vendor, max_basic, max_ext, signature, brand, features, extra):
    leaves = {}
    def leaf(fn, idx=0, flags=0):
        return leaves.setdefault((fn, idx), {"function": fn, "index": idx, "flags": flags, "eax": 0, "ebx": 0, "ecx": 0, "edx": 0})
    v = words(vendor)
    leaf(0).update(eax=max_basic, ebx=v[0], edx=v[1], ecx=v[2])
    leaf(0x80000000).update(eax=max_ext, ebx=v[0], edx=v[1], ecx=v[2])
    leaf(1).update(eax=signature)
    leaf(1)["ecx"] |= 1 << 31                      # KVM sets the hypervisor bit in what it supports
    for fn in list(range(2, max_basic + 1)) + list(range(0x80000001, max_ext + 1)):
        leaf(fn, flags=1 if fn in (4, 7, 0xB, 0xD, 0x14, 0x1F, 0x8000001D) else 0)
    leaf(7, 1, flags=1)
    for name in features:
        fn, idx, reg, bit = bits[name]
        leaf(fn, idx, flags=1 if fn in (7, 0xD) else 0)[reg] |= 1 << bit
    b = words(brand.ljust(48, "\0"))
    for i in range(3):
        leaf(0x80000002 + i).update(eax=b[i * 4], ebx=b[i * 4 + 1], ecx=b[i * 4 + 2], edx=b[i * 4 + 3])
    for (fn, idx, flags), regs in extra.items():
        e = leaf(fn, idx, flags)
        for register, value in regs.items():
            e[register] |= value
    leaf(0x40000000).update(eax=0x40000001, ebx=0x4b4d564b, ecx=0x564b4d56, edx=0x4d)   # "KVMKVMKVM"
    leaf(0x40000001).update(eax=0x01007efb)
    return sorted(leaves.values(), key=lambda e: (e["function"] >= 0x40000000 and e["function"] < 0x80000000, e["function"], e["index"]))

base = ["fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge", "mca", "cmov", "pat",
        "pse36", "clflush", "mmx", "fxsr", "sse", "sse2", "syscall", "nx", "pdpe1gb", "rdtscp", "lm", "lahf_lm", "abm",
        "3dnowprefetch", "arat", "invtsc", "pni", "pclmulqdq", "ssse3", "fma", "cx16", "pcid", "sse4_1", "sse4_2",
        "x2apic", "movbe", "popcnt", "tsc_deadline_timer", "aes", "xsave", "avx", "f16c", "rdrand", "fsgsbase",
        "tsc_adjust", "bmi1", "avx2", "smep", "bmi2", "erms", "invpcid", "rdseed", "adx", "smap", "clflushopt", "clwb",
        "sha_ni", "umip", "pku", "vaes", "vpclmulqdq", "rdpid", "fsrm", "xsaveopt", "xsavec", "xgetbv1", "xsaves",
        "spec_ctrl", "stibp", "ssbd", "arch_capabilities", "wbnoinvd", "ibpb", "amd_ibrs", "amd_stibp", "amd_ssbd"]

intel = table(
    "GenuineIntel", 0x1B, 0x80000008, 0x000606A6, "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz",
    base + ["vmx", "pdcm", "rtm", "avx512f", "avx512dq", "avx512ifma", "intel_pt", "avx512cd", "avx512bw", "avx512vl",
            "avx512vbmi", "avx512_vbmi2", "gfni", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "la57",
            "md_clear", "flush_l1d"],
    {   # XSAVE: x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM, PKRU; sizes and offsets per SDM Vol. 1 Table 13-1
        (0xD, 0, 1): {"eax": 0x2E7, "ebx": 0xA88, "ecx": 0xA88},
        (0xD, 2, 1): {"eax": 256, "ebx": 576},
        (0xD, 5, 1): {"eax": 64, "ebx": 1088},
        (0xD, 6, 1): {"eax": 512, "ebx": 1152},
        (0xD, 7, 1): {"eax": 1024, "ebx": 1664},
        (0xD, 9, 1): {"eax": 8, "ebx": 2688},
        (0x14, 0, 1): {"eax": 1, "ebx": 0xF, "ecx": 0x7},           # Intel PT: one sub-leaf, CR3 filter, PSB, IP filtering
        (0x14, 1, 1): {"eax": 0x02490002, "ebx": 0x003F3FFF},
        (0x80000008, 0, 0): {"eax": 0x392E},                        # 46 physical, 57 linear address bits
    })

amd = table(
    "AuthenticAMD", 0x10, 0x80000023, 0x00A00F11, "AMD EPYC 7763 64-Core Processor",
    base + ["cmp_legacy", "svm", "cr8_legacy", "sse4a", "misalignsse", "osvw", "topoext", "perfctr_core", "mmxext",
            "fxsr_opt", "clzero", "xsaveerptr", "virt_ssbd"],
    {   # XSAVE: x87, SSE, AVX, PKRU; AMD places PKRU at 0x980 (PPR 19h, CPUID Fn0000_000D_x09)
        (0xD, 0, 1): {"eax": 0x207, "ebx": 0x988, "ecx": 0x988},
        (0xD, 2, 1): {"eax": 256, "ebx": 576},
        (0xD, 9, 1): {"eax": 8, "ebx": 0x980},
        (0x80000001, 0, 0): {"eax": 0x00A00F11},                    # AMD repeats the signature here
        (0x80000008, 0, 0): {"eax": 0x3030},                        # 48 physical, 48 linear address bits
    })
# AMD mirrors leaf 1 EDX bits 0-9, 12-17, 23, 24 in 0x80000001 EDX (APM Vol. 3, CPUID Fn8000_0001_EDX).
for e in amd:
    if e["function"] == 0x80000001:
        e["edx"] |= next(x["edx"] for x in amd if x["function"] == 1) & 0x0183F3FF

def write(path, host, source, leaves):
    with open(path, "w") as f:
        json.dump({"host": host, "source": source, "leaves": leaves}, f, indent=None, separators=(", ", ": "))
        f.write("\n")

write("intel-icelake-sp-kvm.json", "Intel Xeon Platinum 8380 (Ice Lake-SP, 06_6AH stepping 6), KVM on Linux 6.x",
      "Reconstructed, not recorded: features = the Xeon Platinum 8380's published /proc/cpuinfo flags kept to what "
      "KVM 6.x reports (arch/x86/kvm/cpuid.c kvm_set_cpu_caps; no TSX HLE on this part, RTM kept); signature, "
      "XSAVE layout (SDM Vol. 1 Table 13-1), address sizes and leaf limits from Intel's SDM Vol. 2A CPUID and ARK. "
      "Made by reconstruct-hosts.py.", intel)
write("amd-milan-kvm.json", "AMD EPYC 7763 (Milan, family 19h model 01h stepping 1), KVM on Linux 6.x",
      "Reconstructed, not recorded: features = the EPYC 7763's published /proc/cpuinfo flags kept to what KVM 6.x "
      "reports (arch/x86/kvm/cpuid.c kvm_set_cpu_caps: no irperf/rdpru, SPEC_CTRL/STIBP/SSBD synthesised); "
      "signature, XSAVE layout, address sizes and leaf limits from AMD's PPR for Family 19h Model 01h (pub. 55898). "
      "Made by reconstruct-hosts.py.", amd)
