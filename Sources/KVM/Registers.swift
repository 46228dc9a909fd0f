// KVM: vCPU register files as Swift values: general registers (kvm_regs),
// special registers (kvm_sregs), FPU (kvm_fpu), XSAVE area and XCRs.
internal import CKVM
import KVMABI

/// General-purpose registers, RIP and RFLAGS (KVM_GET_REGS / KVM_SET_REGS).
public struct Registers: Sendable, Equatable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0, rflags: UInt64 = 0x2

    public init() {}

    init(_ r: kvm_regs) {
        rax = r.rax; rbx = r.rbx; rcx = r.rcx; rdx = r.rdx
        rsi = r.rsi; rdi = r.rdi; rsp = r.rsp; rbp = r.rbp
        r8 = r.r8; r9 = r.r9; r10 = r.r10; r11 = r.r11
        r12 = r.r12; r13 = r.r13; r14 = r.r14; r15 = r.r15
        rip = r.rip; rflags = r.rflags
    }

    var raw: kvm_regs {
        var r = kvm_regs()
        r.rax = rax; r.rbx = rbx; r.rcx = rcx; r.rdx = rdx
        r.rsi = rsi; r.rdi = rdi; r.rsp = rsp; r.rbp = rbp
        r.r8 = r8; r.r9 = r9; r.r10 = r10; r.r11 = r11
        r.r12 = r12; r.r13 = r13; r.r14 = r14; r.r15 = r15
        r.rip = rip; r.rflags = rflags
        return r
    }
}

/// KVM's C form of a segment register (the type lives in KVMABI).
extension Segment {
    init(_ r: kvm_segment) {
        self.init(base: r.base, limit: r.limit, selector: r.selector, type: r.type, present: r.present != 0,
                  dpl: r.dpl, db: r.db != 0, s: r.s != 0, l: r.l != 0, g: r.g != 0, avl: r.avl != 0,
                  unusable: r.unusable != 0)
    }

    var raw: kvm_segment {
        var r = kvm_segment()
        r.base = base; r.limit = limit; r.selector = selector; r.type = type
        r.present = present ? 1 : 0; r.dpl = dpl; r.db = db ? 1 : 0; r.s = s ? 1 : 0
        r.l = l ? 1 : 0; r.g = g ? 1 : 0; r.avl = avl ? 1 : 0; r.unusable = unusable ? 1 : 0
        return r
    }
}

/// Segment, control and descriptor-table registers (KVM_GET_SREGS / KVM_SET_SREGS).
public struct SpecialRegisters: Sendable, Equatable {
    public var cs = Segment(), ds = Segment(), es = Segment(), fs = Segment()
    public var gs = Segment(), ss = Segment(), tr = Segment(), ldt = Segment()
    public var gdt = DescriptorTableRegister(), idt = DescriptorTableRegister()
    public var cr0: UInt64 = 0, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0
    /// Pending external interrupt bitmap (256 bits); restored as read.
    public var interruptBitmap: [UInt64] = [0, 0, 0, 0]

    public init() {}

    init(_ r: kvm_sregs) {
        cs = Segment(r.cs); ds = Segment(r.ds); es = Segment(r.es); fs = Segment(r.fs)
        gs = Segment(r.gs); ss = Segment(r.ss); tr = Segment(r.tr); ldt = Segment(r.ldt)
        gdt = DescriptorTableRegister(base: r.gdt.base, limit: r.gdt.limit)
        idt = DescriptorTableRegister(base: r.idt.base, limit: r.idt.limit)
        cr0 = r.cr0; cr2 = r.cr2; cr3 = r.cr3; cr4 = r.cr4; cr8 = r.cr8
        efer = r.efer; apicBase = r.apic_base
        let b = r.interrupt_bitmap
        interruptBitmap = [b.0, b.1, b.2, b.3]
    }

    var raw: kvm_sregs {
        var r = kvm_sregs()
        r.cs = cs.raw; r.ds = ds.raw; r.es = es.raw; r.fs = fs.raw
        r.gs = gs.raw; r.ss = ss.raw; r.tr = tr.raw; r.ldt = ldt.raw
        r.gdt.base = gdt.base; r.gdt.limit = gdt.limit
        r.idt.base = idt.base; r.idt.limit = idt.limit
        r.cr0 = cr0; r.cr2 = cr2; r.cr3 = cr3; r.cr4 = cr4; r.cr8 = cr8
        r.efer = efer; r.apic_base = apicBase
        let b = interruptBitmap + [0, 0, 0, 0]
        r.interrupt_bitmap = (b[0], b[1], b[2], b[3])
        return r
    }
}

/// Legacy FPU/SSE state (KVM_GET_FPU / KVM_SET_FPU), kept whole so a round
/// trip is exact; the fields below are read through `kvm_fpu` itself (its
/// layout is not the FXSAVE image's). KVM's x86 FPU ioctls do not carry
/// MXCSR: `kvm_fpu.mxcsr` reads 0 and is ignored on set, so MXCSR is only
/// offered by `XSAVEState`.
public struct FPUState: Sendable, Equatable {
    /// Size of the kvm_fpu image (416 bytes).
    public static let byteCount = MemoryLayout<kvm_fpu>.size

    /// The kvm_fpu image; KVM_SET_FPU refuses any other length.
    public var bytes: [UInt8]

    init(_ raw: kvm_fpu) {
        var copy = raw
        bytes = withUnsafeBytes(of: &copy) { Array($0) }
    }

    var raw: kvm_fpu {
        var r = kvm_fpu()
        withUnsafeMutableBytes(of: &r) { target in
            let n = min(target.count, bytes.count)
            for i in 0..<n { target[i] = bytes[i] }
        }
        return r
    }

    /// x87 control word.
    public var fcw: UInt16 {
        get { raw.fcw }
        set { var r = raw; r.fcw = newValue; self = FPUState(r) }
    }
    /// XMM register `index` (0...15), or nil outside that range.
    public func xmm(_ index: Int) -> UInt128? {
        guard (0..<16).contains(index) else { return nil }
        return withUnsafeBytes(of: raw.xmm) { $0.loadUnaligned(fromByteOffset: index * 16, as: UInt128.self) }
    }
}

/// The XSAVE image (KVM_GET_XSAVE2 / KVM_GET_XSAVE / KVM_SET_XSAVE):
/// `VCPU.xsaveSize` bytes, in the standard (non-compacted) format.
public struct XSAVEState: Sendable, Equatable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }

    // The legacy region's layout is architectural (the FXSAVE image).
    static let mxcsrOffset = 24
    static let xmmOffset = 160

    /// MXCSR from the legacy region, or nil when the image is too short.
    public var mxcsr: UInt32? {
        guard bytes.count >= Self.mxcsrOffset + 4 else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: Self.mxcsrOffset, as: UInt32.self) }
    }

    /// XMM register `index` (0...15) from the legacy region, or nil.
    public func xmm(_ index: Int) -> UInt128? {
        let offset = Self.xmmOffset + index * 16
        guard (0..<16).contains(index), bytes.count >= offset + 16 else { return nil }
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt128.self) }
    }
}

/// One extended control register (XCR0 ...) as KVM_GET_XCRS reports it.
public struct ExtendedControlRegister: Codable, Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64
    public init(index: UInt32, value: UInt64) { self.index = index; self.value = value }
}

/// vCPU multiprocessing state (KVM_GET_MP_STATE).
public enum MPState: UInt32, Sendable {
    case runnable = 0, uninitialized = 1, initReceived = 2, halted = 3, sipiReceived = 4
}
