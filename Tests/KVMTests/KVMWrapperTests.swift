// KVMTests: every wrapper of the KVM layer against the real /dev/kvm.
// Each test runs when /dev/kvm is usable and is reported as skipped otherwise.
import KVMABI
import DeflectTestSupport
import Foundation
import Glibc
import Testing
@testable import KVM

private let kvmUsable = KVMAvailability.usable

/// CPUID.(7,0):ECX.CET_SS as KVM offers it.
private let hostHasShadowStacks: Bool = {
    guard let entries = try? KVMSystem().supportedCPUID() else { return false }
    return entries.contains { $0.function == 7 && $0.index == 0 && $0.ecx & (1 << 7) != 0 }
}()

/// A small VM with 2 MiB of RAM at 0 and one vCPU.
private func makeVM() throws -> (KVMSystem, VirtualMachine, GuestMemory, VCPU) {
    let system = try KVMSystem()
    let vm = try system.createVM()
    let memory = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 2 << 20)
    let vcpu = try vm.createVCPU(id: 0)
    return (system, vm, memory, vcpu)
}

/// Puts `code` at 0x1000 and points a real-mode vCPU at it.
private func startRealMode(_ vcpu: VCPU, _ memory: GuestMemory, code: [UInt8]) throws {
    try startRealMode(vcpu, memory, code: code, at: 0x1000)
}

/// Puts `code` at `address` (below 64 KiB) and points a real-mode vCPU at it
/// with every segment at 0.
func startRealMode(_ vcpu: VCPU, _ memory: GuestMemory, code: [UInt8], at address: UInt64) throws {
    try memory.write(code, at: GuestPhysicalAddress(address))
    var sregs = try vcpu.specialRegisters()
    for keyPath in [\SpecialRegisters.cs, \.ds, \.es, \.fs, \.gs, \.ss] {
        sregs[keyPath: keyPath].base = 0
        sregs[keyPath: keyPath].selector = 0
    }
    try vcpu.setSpecialRegisters(sregs)
    var regs = Registers()
    regs.rip = address
    regs.rflags = 2
    try vcpu.setRegisters(regs)
}

@Suite("KVM system", .enabled(if: kvmUsable, Comment(rawValue: KVMAvailability.skipComment)))
struct KVMSystemTests {
    @Test func apiVersionAndMapSize() throws {
        let system = try KVMSystem()
        #expect(try system.apiVersion() == 12)
        #expect(system.vcpuMapSize >= 4096)
    }

    @Test func capabilitiesAnswer() throws {
        let system = try KVMSystem()
        #expect(try system.check(.userMemory) > 0)
        #expect(try system.check(.immediateExit) > 0)
        #expect(try system.check(.maxVCPUs) >= 1)
        // An unknown capability number answers 0, not an error.
        #expect(try system.check(Capability(rawValue: 100_000)) == 0)
    }

    @Test func supportedCPUIDHasVendorLeaf() throws {
        let entries = try KVMSystem().supportedCPUID()
        #expect(entries.contains { $0.function == 0 && $0.eax >= 1 })
        #expect(entries.contains { $0.function == 1 })
    }

    @Test func msrIndexListsAreNonEmpty() throws {
        let system = try KVMSystem()
        let msrs = try system.msrIndexList()
        #expect(msrs.contains(0x174))   // MSR_IA32_SYSENTER_CS is always saved
        #expect(Set(msrs).count == msrs.count)
        _ = try system.featureMSRIndexList()
    }

    @Test func missingDeviceIsANamedError() {
        #expect(throws: KVMError.open(path: "/nonexistent/kvm", errno: ENOENT)) {
            _ = try KVMSystem(path: "/nonexistent/kvm")
        }
        let error = KVMError.open(path: "/dev/kvm", errno: EACCES)
        #expect(error.description.contains("EACCES"))
    }
}

