// KVM: the VM's kvmclock base (KVM_GET_CLOCK / KVM_SET_CLOCK): what a VMM
// saves when the VM stops and puts back when it runs again, so that the
// guest's kvmclock does not jump over the stopped time (QEMU's kvmclock
// vm-state handler does the same).
internal import CKVM

/// `struct kvm_clock_data`.
public struct KVMClockData: Codable, Sendable, Equatable {
    /// `KVM_CLOCK_TSC_STABLE` (2): the clock is based on a stable TSC.
    public static let tscStable: UInt32 = 2
    /// `KVM_CLOCK_REALTIME` (4): `realtime` is valid.
    public static let realtimeValid: UInt32 = 4
    /// `KVM_CLOCK_HOST_TSC` (8): `hostTSC` is valid.
    public static let hostTSCValid: UInt32 = 8

    /// kvmclock nanoseconds.
    public var clock: UInt64
    public var flags: UInt32
    /// Host CLOCK_REALTIME at `clock`, when `flags` has `realtimeValid`.
    public var realtime: UInt64
    /// Host TSC at `clock`, when `flags` has `hostTSCValid`.
    public var hostTSC: UInt64

    public init(clock: UInt64, flags: UInt32 = 0, realtime: UInt64 = 0, hostTSC: UInt64 = 0) {
        self.clock = clock; self.flags = flags; self.realtime = realtime; self.hostTSC = hostTSC
    }
}

extension VirtualMachine {
    /// KVM_GET_CLOCK.
    public func clock() throws(KVMError) -> KVMClockData {
        var raw = kvm_clock_data()
        _ = try Syscall.ioctl(fd, CKVM_GET_CLOCK, &raw, "KVM_GET_CLOCK")
        return KVMClockData(clock: raw.clock, flags: raw.flags, realtime: raw.realtime, hostTSC: raw.host_tsc)
    }

    /// KVM_SET_CLOCK. Only `clock` is used unless `flags` asks for more
    /// (`realtimeValid` makes KVM advance the clock by the realtime elapsed since).
    public func setClock(_ data: KVMClockData) throws(KVMError) {
        var raw = kvm_clock_data()
        raw.clock = data.clock
        raw.flags = data.flags & KVMClockData.realtimeValid
        raw.realtime = data.realtime
        _ = try Syscall.ioctl(fd, CKVM_SET_CLOCK, &raw, "KVM_SET_CLOCK")
    }
}
