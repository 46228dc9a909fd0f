// KVM: the VM-wide KVM state as a value: both 8259 PICs and the IOAPIC
// (KVM_GET/SET_IRQCHIP chips 0, 1, 2), the 8254 PIT (KVM_GET/SET_PIT2) and
// the kvmclock base (KVM_GET/SET_CLOCK).
//
// Restore order (Firecracker vm.rs restore_state): PIT, clock, then the
// irqchips; vCPUs after the VM (their LAPICs route through the irqchip).
// What does not survive exactly: a PIT channel's `countLoadTime` is the host
// time of the last reload, and KVM_SET_PIT2 reloads every channel at "now";
// the clock moves on by the time between capture and restore unless the
// restore asks KVM to advance it by the realtime elapsed (KVM_CLOCK_REALTIME,
// as QEMU does for migration).
internal import CKVM
import Glibc

/// The in-kernel IOAPIC (`struct kvm_ioapic_state`).
public struct IOAPICState: Codable, Sendable, Equatable {
    public static let pinCount = Int(CKVM_IOAPIC_NUM_PINS)

    public var baseAddress: UInt64
    public var registerSelect: UInt32
    public var id: UInt32
    public var irr: UInt32
    /// The 24 redirection entries, 64 bits each as the IOAPIC holds them.
    public var redirectionTable: [UInt64]

    public init(baseAddress: UInt64 = 0xFEC0_0000, registerSelect: UInt32 = 0, id: UInt32 = 0, irr: UInt32 = 0,
                redirectionTable: [UInt64] = Array(repeating: 1 << 16, count: IOAPICState.pinCount)) {
        self.baseAddress = baseAddress; self.registerSelect = registerSelect; self.id = id; self.irr = irr
        self.redirectionTable = redirectionTable
    }

    init(_ raw: kvm_ioapic_state) {
        var copy = raw
        self.init(baseAddress: raw.base_address, registerSelect: raw.ioregsel, id: raw.id, irr: raw.irr,
                  redirectionTable: (0..<Self.pinCount).map { ckvm_ioapic_redirection(&copy, UInt32($0)) })
    }

    func raw() throws(KVMError) -> kvm_ioapic_state {
        guard redirectionTable.count == Self.pinCount else {
            throw .invalidArgument(request: "KVM_SET_IRQCHIP", reason: "\(redirectionTable.count) redirection entries, the IOAPIC has \(Self.pinCount)")
        }
        var r = kvm_ioapic_state()
        r.base_address = baseAddress; r.ioregsel = registerSelect; r.id = id; r.irr = irr
        for (pin, bits) in redirectionTable.enumerated() { ckvm_ioapic_set_redirection(&r, UInt32(pin), bits) }
        return r
    }
}

extension VirtualMachine {
    /// KVM_IRQCHIP_IOAPIC, the `chip_id` of the IOAPIC.
    static let ioapicChip: UInt32 = 2

    /// KVM_GET_IRQCHIP for the IOAPIC.
    public func ioapic() throws(KVMError) -> IOAPICState {
        var raw = kvm_irqchip()
        raw.chip_id = Self.ioapicChip
        _ = try Syscall.ioctl(fd, CKVM_GET_IRQCHIP, &raw, "KVM_GET_IRQCHIP(IOAPIC)")
        return IOAPICState(ckvm_irqchip_ioapic(&raw))
    }

    /// KVM_SET_IRQCHIP for the IOAPIC.
    public func setIOAPIC(_ state: IOAPICState) throws(KVMError) {
        var raw = kvm_irqchip()
        raw.chip_id = Self.ioapicChip
        ckvm_irqchip_set_ioapic(&raw, try state.raw())
        _ = try Syscall.ioctl(fd, CKVM_SET_IRQCHIP, &raw, "KVM_SET_IRQCHIP(IOAPIC)")
    }
}

/// The in-kernel interrupt controllers of a VM created with KVM_CREATE_IRQCHIP.
public struct IRQChipSnapshot: Codable, Sendable, Equatable {
    public var masterPIC: PICState
    public var slavePIC: PICState
    public var ioapic: IOAPICState
}

/// A VM's KVM-held state (not its memory, devices or vCPUs).
public struct VMSnapshot: Codable, Sendable, Equatable {
    /// nil for a VM without KVM_CREATE_IRQCHIP.
    public var irqchip: IRQChipSnapshot?
    /// nil for a VM without KVM_CREATE_PIT2.
    public var pit: PITState?
    public var clock: KVMClockData

    /// Reads the VM's state; a VM without an in-kernel irqchip or PIT (KVM
    /// answers ENXIO) has none to save.
    public static func capture(_ vm: VirtualMachine) throws(KVMError) -> VMSnapshot {
        let pit = try absentAsNil { () throws(KVMError) in try vm.pitState() }
        let clock = try vm.clock()
        let irqchip = try absentAsNil { () throws(KVMError) in
            IRQChipSnapshot(masterPIC: try vm.pic(.master), slavePIC: try vm.pic(.slave), ioapic: try vm.ioapic())
        }
        return VMSnapshot(irqchip: irqchip, pit: pit, clock: clock)
    }

    /// Writes the state into `vm` (PIT, clock, irqchips). With
    /// `advanceClockByElapsedRealtime`, where the capture had KVM_CLOCK_REALTIME
    /// and this host's KVM_CAP_ADJUST_CLOCK offers it, KVM moves the clock on
    /// by the host realtime elapsed since the capture (migration); otherwise
    /// the guest's clock resumes where it stopped (snapshot).
    public func restore(to vm: VirtualMachine, advanceClockByElapsedRealtime: Bool = false) throws(KVMError) {
        if let pit { try vm.setPITState(pit) }
        var clock = self.clock
        let hostFlags = UInt32(bitPattern: try vm.check(.adjustClock))
        let realtime = advanceClockByElapsedRealtime && clock.flags & KVMClockData.realtimeValid != 0
            && hostFlags & KVMClockData.realtimeValid != 0
        clock.flags = realtime ? KVMClockData.realtimeValid : 0
        try vm.setClock(clock)
        if let irqchip {
            try vm.setPIC(.master, irqchip.masterPIC)
            try vm.setPIC(.slave, irqchip.slavePIC)
            try vm.setIOAPIC(irqchip.ioapic)
        }
    }

    /// ENXIO from a GET means the device was never created.
    private static func absentAsNil<T>(_ body: () throws(KVMError) -> T) throws(KVMError) -> T? {
        do {
            return try body()
        } catch where error.errno == ENXIO {
            return nil
        }
    }
}