@Suite("KVM VM and vCPU", .enabled(if: kvmUsable, Comment(rawValue: KVMAvailability.skipComment)))
struct KVMVCPUTests {
    @Test func guestMemoryIsBoundsChecked() throws {
        let (_, _, memory, _) = try makeVM()
        try memory.store(UInt32(0xDEADBEEF), at: GuestPhysicalAddress(0x1FF_FFC))
        #expect(try memory.load(UInt32.self, at: GuestPhysicalAddress(0x1FF_FFC)) == 0xDEADBEEF)
        #expect(throws: GuestMemoryError.self) { try memory.store(UInt64(1), at: GuestPhysicalAddress(0x1FF_FFC)) }
        #expect(throws: GuestMemoryError.self) { _ = try memory.read(at: GuestPhysicalAddress(UInt64.max - 1), count: 4) }
        #expect(!memory.contains(GuestPhysicalAddress(2 << 20)))
    }

    @Test func memoryRegionMustBeAligned() throws {
        let vm = try KVMSystem().createVM()
        #expect(throws: KVMError.self) { _ = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0x10), size: 4096) }
        #expect(throws: KVMError.self) { _ = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 100) }
    }

    @Test func duplicateVCPUIdIsRefused() throws {
        let (_, vm, _, _) = try makeVM()
        #expect(throws: KVMError.self) { _ = try vm.createVCPU(id: 0) }
    }

    @Test func registersRoundTrip() throws {
        let (_, _, _, vcpu) = try makeVM()
        var regs = try vcpu.registers()
        regs.rax = 0x1122_3344_5566_7788; regs.r15 = 42; regs.rip = 0x1234; regs.rflags = 0x202
        try vcpu.setRegisters(regs)
        #expect(try vcpu.registers() == regs)
    }

    @Test func specialRegistersRoundTrip() throws {
        let (_, _, _, vcpu) = try makeVM()
        var sregs = try vcpu.specialRegisters()
        sregs.cs.base = 0x10000; sregs.cs.selector = 0x1000
        sregs.gdt = DescriptorTableRegister(base: 0x500, limit: 0x17)
        try vcpu.setSpecialRegisters(sregs)
        let back = try vcpu.specialRegisters()
        #expect(back.cs.base == 0x10000)
        #expect(back.cs.selector == 0x1000)
        #expect(back.gdt == DescriptorTableRegister(base: 0x500, limit: 0x17))
    }

    @Test func fpuXsaveAndXcrsRoundTrip() throws {
        let (_, vm, _, vcpu) = try makeVM()
        var fpu = try vcpu.fpu()
        #expect(fpu.bytes.count == 416)
        #expect(fpu.fcw == 0x37F)       // x87 reset value
        fpu.fcw = 0x27F                 // 53-bit precision
        try vcpu.setFPU(fpu)
        #expect(try vcpu.fpu().fcw == 0x27F)
        #expect(try vcpu.fpu() == fpu)
        #expect(try vcpu.xsave().mxcsr == 0x1F80)   // SSE reset value (KVM_GET_FPU does not carry MXCSR)
        var short = fpu
        short.bytes.removeLast()
        #expect(throws: KVMError.invalidArgument(request: "KVM_SET_FPU", reason: "image must be 416 bytes, got 415")) {
            try vcpu.setFPU(short)
        }

