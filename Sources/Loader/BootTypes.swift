// Loader: the pure result types of loading an image — memory segments, the
// boot mode, segment and descriptor-table registers, and per-vCPU CPU state.
// They mirror KVM's kvm_segment / kvm_dtable / kvm_regs fields so the VMM can
// convert them one field at a time, without this target knowing KVM.
import KVMABI

/// How an image is started.
public enum BootMode: String, Sendable, CaseIterable, Codable {
    /// Flat binary at 0x7C00, 16-bit real mode.
    case real
    /// Flat binary at 1 MiB, 64-bit long mode.
    case long
    /// ELF64 executable, 64-bit long mode.
    case elf
    /// Multiboot v1 kernel (ELF32, or the header's own load addresses),
    /// 32-bit protected mode without paging; see `MultibootLoader`.
    case multiboot
    /// Linux bzImage (setup header "HdrS", protocol 2.12+) through the 64-bit
    /// boot protocol; see `LinuxLoader`.
    case linux
    /// ELF vmlinux with a XEN_ELFNOTE_PHYS32_ENTRY note: 32-bit protected
    /// mode with `hvm_start_info`; see `PVHLoader`.
    case pvh
}

/// Bytes to copy into guest-physical memory at `guestPhysicalAddress`.
public struct MemorySegment: Sendable, Equatable {
    public var guestPhysicalAddress: UInt64
    public var bytes: [UInt8]

    public init(guestPhysicalAddress: UInt64, bytes: [UInt8]) {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.bytes = bytes
    }

    /// A program segment: `fileBytes`, then zeros up to `memorySize` (its
    /// .bss); `memorySize` must be at least `fileBytes.count`. Zeros first and
    /// the file bytes copied over them: appending a repeated zero walks it a
    /// byte at a time in unoptimized builds (over a second for a 5 MiB .bss).
    public init(guestPhysicalAddress: UInt64, fileBytes: ArraySlice<UInt8>, memorySize: Int) {
        var bytes = [UInt8](repeating: 0, count: max(memorySize, fileBytes.count))
        bytes.replaceSubrange(0..<fileBytes.count, with: fileBytes)
        self.init(guestPhysicalAddress: guestPhysicalAddress, bytes: bytes)
    }

    /// One past the last byte (cannot overflow for segments the loader makes).
    public var endAddress: UInt64 { guestPhysicalAddress &+ UInt64(bytes.count) }
}

/// The registers a vCPU starts with. Everything not listed is zero (general
/// registers) or left as KVM reset it (APIC base, interrupt bitmap, CR2, CR8).
public struct BootCPUState: Sendable, Equatable {
    public var rip: UInt64, rsp: UInt64, rflags: UInt64, rdi: UInt64, rsi: UInt64
    /// Multiboot passes its magic in EAX and the information address in EBX.
    public var rax: UInt64, rbx: UInt64
    public var cr0: UInt64, cr3: UInt64, cr4: UInt64, efer: UInt64
    public var cs: Segment, ds: Segment, es: Segment, fs: Segment
    public var gs: Segment, ss: Segment, tr: Segment, ldt: Segment
    public var gdt: DescriptorTableRegister, idt: DescriptorTableRegister

    public init(rip: UInt64 = 0, rsp: UInt64 = 0, rflags: UInt64 = BootCPUState.resetRFLAGS,
                rdi: UInt64 = 0, rsi: UInt64 = 0,
                cr0: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, efer: UInt64 = 0,
                cs: Segment = .init(), ds: Segment = .init(),
                es: Segment = .init(), fs: Segment = .init(),
                gs: Segment = .init(), ss: Segment = .init(),
                tr: Segment = .init(), ldt: Segment = .init(),
                gdt: DescriptorTableRegister = .init(), idt: DescriptorTableRegister = .init(),
                rax: UInt64 = 0, rbx: UInt64 = 0) {
        self.rip = rip; self.rsp = rsp; self.rflags = rflags; self.rdi = rdi; self.rsi = rsi
        self.rax = rax; self.rbx = rbx
        self.cr0 = cr0; self.cr3 = cr3; self.cr4 = cr4; self.efer = efer
        self.cs = cs; self.ds = ds; self.es = es; self.fs = fs
        self.gs = gs; self.ss = ss; self.tr = tr; self.ldt = ldt
        self.gdt = gdt; self.idt = idt
    }

