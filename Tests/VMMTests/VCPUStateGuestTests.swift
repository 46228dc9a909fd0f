// VMMTests: vCPU register state a guest set, read back through the KVM
// layer's FPU and XSAVE wrappers after the run (long/fpu_state.S).
import DeflectTestSupport
import KVM
import Loader
import Testing
@testable import VMM

@Suite("vCPU state set by a guest", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct VCPUStateGuestTests {
    static let guestMXCSR: UInt32 = 0xBFC0
    static let guestXMM0: UInt128 = 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210
    static let guestXMM15: UInt128 = 0x5555_6666_7777_8888_1111_2222_3333_4444

    /// Runs the guest to its debug-exit write; the vCPU keeps what it set.
    private func runFPUGuest() throws -> VCPU {
        let config = MachineConfiguration(image: try GuestImages.bytes("long/fpu_state.bin"), mode: .long, memoryMiB: 16, timeoutSeconds: 20)
        let machine = try Machine(configuration: config, serialOutput: CaptureSink(), events: EventLog(sink: CollectingEventSink()))
        let report = machine.run()
        try #require(report.outcome == .guestExit(value: 0x3C, status: 121), "\(report.outcome)")
        return try #require(machine.vcpus.first)
    }

    @Test func fpuStateShowsWhatTheGuestLoaded() throws {
        let fpu = try runFPUGuest().fpu()
        // (KVM_GET_FPU does not carry MXCSR; the XSAVE tests check it.)
        #expect(fpu.fcw == 0x37F)
        #expect(fpu.xmm(0) == Self.guestXMM0)
        #expect(fpu.xmm(15) == Self.guestXMM15)
        #expect(fpu.xmm(16) == nil)
    }

    @Test func xsaveImageShowsWhatTheGuestLoaded() throws {
        let vcpu = try runFPUGuest()
        let image = try vcpu.xsave()
        #expect(image.bytes.count == vcpu.xsaveSize)
        #expect(image.mxcsr == Self.guestMXCSR)
        #expect(image.xmm(0) == Self.guestXMM0)
        #expect(image.xmm(15) == Self.guestXMM15)
    }

    /// Get, set a modified image, get: the change is kept, at the XSAVE2 size.
    @Test func xsaveRoundTripKeepsAChange() throws {
        let vcpu = try runFPUGuest()
        var image = try vcpu.xsave()
        let xmm1Offset = 160 + 16
        for i in 0..<16 { image.bytes[xmm1Offset + i] = UInt8(0xA0 + i) }
        withUnsafeBytes(of: UInt32(0x1F80).littleEndian) { image.bytes.replaceSubrange(24..<28, with: $0) }
        try vcpu.setXSAVE(image)
        let back = try vcpu.xsave()
        #expect(back.bytes.count == vcpu.xsaveSize)
        #expect(back.mxcsr == 0x1F80)
        #expect(back.xmm(1) == UInt128(0xAFAE_ADAC_ABAA_A9A8_A7A6_A5A4_A3A2_A1A0))
        #expect(back.xmm(0) == Self.guestXMM0)
        // KVM_GET_FPU sees the same registers.
        #expect(try vcpu.fpu().xmm(1) == back.xmm(1))
    }
}