        // The image is as large as KVM_CAP_XSAVE2 says (4096 on this host), never smaller than 4 KiB.
        let xsave2 = Int(try vm.check(.xsave2))
        #expect(vcpu.xsaveSize == max(xsave2, 4096))
        let xsave = try vcpu.xsave()
        #expect(xsave.bytes.count == vcpu.xsaveSize)
        try vcpu.setXSAVE(xsave)
        #expect(try vcpu.xsave() == xsave)
        #expect(throws: KVMError.invalidArgument(request: "KVM_SET_XSAVE", reason: "image must be \(vcpu.xsaveSize) bytes, got 3")) {
            try vcpu.setXSAVE(XSAVEState(bytes: [1, 2, 3]))
        }

        let xcrs = try vcpu.extendedControlRegisters()
        #expect(xcrs.first { $0.index == 0 }.map { $0.value & 1 } == 1)  // XCR0.x87 is always set
        try vcpu.setExtendedControlRegisters(xcrs)
        #expect(try vcpu.extendedControlRegisters() == xcrs)
    }

    @Test func cpuidRoundTrip() throws {
        let (system, _, _, vcpu) = try makeVM()
        var entries = try system.supportedCPUID()
        if let i = entries.firstIndex(where: { $0.function == 1 }) { entries[i].ebx = (entries[i].ebx & 0x00FF_FFFF) | (7 << 24) }
        try vcpu.setCPUID(entries)
        let back = try vcpu.cpuid()
        // KVM_GET_CPUID2 returns the table KVM keeps, not the one it was given:
        // KVM on this host (6.18, kvm_pvm) drops the AMX tile leaves 0x1D and
        // 0x1E whatever their contents (56 set, 54 back), and it adjusts
        // feature bits at run time (OSXSAVE, APIC). So: nothing KVM returns
        // was invented, and anything missing is one of those leaves.
        let key = { (e: CPUIDEntry) in UInt64(e.function) << 32 | UInt64(e.index) }
        let setKeys = Set(entries.map(key)), backKeys = Set(back.map(key))
        #expect(backKeys.isSubset(of: setKeys))
        #expect(backKeys.count == back.count)
        let dropped = entries.filter { !backKeys.contains(key($0)) }.map(\.function)
        #expect(dropped.allSatisfy { $0 == 0x1D || $0 == 0x1E }, "KVM dropped \(dropped)")
        #expect(back.first { $0.function == 1 }.map { $0.ebx >> 24 } == 7)
    }

    /// More entries than the first KVM_GET_CPUID2 buffer (64) holds: the
    /// wrapper must grow the buffer on E2BIG and return every entry.
    @Test func cpuidLargerThanTheFirstBuffer() throws {
        let (system, _, _, vcpu) = try makeVM()
        let extra = (0..<80).map { CPUIDEntry(function: 0x4000_0100 + UInt32($0), eax: UInt32($0) * 3) }
        let entries = try system.supportedCPUID() + extra
        try vcpu.setCPUID(entries)
        let back = try vcpu.cpuid()
        #expect(back.count > 64)
        for entry in extra { #expect(back.contains(entry)) }
    }

    @Test func msrsRoundTripAndPartialAccessIsAnError() throws {
        let (_, _, _, vcpu) = try makeVM()
        try vcpu.writeMSR(0x174, value: 0x10)          // MSR_IA32_SYSENTER_CS
        #expect(try vcpu.readMSR(0x174) == 0x10)
        try vcpu.writeMSRs([(0x175, 0xFFFF_8000_0000_1000), (0x176, 0xFFFF_8000_0000_2000)])
        #expect(try vcpu.readMSRs([0x174, 0x175, 0x176]) == [0x10, 0xFFFF_8000_0000_1000, 0xFFFF_8000_0000_2000])
        #expect(throws: KVMError.partialMSRAccess(request: "KVM_GET_MSRS", processed: 1, requested: 2, failedIndex: 0xDEAD_BEEF)) {
            _ = try vcpu.readMSRs([0x174, 0xDEAD_BEEF])
        }
    }

    @Test func oneRegMatchesGetMSRsOrNamesTheFailure() throws {
        let (system, _, _, vcpu) = try makeVM()
        try vcpu.writeMSR(0x174, value: 0x23)
        let oneRegWorks = try system.check(.oneReg) > 0
        let read = Result { () throws(KVMError) in try vcpu.readRegister(.msr(0x174)) }
        switch read {
        case let .success(value):
            #expect(value == 0x23)
            try vcpu.writeRegister(.msr(0x174), value: 0x33)
            #expect(try vcpu.readMSR(0x174) == 0x33)
        case let .failure(error):
            // Kernels without x86 ONE_REG: the error must name the request precisely.
            #expect(!oneRegWorks || error.errno == EINVAL || error.errno == ENOENT)
            #expect(error.description.contains("KVM_GET_ONE_REG"))
        }
        // Reserved bits or a wrong size must be refused, never silently accepted.
        let reserved = X86RegisterID(rawValue: X86RegisterID.msr(0x174).rawValue | (1 << 40))
        #expect(reserved.kind == nil)
        #expect(throws: KVMError.self) { _ = try vcpu.readRegister(reserved) }
        let wrongSize = X86RegisterID(rawValue: (X86RegisterID.msr(0x174).rawValue & ~0x00F0_0000_0000_0000) | 0x0020_0000_0000_0000)
        #expect(throws: KVMError.self) { _ = try vcpu.readRegister(wrongSize) }
    }

    /// KVM copies the id's size (here 256 bytes, KVM_REG_SIZE_U2048) through
    /// `addr`: such an id never reaches KVM with an 8-byte value behind it.
    @Test func oneRegRefusesIdsLargerThan64Bits() throws {
        let (_, _, _, vcpu) = try makeVM()
        let large = X86RegisterID(rawValue: (X86RegisterID.msr(0x174).rawValue & ~0x00F0_0000_0000_0000) | 0x0080_0000_0000_0000)
        let reason = "the id's size is 256 bytes; only 8-byte registers are read and written"
        #expect(throws: KVMError.invalidArgument(request: "KVM_GET_ONE_REG(\(large))", reason: reason)) {
            _ = try vcpu.readRegister(large)
        }
        #expect(throws: KVMError.invalidArgument(request: "KVM_SET_ONE_REG(\(large))", reason: reason)) {
            try vcpu.writeRegister(large, value: 1)
        }
    }

    @Test func msrCountBeyondTheRequestIsRefused() {
        #expect(throws: Never.self) { try VCPU.checkMSRCount(2, of: [0x10, 0x174], "KVM_GET_MSRS") }
        #expect(throws: KVMError.partialMSRAccess(request: "KVM_GET_MSRS", processed: 1, requested: 2, failedIndex: 0x174)) {
            try VCPU.checkMSRCount(1, of: [0x10, 0x174], "KVM_GET_MSRS")
        }
        #expect(throws: KVMError.invalidArgument(request: "KVM_GET_MSRS", reason: "KVM reported 3 MSRs processed of 2")) {
            try VCPU.checkMSRCount(3, of: [0x10, 0x174], "KVM_GET_MSRS")
        }
    }

    @Test func enableCapabilityRefusesMoreThanFourArguments() throws {
        let (_, vm, _, vcpu) = try makeVM()
        let error = KVMError.invalidArgument(request: "KVM_ENABLE_CAP(KVM_CAP_HLT)", reason: "5 arguments, at most 4")
        #expect(throws: error) { try vcpu.enable(.hlt, arguments: [1, 2, 3, 4, 5]) }
        #expect(throws: error) { try vm.enable(.hlt, arguments: [1, 2, 3, 4, 5]) }
    }

    @Test func guestSSPEncoding() {
        #expect(X86RegisterID.guestSSP.kind == .kvmDefined(0))
        #expect(X86RegisterID.guestSSP.rawValue == 0x2030_0003_0000_0000)
    }

    @Test(.enabled(if: !hostHasShadowStacks, "the host offers CET shadow stacks: the refusal without CET cannot be seen here"))
    func guestSSPIsRefusedWithoutCET() throws {
        let (_, _, _, vcpu) = try makeVM()
        #expect(throws: KVMError.self) { _ = try vcpu.readRegister(.guestSSP) }
        #expect(!(try vcpu.registerList()).contains(.guestSSP))
    }

    @Test func registerListAnswers() throws {
        let (_, _, _, vcpu) = try makeVM()
        let list = try vcpu.registerList()
        for id in list { #expect(id.kind != nil) }
    }

    @Test func mpStateRoundTrip() throws {
        // Every state but RUNNABLE needs the in-kernel local APIC.
        let system = try KVMSystem()
        let vm = try system.createVM()
        try vm.createIRQChip()
        let vcpu = try vm.createVCPU(id: 0)
        #expect(try vcpu.mpState() == MPState.runnable.rawValue)
        try vcpu.setMPState(MPState.halted.rawValue)
        #expect(try vcpu.mpState() == MPState.halted.rawValue)
        try vcpu.setMPState(MPState.runnable.rawValue)
        #expect(try vcpu.mpState() == MPState.runnable.rawValue)
    }

    @Test func mpStateOtherThanRunnableNeedsTheInKernelAPIC() throws {
        let (_, _, _, vcpu) = try makeVM()
        #expect(throws: KVMError.ioctl(request: "KVM_SET_MP_STATE", errno: EINVAL)) {
            try vcpu.setMPState(MPState.halted.rawValue)
        }
        #expect(try vcpu.mpState() == MPState.runnable.rawValue)
    }

    @Test(.enabled(if: KVMAvailability.supports(.x86MSRFilter), Comment(rawValue: KVMAvailability.missing(.x86MSRFilter))))
    func msrFilterRejectsUndefinedFlags() throws {
        let (_, vm, _, _) = try makeVM()
        // 8 MSRs: KVM reads one whole 64-bit word of bitmap.
        let range = MSRFilterRange(flags: MSRFilterRange.read, base: 0x10, count: 8, bitmap: [0xFF, 0, 0, 0, 0, 0, 0, 0])
        try vm.setMSRFilter(MSRFilter(default: .allow, ranges: [range]))
        #expect(throws: KVMError.ioctl(request: "KVM_X86_SET_MSR_FILTER", errno: EINVAL)) {
            try vm.setMSRFilter(MSRFilter(rawFlags: 1 << 5, ranges: [range]))
        }
        var badRange = range
        badRange.flags = 1 << 4
        #expect(throws: KVMError.ioctl(request: "KVM_X86_SET_MSR_FILTER", errno: EINVAL)) {
            try vm.setMSRFilter(MSRFilter(default: .allow, ranges: [badRange]))
        }
        #expect(throws: KVMError.self) {
            try vm.setMSRFilter(MSRFilter(default: .allow, ranges: Array(repeating: range, count: 17)))
        }
    }

    @Test(.enabled(if: KVMAvailability.supports(.x86MSRFilter), Comment(rawValue: KVMAvailability.missing(.x86MSRFilter))))
    func msrFilterRangeSizesAreCheckedBeforeKVM() throws {
        let (_, vm, _, _) = try makeVM()
        let word = [UInt8](repeating: 0xFF, count: 8)
        let good = MSRFilterRange(flags: MSRFilterRange.read, base: 0x10, count: 64, bitmap: word)
        func reason(_ ranges: [MSRFilterRange]) -> String? {
            let error = #expect(throws: KVMError.self) { try vm.setMSRFilter(MSRFilter(default: .allow, ranges: ranges)) }
            guard case let .invalidArgument(request, reason)? = error, request == "KVM_X86_SET_MSR_FILTER" else { return nil }
            return reason
        }
        let empty = MSRFilterRange(flags: MSRFilterRange.read, base: 0x4000_0000, count: 0, bitmap: [])
        #expect(reason([good, empty])?.hasPrefix("range 1 at MSR 0x40000000 covers 0 MSRs") == true)
        let tooMany = MSRFilterRange(flags: MSRFilterRange.write, base: 0, count: MSRFilter.maxMSRsPerRange + 1, bitmap: [])
        #expect(reason([tooMany])?.hasPrefix("range 0 at MSR 0x0 covers 12289 MSRs") == true)
        #expect(reason(Array(repeating: good, count: 17)) == "17 ranges, at most 16")
        // The limits themselves are accepted by KVM.
        let widest = MSRFilterRange(flags: MSRFilterRange.read, base: 0, count: MSRFilter.maxMSRsPerRange, bitmap: [])
        #expect(widest.bitmap.count == 0x600)
        try vm.setMSRFilter(MSRFilter(default: .allow, ranges: [widest]))
        try vm.setMSRFilter(MSRFilter(default: .deny, ranges: Array(repeating: good, count: 16)))
        // A short bitmap (1 byte for 64 MSRs) is padded, not read past.
        try vm.setMSRFilter(MSRFilter(default: .allow, ranges: [MSRFilterRange(flags: 3, base: 0x10, count: 64, bitmap: [0xFF])]))
    }

    @Test(.enabled(if: KVMAvailability.supports(.x86UserSpaceMSR), Comment(rawValue: KVMAvailability.missing(.x86UserSpaceMSR))))
    func enableCapabilityOnVM() throws {
        let (_, vm, _, _) = try makeVM()
        try vm.enable(.x86UserSpaceMSR, arguments: [7])
        #expect(throws: KVMError.self) { try vm.enable(Capability(rawValue: 100_000)) }
    }

    @Test func runDecodesPortIOAndHalt() throws {
        let (_, _, memory, vcpu) = try makeVM()
        // mov al, 0x5a; out 0x80, al; in al, 0x71; hlt
        try startRealMode(vcpu, memory, code: [0xB0, 0x5A, 0xE6, 0x80, 0xE4, 0x71, 0xF4])
        guard case let .io(out) = try vcpu.run() else { Issue.record("expected an I/O exit"); return }
        #expect(out.direction == .output && out.port == 0x80 && out.size == 1 && out.count == 1)
        #expect(vcpu.ioValue(out) == 0x5A)
        guard case let .io(input) = try vcpu.run() else { Issue.record("expected an I/O exit"); return }
        #expect(input.direction == .input && input.port == 0x71)
        vcpu.setIOValue(input, value: 0x33)
        #expect(try vcpu.run() == .halt)
        #expect(try vcpu.registers().rax & 0xFF == 0x33)
    }

    @Test func kickInterruptsARunningGuest() throws {
        let (_, _, memory, vcpu) = try makeVM()
        try startRealMode(vcpu, memory, code: [0xEB, 0xFE])   // jmp $
        let box = ExitBox()
        let thread = Thread {
            defer { vcpu.kicker.unbind() }
            box.set(Result {
                try vcpu.kicker.bindCurrentThread()
                return try vcpu.run()
            })
        }
        thread.start()
        usleep(200_000)
        let kickedAt = ContinuousClock.now
        #expect(vcpu.kicker.kick() == .signalled)
        var waited = 0
        while box.get() == nil && waited < 500 { usleep(10_000); waited += 1 }
        #expect(try box.get()?.get() == .interrupted)
        #expect(ContinuousClock.now - kickedAt < .seconds(5))
        // A kick before KVM_RUN (immediate_exit) returns at once too.
        #expect(vcpu.kicker.kick() == .notRunning)
        #expect(try vcpu.run() == .interrupted)
        vcpu.clearImmediateExit()
    }
}

