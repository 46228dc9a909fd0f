// KVM: one vCPU's complete KVM state as a value (capture and restore), in the
// order that matters.
//
// Capture (Firecracker vcpu.rs save_state; QEMU kvm_arch_get_registers):
//   1. MP state first: KVM_GET_MP_STATE runs kvm_apic_accept_events(), which
//      can deliver a pending INIT/SIPI and change CS/RIP and the LAPIC;
//   2. registers, special registers (SREGS2 where KVM_CAP_SREGS2: it carries
//      the PDPTRs), XSAVE (the KVM_CAP_XSAVE2 size), XCRs, debug registers,
//      LAPIC, TSC frequency, CPUID, MSRs, ONE_REG registers;
//   3. vCPU events last: the GETs above may change what is pending.
// Restore (Firecracker restore_state; QEMU kvm_arch_put_registers):
//   0. checks first, so that a refusal changes nothing: every image's size,
//      SREGS2 support, the TSC frequency (set it where KVM_CAP_TSC_CONTROL,
//      else a mismatch is refused unless the caller accepts it);
//   1. CPUID (KVM checks later state against it), MP state;
//   2. registers (KVM_SET_REGS clears pending exceptions, so before events),
//      special registers (they set the APIC base), XSAVE, XCRs, debug regs;
//   3. LAPIC after SREGS (APIC base) and before MSRs (TSC_DEADLINE is only
//      accepted with the LAPIC in TSC-deadline mode);
//   4. MSRs (read-only MTRRcap compared in step 0, not written),
//      IA32_TSC_DEADLINE after IA32_TSC (QEMU kvm_put_tscdeadline_msr;
//      Firecracker DEFERRED_MSRS), then ONE_REG registers;
//   5. vCPU events last.
// QEMU puts the MP state after the events; both orders are in use. The one
// here follows Firecracker because SET_MP_STATE can reset pending events.
//
// MSRs KVM refuses to read on this host (KVM_GET_MSRS stops at them) are not
// dropped silently: the capture records each in `refusedMSRs` (the caller
// names them with MSRCatalogue and decides whether that is fatal) and saves
// the rest. A restore writes every saved MSR and fails on the first refusal.
internal import CKVM
import Glibc

/// One MSR's saved value.
public struct SavedMSR: Codable, Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64
    public init(index: UInt32, value: UInt64) { self.index = index; self.value = value }
}

/// One ONE_REG register's saved value (ids from KVM_GET_REG_LIST).
public struct SavedRegister: Codable, Sendable, Equatable {
    public var id: UInt64
    public var value: UInt64
    public init(id: UInt64, value: UInt64) { self.id = id; self.value = value }
}

/// The saved TSC rate differs from the target vCPU's and KVM cannot scale it
/// (no KVM_CAP_TSC_CONTROL): the guest's TSC would run at another speed.
public struct TSCFrequencyMismatch: Error, Sendable, Equatable, CustomStringConvertible {
    public let savedKHz: UInt32
    public let hostKHz: UInt32
    public var description: String {
        "the snapshot's TSC runs at \(savedKHz) kHz, this host's at \(hostKHz) kHz, and KVM cannot scale it (no KVM_CAP_TSC_CONTROL)"
    }
}

/// A vCPU's state as KVM holds it.
public struct VCPUSnapshot: Codable, Sendable, Equatable {
    public var vcpuID: UInt32
    public var mpState: UInt32
    /// `struct kvm_regs`.
    public var registers: [UInt8]
    public var specialRegisters: SpecialRegisterImage
    /// The XSAVE image (`VCPU.xsaveSize` bytes).
    public var xsave: [UInt8]
    public var extendedControlRegisters: [ExtendedControlRegister]
    public var debugRegisters: DebugRegisters
    /// `struct kvm_lapic_state` (1 KiB); nil in a VM without an in-kernel
    /// irqchip (no LAPIC to save).
    public var localAPIC: [UInt8]?
    /// KVM_GET_TSC_KHZ; nil where the host cannot say.
    public var tscKHz: UInt32?
    public var cpuid: [CPUIDEntry]
    /// In restore order (IA32_TSC_DEADLINE last).
    public var msrs: [SavedMSR]
    /// Asked for but refused by KVM_GET_MSRS on the capturing host.
    public var refusedMSRs: [UInt32]
    /// Every register KVM_GET_REG_LIST listed, through ONE_REG.
    public var oneRegisters: [SavedRegister]
    public var events: VCPUEvents

