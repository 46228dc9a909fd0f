// KVM: the vCPU register files that only snapshots need, as Swift values:
// SREGS2 (special registers with the PDPTRs), debug registers, vCPU events
// (pending exception, interrupt, NMI, SMI) and the TSC frequency. Each is kept
// as the exact bytes KVM returned, so a restore writes back what was read.
internal import CKVM
import Glibc

/// Copies of C structures as byte blobs and back: the snapshot keeps KVM's
/// own layout so nothing is lost between GET and SET.
enum RawImage {
    static func bytes<T: BitwiseCopyable>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    /// The structure in `bytes`, which must be exactly its size.
    static func load<T: BitwiseCopyable>(_ type: T.Type, from bytes: [UInt8], _ request: String) throws(KVMError) -> T {
        guard bytes.count == MemoryLayout<T>.size else {
            throw .invalidArgument(request: request, reason: "image is \(bytes.count) bytes, KVM's structure has \(MemoryLayout<T>.size)")
        }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }
}

/// Special registers as a snapshot keeps them: the `kvm_sregs2` image where
/// the host has KVM_CAP_SREGS2 (it carries the PAE PDPTRs, which KVM_GET_SREGS
/// loses), else the `kvm_sregs` image.
public struct SpecialRegisterImage: Codable, Sendable, Equatable {
    public enum Format: String, Codable, Sendable {
        case sregs
        case sregs2
    }

    /// `KVM_SREGS2_FLAGS_PDPTRS_VALID`.
    public static let pdptrsValid: UInt64 = 1

    public var format: Format
    public var bytes: [UInt8]

    public init(format: Format, bytes: [UInt8]) {
        self.format = format
        self.bytes = bytes
    }

    /// An SREGS2 image of `registers` (their interrupt bitmap is not part
    /// of SREGS2: vCPU events carry a pending interrupt) with `pdptrs`
    /// marked valid when given (4 entries).
    public init(sregs2 registers: SpecialRegisters, pdptrs: [UInt64]?) throws(KVMError) {
        let s = registers.raw
        var r = kvm_sregs2()
        r.cs = s.cs; r.ds = s.ds; r.es = s.es; r.fs = s.fs; r.gs = s.gs; r.ss = s.ss; r.tr = s.tr; r.ldt = s.ldt
        r.gdt = s.gdt; r.idt = s.idt
        r.cr0 = s.cr0; r.cr2 = s.cr2; r.cr3 = s.cr3; r.cr4 = s.cr4; r.cr8 = s.cr8
        r.efer = s.efer; r.apic_base = s.apic_base
        if let pdptrs {
            guard pdptrs.count == 4 else {
                throw .invalidArgument(request: "KVM_SET_SREGS2", reason: "\(pdptrs.count) PDPTRs, PAE has 4")
            }
            r.flags = Self.pdptrsValid
            r.pdptrs = (pdptrs[0], pdptrs[1], pdptrs[2], pdptrs[3])
        }
        self.init(format: .sregs2, bytes: RawImage.bytes(of: r))
    }

    /// The PDPTRs, when the image is SREGS2 and KVM said they are valid.
    public var pdptrs: [UInt64]? {
        guard format == .sregs2, let raw = try? RawImage.load(kvm_sregs2.self, from: bytes, "SREGS2"),
              raw.flags & Self.pdptrsValid != 0 else { return nil }
        return [raw.pdptrs.0, raw.pdptrs.1, raw.pdptrs.2, raw.pdptrs.3]
    }

    /// CR3 (both formats have it at the same meaning).
    public var cr3: UInt64? {
        switch format {
        case .sregs2: return try? RawImage.load(kvm_sregs2.self, from: bytes, "SREGS2").cr3
        case .sregs: return try? RawImage.load(kvm_sregs.self, from: bytes, "SREGS").cr3
        }
    }
}

/// DR0–DR3, DR6, DR7 (`struct kvm_debugregs`).
public struct DebugRegisters: Codable, Sendable, Equatable {
    public var breakpoints: [UInt64]
    public var dr6: UInt64
    public var dr7: UInt64
    public var flags: UInt64

    public init(breakpoints: [UInt64] = [0, 0, 0, 0], dr6: UInt64 = 0xFFFF_0FF0, dr7: UInt64 = 0x400, flags: UInt64 = 0) {
        self.breakpoints = breakpoints; self.dr6 = dr6; self.dr7 = dr7; self.flags = flags
    }

    init(_ raw: kvm_debugregs) {
        breakpoints = [raw.db.0, raw.db.1, raw.db.2, raw.db.3]
        dr6 = raw.dr6; dr7 = raw.dr7; flags = raw.flags
    }

    func raw() throws(KVMError) -> kvm_debugregs {
        guard breakpoints.count == 4 else {
            throw .invalidArgument(request: "KVM_SET_DEBUGREGS", reason: "\(breakpoints.count) breakpoint registers, x86 has 4")
        }
        var r = kvm_debugregs()
        r.db = (breakpoints[0], breakpoints[1], breakpoints[2], breakpoints[3])
        r.dr6 = dr6; r.dr7 = dr7; r.flags = flags
        return r
    }
}

/// Pending and injected events (`struct kvm_vcpu_events`), kept as KVM's
/// image; the accessors read and change single fields of it.
public struct VCPUEvents: Codable, Sendable, Equatable {
    /// KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR: KVM
    /// reports both on GET but applies them on SET only when flagged (QEMU's
    /// kvm_put_vcpu_events sets them the same way).
    static let restoreFlags: UInt32 = 0x1 | 0x2

    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    private func field<T>(_ read: (kvm_vcpu_events) -> T) -> T? {
        (try? RawImage.load(kvm_vcpu_events.self, from: bytes, "vCPU events")).map(read)
    }