@Suite("vCPU kicker", .enabled(if: kvmUsable, Comment(rawValue: KVMAvailability.skipComment)))
struct VCPUKickerTests {
    /// The run page is shared: a kick after the VCPU, VM and system are gone
    /// writes to still-mapped memory (it used to write to an unmapped page).
    @Test func kickerOutlivesItsVCPU() throws {
        let kicker = try { () throws -> VCPUKicker in
            let (_, _, _, vcpu) = try makeVM()
            return vcpu.kicker
        }()
        #expect(kicker.kick() == .notRunning)
        #expect(kicker.kick() == .notRunning)
    }

    /// A thread whose kick signal stays blocked could never be kicked out of
    /// KVM_RUN: binding it must fail, and the unblocking bind must repair it.
    @Test func bindingReportsABlockedKickSignal() throws {
        let (_, _, _, vcpu) = try makeVM()
        let outcome = BindOutcome()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { vcpu.kicker.unbind(); done.signal() }
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, VCPUKicker.signalNumber)
            outcome.blockResult = pthread_sigmask(SIG_BLOCK, &set, nil)
            outcome.checkOnly = Result { () throws(KVMError) in try vcpu.kicker.bindCurrentThread(unblocking: false) }
            outcome.kickWhileUnbound = vcpu.kicker.kick()
            outcome.unblocking = Result { () throws(KVMError) in try vcpu.kicker.bindCurrentThread() }
            var current = sigset_t()
            _ = pthread_sigmask(SIG_BLOCK, nil, &current)
            outcome.blockedAfterBind = sigismember(&current, VCPUKicker.signalNumber) == 1
        }
        thread.start()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(outcome.blockResult == 0)
        guard case let .failure(error)? = outcome.checkOnly else {
            Issue.record("binding a thread with the kick signal blocked must fail, got \(String(describing: outcome.checkOnly))")
            return
        }
        #expect(error == .kickUnavailable("the kick signal (SIGRTMIN+1) is blocked on this thread"))
        #expect(error.description.hasPrefix("vCPU cannot be kicked out of KVM_RUN"))
        #expect(outcome.kickWhileUnbound == .notRunning)
        #expect(throws: Never.self) { try outcome.unblocking?.get() }
        #expect(!outcome.blockedAfterBind)
    }

    @Test func handlerIsInstalled() {
        #expect(VCPUKicker.handlerInstalled)
    }
}

