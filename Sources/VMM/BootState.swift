// VMM: turning the loader's pure boot description into KVM register files,
// and the CPUID table each vCPU gets.
import KVM
import Loader

enum BootState {
    static func segment(_ s: SegmentRegister) -> Segment {
        var k = Segment()
        k.base = s.base; k.limit = s.limit; k.selector = s.selector; k.type = s.type
        k.present = s.present; k.dpl = s.dpl; k.db = s.db; k.s = s.s
        k.l = s.l; k.g = s.g; k.avl = s.avl; k.unusable = s.unusable
        return k
    }

    /// Applies `state` on top of the vCPU's current special registers (which
    /// keeps KVM's APIC base and interrupt bitmap).
    static func apply(_ state: BootCPUState, to vcpu: VCPU) throws(KVMError) {
        var sregs = try vcpu.specialRegisters()
        sregs.cs = segment(state.cs); sregs.ds = segment(state.ds); sregs.es = segment(state.es)
        sregs.fs = segment(state.fs); sregs.gs = segment(state.gs); sregs.ss = segment(state.ss)
        sregs.tr = segment(state.tr); sregs.ldt = segment(state.ldt)
        sregs.gdt = DescriptorTableRegister(base: state.gdt.base, limit: state.gdt.limit)
        sregs.idt = DescriptorTableRegister(base: state.idt.base, limit: state.idt.limit)
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