    /// KVM_GET_MSRS takes fewer than 256 entries per call (MAX_IO_MSRS).
    static let msrBatch = 200

    /// The general registers decoded.
    public func generalRegisters() throws(KVMError) -> Registers {
        Registers(try RawImage.load(kvm_regs.self, from: registers, "KVM_SET_REGS"))
    }

    /// Reads every part of `vcpu`'s state (order at the top of this file).
    /// The vCPU must be stopped at a consistent point (not inside an exit).
    public static func capture(_ vcpu: VCPU, msrIndices: [UInt32]) throws(KVMError) -> VCPUSnapshot {
        let mpState = try vcpu.mpState()
        let registers = RawImage.bytes(of: try vcpu.registers().raw)
        let specialRegisters = try vcpu.specialRegisterImage()
        let xsave = try vcpu.xsave().bytes
        let xcrs = try vcpu.extendedControlRegisters()
        let debugRegisters = try vcpu.debugRegisters()
        let localAPIC: [UInt8]?
        do {
            localAPIC = try vcpu.localAPIC().bytes
        } catch where error.errno == ENXIO || error.errno == EINVAL {
            // KVM answers EINVAL when the vCPU has no in-kernel LAPIC
            // (arch/x86/kvm/x86.c: `if (!lapic_in_kernel(vcpu)) goto out` with -EINVAL).
            localAPIC = nil
        }
        let tscKHz = try? vcpu.tscKHz()
        let cpuid = try vcpu.cpuid()
        let (msrs, refused) = try captureMSRs(vcpu, SaveableMSRs.restoreOrder(msrIndices))
        var oneRegisters: [SavedRegister] = []
        for id in try vcpu.registerList() {
            oneRegisters.append(SavedRegister(id: id.rawValue, value: try vcpu.readRegister(id)))
        }
        let events = try vcpu.events()
        return VCPUSnapshot(vcpuID: vcpu.id, mpState: mpState, registers: registers, specialRegisters: specialRegisters,
                            xsave: xsave, extendedControlRegisters: xcrs, debugRegisters: debugRegisters,
                            localAPIC: localAPIC, tscKHz: tscKHz, cpuid: cpuid, msrs: msrs, refusedMSRs: refused,
                            oneRegisters: oneRegisters, events: events)
    }

    /// KVM_GET_MSRS in batches; an MSR KVM stops at is recorded and the
    /// batch asked again without it.
    static func captureMSRs(_ vcpu: VCPU, _ indices: [UInt32]) throws(KVMError) -> ([SavedMSR], [UInt32]) {
        var saved: [SavedMSR] = []
        var refused: [UInt32] = []
        var start = 0
        while start < indices.count {
            var batch = Array(indices[start..<min(start + msrBatch, indices.count)])
            start += batch.count
            while !batch.isEmpty {
                do {
                    let values = try vcpu.readMSRs(batch)
                    saved += zip(batch, values).map { SavedMSR(index: $0, value: $1) }
                    batch = []
                } catch let .partialMSRAccess(_, processed, _, failedIndex) {
                    refused.append(failedIndex)
                    batch.remove(at: processed)
                }
            }
        }
        return (saved, refused)
    }

