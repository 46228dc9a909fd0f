// Loader: the initial register values for real-mode and long-mode boots —
// control registers, EFER, and the hidden segment state KVM needs to accept
// the vCPU without running any mode-switch code in the guest.
import KVMABI

/// Control-register and EFER bits used by the boot states.
public enum ControlBits {
    public static let cr0PE: UInt64 = 1 << 0   // protected mode
    public static let cr0MP: UInt64 = 1 << 1   // monitor coprocessor (WAIT honours TS)
    public static let cr0ET: UInt64 = 1 << 4   // extension type: hard-wired 1 on modern CPUs
    public static let cr0NE: UInt64 = 1 << 5   // native x87 error reporting
    public static let cr0WP: UInt64 = 1 << 16  // write-protect applies to supervisor writes
    public static let cr0AM: UInt64 = 1 << 18  // alignment checks possible (only at CPL 3 with EFLAGS.AC)
    public static let cr0PG: UInt64 = 1 << 31  // paging
    public static let cr4PAE: UInt64 = 1 << 5
    public static let cr4OSFXSR: UInt64 = 1 << 9      // FXSAVE/FXRSTOR and SSE enabled
    public static let cr4OSXMMEXCPT: UInt64 = 1 << 10 // unmasked SSE exceptions raise #XM
    public static let eferLME: UInt64 = 1 << 8
    public static let eferLMA: UInt64 = 1 << 10

    /// Real mode: only ET, as on reset but with caching enabled (CD and NW clear).
    public static let realModeCR0: UInt64 = cr0ET
    /// 0x80050033, the value Linux runs with. AM is included because that
    /// number is what the layout promises; it is inert in ring 0.
    public static let longModeCR0: UInt64 = cr0PE | cr0MP | cr0ET | cr0NE | cr0WP | cr0AM | cr0PG
    /// 0x620: PAE is required for long mode; the SSE bits let compiled C use SSE.
    public static let longModeCR4: UInt64 = cr4PAE | cr4OSFXSR | cr4OSXMMEXCPT
    /// 0x500: LMA is set directly because KVM loads the final state, no mode switch runs.
    public static let longModeEFER: UInt64 = eferLME | eferLMA
    /// 0x11: multiboot's 32-bit protected mode, paging off (ET as in real mode).
    public static let protectedModeCR0: UInt64 = cr0PE | cr0ET
}

/// Segment descriptor types (the 4-bit type field).
enum SegmentType {
    static let dataReadWriteAccessed: UInt8 = 0x3
    static let codeExecuteReadAccessed: UInt8 = 0xB
    static let ldt: UInt8 = 0x2
    /// Busy 32-bit TSS (KVM's reset value for TR); the same type means busy 64-bit TSS in long mode.
    static let busyTSS: UInt8 = 0xB
}

extension BootCPUState {
    /// Real mode: flat 64 KiB segments at 0, descriptor tables as after reset.
    static func realMode(entry: UInt64, stack: UInt64, rdi: UInt64, rsi: UInt64) -> BootCPUState {
        let data = Segment(limit: 0xFFFF, type: SegmentType.dataReadWriteAccessed,
                                   present: true, s: true)
        var code = data
        code.type = SegmentType.codeExecuteReadAccessed
        // TR and LDTR hold their reset values; KVM checks them even in real mode.
        let tr = Segment(limit: 0xFFFF, type: SegmentType.busyTSS, present: true)
        let ldt = Segment(limit: 0xFFFF, type: SegmentType.ldt, present: true)
        return BootCPUState(
            rip: entry, rsp: stack, rflags: resetRFLAGS, rdi: rdi, rsi: rsi,
            cr0: ControlBits.realModeCR0, cr3: 0, cr4: 0, efer: 0,
            cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tr, ldt: ldt,
            gdt: DescriptorTableRegister(base: 0, limit: 0xFFFF),
            idt: DescriptorTableRegister(base: 0, limit: 0xFFFF))
    }

    /// Long mode: the GDT selectors of the boot layout, paging on with CR3 at the PML4.
    static func longMode(entry: UInt64, stack: UInt64, rdi: UInt64, rsi: UInt64) -> BootCPUState {
        let code = Segment(base: 0, limit: 0xFFFF_FFFF, selector: BootLayout.codeSelector,
                                   type: SegmentType.codeExecuteReadAccessed, present: true,
                                   db: false, s: true, l: true, g: true)
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: BootLayout.dataSelector,
                                   type: SegmentType.dataReadWriteAccessed, present: true,
                                   db: true, s: true, l: false, g: true)
        // VM entry in IA-32e mode demands a usable busy 64-bit TSS in TR even
        // though nothing here ever switches stacks through it.
        let tr = Segment(limit: 0xFFFF, type: SegmentType.busyTSS, present: true)
        let ldt = Segment(type: SegmentType.ldt, present: false, unusable: true)
        return BootCPUState(
            rip: entry, rsp: stack, rflags: resetRFLAGS, rdi: rdi, rsi: rsi,
            cr0: ControlBits.longModeCR0, cr3: BootLayout.pml4Address,
            cr4: ControlBits.longModeCR4, efer: ControlBits.longModeEFER,
            cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tr, ldt: ldt,
            gdt: DescriptorTableRegister(base: BootLayout.gdtAddress,
                                 limit: UInt16(LongModeBootStructures.gdtEntries.count * 8 - 1)),
            // Empty IDT on purpose: see BootLayout.swift.
            idt: DescriptorTableRegister(base: 0, limit: 0))
    }
}

extension BootCPUState {
    /// 32-bit protected mode, paging off, as the multiboot spec demands:
    /// flat 4 GiB code and data segments whose selectors match the multiboot
    /// GDT (so the guest can reload them), interrupts off, EAX/EBX as given.
    static func protectedMode(entry: UInt64, stack: UInt64, eax: UInt64, ebx: UInt64,
                              gdtBase: UInt64) -> BootCPUState {
        let code = Segment(base: 0, limit: 0xFFFF_FFFF, selector: BootLayout.codeSelector,
                                   type: SegmentType.codeExecuteReadAccessed, present: true,
                                   db: true, s: true, l: false, g: true)
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: BootLayout.dataSelector,
                                   type: SegmentType.dataReadWriteAccessed, present: true,
                                   db: true, s: true, l: false, g: true)
        // Reset values: VM entry checks TR and LDTR in protected mode too.
        let tr = Segment(limit: 0xFFFF, type: SegmentType.busyTSS, present: true)
        let ldt = Segment(limit: 0xFFFF, type: SegmentType.ldt, present: true)
        return BootCPUState(
            rip: entry, rsp: stack, rflags: resetRFLAGS, rdi: 0, rsi: 0,
            cr0: ControlBits.protectedModeCR0, cr3: 0, cr4: 0, efer: 0,
            cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tr, ldt: ldt,
            gdt: DescriptorTableRegister(base: gdtBase,
                                 limit: UInt16(MultibootConstants.gdtEntries.count * 8 - 1)),
            // Empty IDT on purpose, as in long mode: see BootLayout.swift.
            idt: DescriptorTableRegister(base: 0, limit: 0),
            rax: eax, rbx: ebx)
    }
}
