// KVM: the state of KVM's in-kernel 8259 PICs, 8254 PIT and local APICs as
// Swift values, read and written with KVM_GET/SET_IRQCHIP, KVM_GET/SET_PIT2
// and KVM_GET/SET_LAPIC. Firmware-style setup (the BIOS environment) and a
// system reset program these devices directly instead of through guest I/O.
internal import CKVM
import Glibc

/// One 8259 PIC as KVM keeps it (`struct kvm_pic_state`).
public struct PICState: Codable, Sendable, Equatable {
    public var lastIRR: UInt8 = 0
    public var irr: UInt8 = 0
    public var imr: UInt8 = 0
    public var isr: UInt8 = 0
    public var priorityAdd: UInt8 = 0
    public var irqBase: UInt8 = 0
    public var readRegisterSelect: UInt8 = 0
    public var poll: UInt8 = 0
    public var specialMask: UInt8 = 0
    public var initState: UInt8 = 0
    public var autoEOI: UInt8 = 0
    public var rotateOnAutoEOI: UInt8 = 0
    public var specialFullyNestedMode: UInt8 = 0
    public var init4: UInt8 = 0
    public var elcr: UInt8 = 0
    public var elcrMask: UInt8 = 0

    public init() {}

    init(_ raw: kvm_pic_state) {
        lastIRR = raw.last_irr; irr = raw.irr; imr = raw.imr; isr = raw.isr
        priorityAdd = raw.priority_add; irqBase = raw.irq_base
        readRegisterSelect = raw.read_reg_select; poll = raw.poll; specialMask = raw.special_mask
        initState = raw.init_state; autoEOI = raw.auto_eoi; rotateOnAutoEOI = raw.rotate_on_auto_eoi
        specialFullyNestedMode = raw.special_fully_nested_mode; init4 = raw.init4
        elcr = raw.elcr; elcrMask = raw.elcr_mask
    }

    var raw: kvm_pic_state {
        kvm_pic_state(last_irr: lastIRR, irr: irr, imr: imr, isr: isr, priority_add: priorityAdd,
                      irq_base: irqBase, read_reg_select: readRegisterSelect, poll: poll,
                      special_mask: specialMask, init_state: initState, auto_eoi: autoEOI,
                      rotate_on_auto_eoi: rotateOnAutoEOI, special_fully_nested_mode: specialFullyNestedMode,
                      init4: init4, elcr: elcr, elcr_mask: elcrMask)
    }
}

/// Which PIC of the cascade (the `chip_id` of `struct kvm_irqchip`).
public enum PICChip: UInt32, Sendable {
    case master = 0
    case slave = 1
}

/// One 8254 channel as KVM keeps it (`struct kvm_pit_channel_state`).
public struct PITChannelState: Codable, Sendable, Equatable {
    /// The reload value; 65536 stands for a programmed 0.
    public var count: UInt32 = 0
    public var latchedCount: UInt16 = 0
    public var countLatched: UInt8 = 0
    public var statusLatched: UInt8 = 0
    public var status: UInt8 = 0
    public var readState: UInt8 = 0
    public var writeState: UInt8 = 0
    public var writeLatch: UInt8 = 0
    public var rwMode: UInt8 = 0
    public var mode: UInt8 = 0
    public var bcd: UInt8 = 0
    public var gate: UInt8 = 0
    public var countLoadTime: Int64 = 0

    public init() {}

    init(_ raw: kvm_pit_channel_state) {
        count = raw.count; latchedCount = raw.latched_count; countLatched = raw.count_latched
        statusLatched = raw.status_latched; status = raw.status; readState = raw.read_state
        writeState = raw.write_state; writeLatch = raw.write_latch; rwMode = raw.rw_mode
        mode = raw.mode; bcd = raw.bcd; gate = raw.gate; countLoadTime = raw.count_load_time
    }

    var raw: kvm_pit_channel_state {
        kvm_pit_channel_state(count: count, latched_count: latchedCount, count_latched: countLatched,
                              status_latched: statusLatched, status: status, read_state: readState,
                              write_state: writeState, write_latch: writeLatch, rw_mode: rwMode,
                              mode: mode, bcd: bcd, gate: gate, count_load_time: countLoadTime)
    }
}

