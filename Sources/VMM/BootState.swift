// VMM: turning the loader's pure boot description into KVM register files,
// and the CPUID table each vCPU gets.
import KVMABI
import KVM
import Loader

enum BootState {
    /// Applies `state` on top of the vCPU's current special registers (which
    /// keeps KVM's APIC base and interrupt bitmap).
    static func apply(_ state: BootCPUState, to vcpu: VCPU) throws(KVMError) {
        var sregs = try vcpu.specialRegisters()
        sregs.cs = state.cs; sregs.ds = state.ds; sregs.es = state.es
        sregs.fs = state.fs; sregs.gs = state.gs; sregs.ss = state.ss
        sregs.tr = state.tr; sregs.ldt = state.ldt
        sregs.gdt = state.gdt; sregs.idt = state.idt
        sregs.cr0 = state.cr0; sregs.cr3 = state.cr3; sregs.cr4 = state.cr4; sregs.efer = state.efer
        try vcpu.setSpecialRegisters(sregs)

        var regs = Registers()
        regs.rip = state.rip; regs.rsp = state.rsp; regs.rflags = state.rflags
        regs.rdi = state.rdi; regs.rsi = state.rsi
        regs.rax = state.rax; regs.rbx = state.rbx
        try vcpu.setRegisters(regs)
    }

    /// KVM's supported CPUID, with the APIC ids of vCPU `id` filled in
    /// (leaf 1 EBX[31:24], leaves 0xB/0x1F EDX) and the topology count in
    /// leaf 1 EBX[23:16].
    /// `kvmFeatures`: the bits of CPUID 0x40000001 EAX among `managedKVMFeatures`
    /// that the VM really handles; the others of those are cleared.
    static func cpuid(from supported: [CPUIDEntry], vcpu id: UInt32, count: Int,
                      kvmFeatures: UInt32 = 0, managedKVMFeatures: UInt32 = 0) -> [CPUIDEntry] {
        supported.map { entry in
            var e = entry
            switch e.function {
            case 1:
                e.ebx = (e.ebx & 0x0000_FFFF) | (id << 24) | (UInt32(min(count, 255)) << 16)
                if count > 1 { e.edx |= 1 << 28 } // HTT: logical processor count is valid
            case 0xB, 0x1F:
                e.edx = id
            case 0x4000_0001:
                e.eax = (e.eax & ~managedKVMFeatures) | (kvmFeatures & managedKVMFeatures)
            default:
                break
            }
            return e
        }
    }
}