/// What the blocked-signal thread saw, handed to the test after it ended.
private final class BindOutcome: @unchecked Sendable {
    var blockResult: Int32 = -1
    var checkOnly: Result<Void, KVMError>?
    var kickWhileUnbound: VCPUKicker.Outcome?
    var unblocking: Result<Void, KVMError>?
    var blockedAfterBind = true
}

/// Hands a result from a vCPU thread to the test.
private final class ExitBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<VCPUExit, any Error>?
    func set(_ v: Result<VCPUExit, any Error>) { lock.withLock { value = v } }
    func get() -> Result<VCPUExit, any Error>? { lock.withLock { value } }
}

/// KVM copies BITS_TO_LONGS(nmsrs) * 8 bytes of each range's bitmap.
@Test func msrFilterRangeBitmapIsWhatKVMReads() {
    #expect(MSRFilterRange.bitmapByteCount(for: 1) == 8)
    #expect(MSRFilterRange.bitmapByteCount(for: 64) == 8)
    #expect(MSRFilterRange.bitmapByteCount(for: 65) == 16)
    #expect(MSRFilterRange.bitmapByteCount(for: MSRFilter.maxMSRsPerRange) == 0x600)
    let short = MSRFilterRange(flags: MSRFilterRange.read, base: 0x10, count: 8, bitmap: [0xFF])
    #expect(short.bitmap == [0xFF, 0, 0, 0, 0, 0, 0, 0])      // padded with deny bits
    let twoWords = MSRFilterRange(flags: MSRFilterRange.read, base: 0, count: 65, bitmap: [1, 2, 3])
    #expect(twoWords.bitmap == [1, 2, 3] + [UInt8](repeating: 0, count: 13))
    let long = MSRFilterRange(flags: MSRFilterRange.read, base: 0, count: 8, bitmap: Array(1...20))
    #expect(long.bitmap == Array(1...8))
    // A count KVM would refuse does not make the value allocate for it.
    #expect(MSRFilterRange(flags: 1, base: 0, count: .max, bitmap: []).bitmap.count == 0x600)
}