/// The in-kernel PIT (`struct kvm_pit_state2`).
public struct PITState: Codable, Sendable, Equatable {
    public var channels: [PITChannelState]
    public var flags: UInt32

    public init(channels: [PITChannelState], flags: UInt32) {
        self.channels = channels
        self.flags = flags
    }
}

extension VirtualMachine {
    /// KVM_GET_IRQCHIP for one of the two PICs.
    public func pic(_ chip: PICChip) throws(KVMError) -> PICState {
        var raw = kvm_irqchip()
        raw.chip_id = chip.rawValue
        _ = try Syscall.ioctl(fd, CKVM_GET_IRQCHIP, &raw, "KVM_GET_IRQCHIP")
        return PICState(ckvm_irqchip_pic(&raw))
    }

    /// KVM_SET_IRQCHIP for one of the two PICs.
    public func setPIC(_ chip: PICChip, _ state: PICState) throws(KVMError) {
        var raw = kvm_irqchip()
        raw.chip_id = chip.rawValue
        ckvm_irqchip_set_pic(&raw, state.raw)
        _ = try Syscall.ioctl(fd, CKVM_SET_IRQCHIP, &raw, "KVM_SET_IRQCHIP")
    }

    /// KVM_GET_PIT2.
    public func pitState() throws(KVMError) -> PITState {
        var raw = kvm_pit_state2()
        _ = try Syscall.ioctl(fd, CKVM_GET_PIT2, &raw, "KVM_GET_PIT2")
        let channels = [raw.channels.0, raw.channels.1, raw.channels.2].map(PITChannelState.init)
        return PITState(channels: channels, flags: raw.flags)
    }

    /// KVM_SET_PIT2: KVM reloads every channel's count (restarting channel 0's timer).
    public func setPITState(_ state: PITState) throws(KVMError) {
        guard state.channels.count == 3 else {
            throw .invalidArgument(request: "KVM_SET_PIT2", reason: "\(state.channels.count) channels, the 8254 has 3")
        }
        var raw = kvm_pit_state2()
        raw.channels = (state.channels[0].raw, state.channels[1].raw, state.channels[2].raw)
        raw.flags = state.flags
        _ = try Syscall.ioctl(fd, CKVM_SET_PIT2, &raw, "KVM_SET_PIT2")
    }
}

/// A local APIC's register page (`struct kvm_lapic_state`, 1 KiB: register
/// at offset `o` is the 32-bit word at `o`, as in the xAPIC MMIO page).
public struct LocalAPICState: Codable, Sendable, Equatable {
    public static let size = 1024
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// The 32-bit register at `offset` (0 when out of range).
    public func register(_ offset: Int) -> UInt32 {
        guard offset >= 0, offset + 4 <= bytes.count else { return 0 }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    /// Sets the 32-bit register at `offset` (ignored when out of range).
    public mutating func setRegister(_ offset: Int, _ value: UInt32) {
        guard offset >= 0, offset + 4 <= bytes.count else { return }
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }
}

extension VCPU {
    /// KVM_GET_LAPIC.
    public func localAPIC() throws(KVMError) -> LocalAPICState {
        var raw = kvm_lapic_state()
        _ = try Syscall.ioctl(fd, CKVM_GET_LAPIC, &raw, "KVM_GET_LAPIC")
        let bytes = withUnsafeBytes(of: &raw.regs) { Array($0) }
        return LocalAPICState(bytes: bytes)
    }

    /// KVM_SET_LAPIC.
    public func setLocalAPIC(_ state: LocalAPICState) throws(KVMError) {
        guard state.bytes.count == LocalAPICState.size else {
            throw .invalidArgument(request: "KVM_SET_LAPIC", reason: "\(state.bytes.count) bytes, the register page has \(LocalAPICState.size)")
        }
        var raw = kvm_lapic_state()
        withUnsafeMutableBytes(of: &raw.regs) { target in
            for (i, byte) in state.bytes.enumerated() { target[i] = byte }
        }
        _ = try Syscall.ioctl(fd, CKVM_SET_LAPIC, &raw, "KVM_SET_LAPIC")
    }
}
