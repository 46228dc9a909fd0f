// VMM: how far a migrated guest's TSC moves on. The sender records the host's
// CLOCK_REALTIME when it captures the vCPUs; the receiver advances every
// vCPU's TSC by (its CLOCK_REALTIME at the restore − that) × the guest's TSC
// rate, as the kernel's KVM_VCPU_TSC_CTRL documentation describes for
// migration (Documentation/virt/kvm/devices/vcpu.rst), so a guest measuring
// its pause with the TSC sees it. One advance for all vCPUs keeps them in
// step. Two hosts whose clocks are out of step can make the elapsed time
// negative: the TSC never moves backwards, the advance is 0 and the
// shortfall is kept so the receiver can say so.
import Glibc

public struct TSCAdvance: Sendable, Equatable {
    /// Host realtime between the capture and the restore (0 when negative).
    public var elapsedNanoseconds: UInt64
    /// TSC ticks added to each vCPU's saved IA32_TSC.
    public var ticks: UInt64
    /// How far the restoring host's realtime was behind the capture; 0
    /// unless the two clocks are out of step.
    public var clampedNanoseconds: UInt64

    /// The advance for a guest whose TSC runs at `tscKHz`; ticks saturate
    /// rather than overflow for an absurd elapsed time.
    public init(capturedRealtime: UInt64, restoreRealtime: UInt64, tscKHz: UInt32) {
        if restoreRealtime >= capturedRealtime {
            elapsedNanoseconds = restoreRealtime - capturedRealtime
            clampedNanoseconds = 0
        } else {
            elapsedNanoseconds = 0
            clampedNanoseconds = capturedRealtime - restoreRealtime
        }
        // ns × kHz / 10^6 = ticks, in 128 bits.
        let product = elapsedNanoseconds.multipliedFullWidth(by: UInt64(tscKHz))
        let divisor: UInt64 = 1_000_000
        ticks = product.high >= divisor ? .max : divisor.dividingFullWidth(product).quotient
    }

    /// The host's CLOCK_REALTIME in nanoseconds (the clock both hosts share
    /// through NTP, unlike CLOCK_MONOTONIC).
    public static func hostRealtimeNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return UInt64(max(0, now.tv_sec)) * 1_000_000_000 + UInt64(max(0, now.tv_nsec))
    }
}