    /// Writes this state into `vcpu` (order at the top of this file). A TSC
    /// rate KVM cannot match throws `.tscFrequencyMismatch` unless
    /// `acceptTSCFrequencyChange`, in which case it is returned as a warning.
    /// Nothing is written when a check fails.
    @discardableResult
    public func restore(to vcpu: VCPU, acceptTSCFrequencyChange: Bool = false) throws(KVMError) -> TSCFrequencyMismatch? {
        // 0. checks before any change
        let regs = try RawImage.load(kvm_regs.self, from: registers, "KVM_SET_REGS")
        guard xsave.count == vcpu.xsaveSize else {
            throw .invalidArgument(request: "KVM_SET_XSAVE", reason: "the state's XSAVE image has \(xsave.count) bytes, this host's \(vcpu.xsaveSize)")
        }
        if let localAPIC, localAPIC.count != LocalAPICState.size {
            throw .invalidArgument(request: "KVM_SET_LAPIC", reason: "\(localAPIC.count) bytes, the register page has \(LocalAPICState.size)")
        }
        if specialRegisters.format == .sregs2, !vcpu.hasSREGS2 {
            throw .invalidArgument(request: "KVM_SET_SREGS2", reason: "the state has SREGS2 (with PDPTRs) and this host lacks KVM_CAP_SREGS2")
        }
        _ = try RawImage.load(kvm_vcpu_events.self, from: events.bytes, "KVM_SET_VCPU_EVENTS")
        for saved in msrs where SaveableMSRs.readOnly.contains(saved.index) {
            let here = try vcpu.readMSR(saved.index)
            guard here == saved.value else {
                throw .invalidArgument(request: "KVM_SET_MSRS", reason: "read-only MSR 0x\(String(saved.index, radix: 16)) is 0x\(String(here, radix: 16)) here, the state has 0x\(String(saved.value, radix: 16))")
            }
        }
        let mismatch = try tscFrequencyCheck(vcpu)
        if let mismatch, !acceptTSCFrequencyChange {
            throw .tscFrequencyMismatch(savedKHz: mismatch.savedKHz, hostKHz: mismatch.hostKHz)
        }

        // 1.
        try vcpu.setCPUID(cpuid)
        try vcpu.setMPState(mpState)
        // 2.
        try vcpu.setRegisters(Registers(regs))
        try vcpu.setSpecialRegisterImage(specialRegisters)
        try vcpu.setXSAVE(XSAVEState(bytes: xsave))
        try vcpu.setExtendedControlRegisters(extendedControlRegisters)
        try vcpu.setDebugRegisters(debugRegisters)
        // 3.
        if let localAPIC { try vcpu.setLocalAPIC(LocalAPICState(bytes: localAPIC)) }
        // 4. An MSR that already has its saved value on the fresh vCPU is not
        // written: KVM refuses some host writes of a default in some VM
        // configurations (MSR_KVM_ASYNC_PF_INT without an in-kernel LAPIC),
        // and writing the same value changes nothing. The TSC is always
        // written (it runs), and so everything ordered after it.
        let values = Dictionary(msrs.map { ($0.index, $0.value) }, uniquingKeysWith: { _, last in last })
        let writable = msrs.map(\.index).filter { !SaveableMSRs.readOnly.contains($0) }
        var unchanged = Set<UInt32>()
        for index in writable where index != Self.tscMSR {
            if let here = try? vcpu.readMSR(index), here == values[index] { unchanged.insert(index) }
        }
        let ordered = SaveableMSRs.restoreOrder(writable.filter { !unchanged.contains($0) })
        for start in stride(from: 0, to: ordered.count, by: Self.msrBatch) {
            let batch = ordered[start..<min(start + Self.msrBatch, ordered.count)]
            try vcpu.writeMSRs(batch.map { (index: $0, value: values[$0] ?? 0) })
        }
        for register in oneRegisters {
            try vcpu.writeRegister(X86RegisterID(rawValue: register.id), value: register.value)
        }
        // 5.
        try vcpu.setEvents(events)
        return mismatch
    }

    /// IA32_TSC: always restored (never "unchanged").
    static let tscMSR: UInt32 = 0x10

    /// Moves the saved IA32_TSC on by `ticks` (the time a migrated guest was
    /// away); false when the state has no IA32_TSC to move.
    public mutating func advanceTSC(by ticks: UInt64) -> Bool {
        guard let i = msrs.firstIndex(where: { $0.index == Self.tscMSR }) else { return false }
        msrs[i].value &+= ticks
        return true
    }

    /// Scales the TSC where KVM can (KVM_SET_TSC_KHZ); otherwise the mismatch.
    /// Rates within 250 ppm are the same clock calibrated twice (Firecracker's tolerance).
    private func tscFrequencyCheck(_ vcpu: VCPU) throws(KVMError) -> TSCFrequencyMismatch? {
        guard let saved = tscKHz, let host = try? vcpu.tscKHz() else { return nil }
        let difference = saved > host ? saved - host : host - saved
        guard UInt64(difference) * 4000 > UInt64(saved) else { return nil }
        if vcpu.canSetTSCFrequency {
            try vcpu.setTSCKHz(saved)
            return nil
        }
        return TSCFrequencyMismatch(savedKHz: saved, hostKHz: host)
    }
}