    private mutating func update(_ change: (inout kvm_vcpu_events) -> Void) {
        guard var raw = try? RawImage.load(kvm_vcpu_events.self, from: bytes, "vCPU events") else { return }
        change(&raw)
        bytes = RawImage.bytes(of: raw)
    }

    public var flags: UInt32? { field { $0.flags } }
    public var nmiPending: Bool? {
        get { field { $0.nmi.pending != 0 } }
        set { update { $0.nmi.pending = newValue == true ? 1 : 0 } }
    }
    public var nmiMasked: Bool? {
        get { field { $0.nmi.masked != 0 } }
        set { update { $0.nmi.masked = newValue == true ? 1 : 0 } }
    }
    /// The STI / MOV SS interrupt shadow (KVM_X86_SHADOW_INT_MOV_SS 1, _STI 2).
    public var interruptShadow: UInt8? {
        get { field { $0.interrupt.shadow } }
        set { update { $0.interrupt.shadow = newValue ?? 0 } }
    }
    public var sipiVector: UInt32? {
        get { field { $0.sipi_vector } }
        set { update { $0.sipi_vector = newValue ?? 0 } }
    }
}

extension VCPU {
    /// KVM_GET_SREGS2 where the host has it, else KVM_GET_SREGS, as an image.
    public func specialRegisterImage() throws(KVMError) -> SpecialRegisterImage {
        if hasSREGS2 {
            var raw = kvm_sregs2()
            _ = try Syscall.ioctl(fd, CKVM_GET_SREGS2, &raw, "KVM_GET_SREGS2")
            return SpecialRegisterImage(format: .sregs2, bytes: RawImage.bytes(of: raw))
        }
        var raw = kvm_sregs()
        _ = try Syscall.ioctl(fd, CKVM_GET_SREGS, &raw, "KVM_GET_SREGS")
        return SpecialRegisterImage(format: .sregs, bytes: RawImage.bytes(of: raw))
    }

    /// KVM_SET_SREGS2 or KVM_SET_SREGS, as the image's format says. An SREGS2
    /// image needs a host with KVM_CAP_SREGS2: converting it would drop the PDPTRs.
    public func setSpecialRegisterImage(_ image: SpecialRegisterImage) throws(KVMError) {
        switch image.format {
        case .sregs2:
            guard hasSREGS2 else {
                throw .invalidArgument(request: "KVM_SET_SREGS2", reason: "the state has SREGS2 (with PDPTRs) and this host lacks KVM_CAP_SREGS2")
            }
            var raw = try RawImage.load(kvm_sregs2.self, from: image.bytes, "KVM_SET_SREGS2")
            _ = try Syscall.ioctl(fd, CKVM_SET_SREGS2, &raw, "KVM_SET_SREGS2")
        case .sregs:
            var raw = try RawImage.load(kvm_sregs.self, from: image.bytes, "KVM_SET_SREGS")
            _ = try Syscall.ioctl(fd, CKVM_SET_SREGS, &raw, "KVM_SET_SREGS")
        }
    }

    /// KVM_GET_DEBUGREGS.
    public func debugRegisters() throws(KVMError) -> DebugRegisters {
        var raw = kvm_debugregs()
        _ = try Syscall.ioctl(fd, CKVM_GET_DEBUGREGS, &raw, "KVM_GET_DEBUGREGS")
        return DebugRegisters(raw)
    }

    /// KVM_SET_DEBUGREGS.
    public func setDebugRegisters(_ registers: DebugRegisters) throws(KVMError) {
        var raw = try registers.raw()
        _ = try Syscall.ioctl(fd, CKVM_SET_DEBUGREGS, &raw, "KVM_SET_DEBUGREGS")
    }

    /// KVM_GET_VCPU_EVENTS.
    public func events() throws(KVMError) -> VCPUEvents {
        var raw = kvm_vcpu_events()
        _ = try Syscall.ioctl(fd, CKVM_GET_VCPU_EVENTS, &raw, "KVM_GET_VCPU_EVENTS")
        return VCPUEvents(bytes: RawImage.bytes(of: raw))
    }

    /// KVM_SET_VCPU_EVENTS, with the NMI-pending and SIPI-vector fields marked
    /// valid so that they are applied, not ignored.
    public func setEvents(_ events: VCPUEvents) throws(KVMError) {
        var raw = try RawImage.load(kvm_vcpu_events.self, from: events.bytes, "KVM_SET_VCPU_EVENTS")
        raw.flags |= VCPUEvents.restoreFlags
        _ = try Syscall.ioctl(fd, CKVM_SET_VCPU_EVENTS, &raw, "KVM_SET_VCPU_EVENTS")
    }

    /// KVM_GET_TSC_KHZ: this vCPU's TSC rate in kHz.
    public func tscKHz() throws(KVMError) -> UInt32 {
        UInt32(try Syscall.ioctl(fd, CKVM_GET_TSC_KHZ, "KVM_GET_TSC_KHZ"))
    }

    /// KVM_SET_TSC_KHZ (needs KVM_CAP_TSC_CONTROL).
    public func setTSCKHz(_ khz: UInt32) throws(KVMError) {
        _ = try Syscall.ioctl(fd, CKVM_SET_TSC_KHZ, value: UInt(khz), "KVM_SET_TSC_KHZ")
    }
}