    /// Bit 1 of RFLAGS is reserved and always set; interrupts start disabled.
    public static let resetRFLAGS: UInt64 = 0x2
}

/// A validated image laid out for one boot mode: what to copy into RAM and
/// where every vCPU starts.
public struct BootImage: Sendable {
    public var mode: BootMode
    /// Boot structures first (long mode: GDT page, then the page tables;
    /// multiboot: the multiboot area), then the image's own segments in
    /// program-header order. They never overlap.
    public var segments: [MemorySegment]
    /// Multiboot: where each module's bytes go, in the order given. The
    /// caller copies them there (the loader only knows their sizes); they
    /// overlap no segment.
    public var moduleRanges: [Range<UInt64>] = []
    public var entry: UInt64
    /// When set, `cpuState` returns exactly this for every vCPU (multiboot
    /// sets it: one processor, registers the spec defines).
    public var bootstrapProcessorState: BootCPUState? = nil
    /// True when only vCPU 0 may start at the entry: the others must stay in
    /// KVM's wait-for-SIPI state (in-kernel LAPIC) until the guest wakes them
    /// with INIT/SIPI. The VMM must not apply `cpuState` to them then.
    /// False for the flat and ELF64 modes, where every vCPU starts at the entry.
    public var applicationProcessorsWaitForSIPI = false

    public init(mode: BootMode, segments: [MemorySegment], entry: UInt64) {
        self.mode = mode
        self.segments = segments
        self.entry = entry
    }

    /// CPU state for vCPU `index` of `count` (index < count <= BootLayout.maxVCPUs).
    ///
    /// `load` has already checked the count. An index outside the stack slots
    /// is a VMM bug, not an image problem; it is clamped to the nearest slot
    /// (two vCPUs then share a stack) rather than trapping.
    public func cpuState(vcpu index: Int, of count: Int) -> BootCPUState {
        if let bootstrapProcessorState { return bootstrapProcessorState }
        let slot = UInt64(min(max(index, 0), BootLayout.maxVCPUs - 1))
        let rdi = UInt64(max(index, 0))
        let rsi = UInt64(max(count, 0))
        switch mode {
        case .real:
            return BootCPUState.realMode(
                entry: entry,
                stack: BootLayout.realModeStackTop - slot * BootLayout.realModeStackStride,
                rdi: rdi, rsi: rsi)
        case .long, .elf:
            return BootCPUState.longMode(
                entry: entry,
                stack: BootLayout.longModeStackTop - slot * BootLayout.longModeStackStride,
                rdi: rdi, rsi: rsi)
        case .multiboot:
            // Only reached for a hand-built BootImage; `MultibootLoader` sets
            // `bootstrapProcessorState`. Such an image has no multiboot area,
            // so there is no information structure, GDT or stack to point at.
            return BootCPUState.protectedMode(entry: entry, stack: 0, eax: MultibootConstants.bootloaderMagic,
                                              ebx: 0, gdtBase: 0)
        case .linux, .pvh:
            // Only reached for a hand-built BootImage: `LinuxLoader` and
            // `PVHLoader` set `bootstrapProcessorState`. Without a plan there
            // is no zero page or start info to point at.
            return mode == .linux ? BootCPUState.linux64(entry: entry, zeroPage: 0)
                : BootCPUState.protectedMode(entry: entry, stack: 0, eax: 0, ebx: 0, gdtBase: 0)
        }
    }
}
