// KVM: the vCPU handle: KVM_RUN (decoded into VCPUExit here and only here),
// exit completion, register files, CPUID, MSRs, ONE_REG and MP state.
internal import CKVM
import Glibc
import KVMABI

/// One virtual CPU. A vCPU is driven by one thread at a time; the only part
/// meant for other threads is `kicker`.
public final class VCPU: @unchecked Sendable {
    let fd: CInt
    public let id: UInt32
    /// Shared with `kicker`: unmapped when both are gone.
    private let page: RunPage
    /// Kicks this vCPU out of KVM_RUN from any thread.
    public let kicker: VCPUKicker

    /// Bytes of this vCPU's XSAVE image: KVM_CAP_XSAVE2's answer where the
    /// host has it (large state such as AMX does not fit 4 KiB), else 4096.
    public let xsaveSize: Int
    private let hasXSAVE2: Bool
    /// KVM_CAP_SREGS2 on this VM: special registers go through KVM_GET/SET_SREGS2.
    public let hasSREGS2: Bool
    /// KVM_CAP_TSC_CONTROL: KVM_SET_TSC_KHZ can scale this vCPU's TSC.
    public let canSetTSCFrequency: Bool

    init(fd: CInt, id: UInt32, run: UnsafeMutableRawPointer, runSize: Int, xsave2Size: Int,
         hasSREGS2: Bool, canSetTSCFrequency: Bool) {
        self.fd = fd
        self.id = id
        self.hasXSAVE2 = xsave2Size > 0
        self.hasSREGS2 = hasSREGS2
        self.canSetTSCFrequency = canSetTSCFrequency
        self.xsaveSize = max(xsave2Size, MemoryLayout<kvm_xsave>.size)
        self.page = RunPage(mapping: run, size: runSize)
        self.kicker = VCPUKicker(runPage: page)
    }

    deinit { Syscall.close(fd) }

    private var runPage: UnsafeMutablePointer<kvm_run> { page.pointer }
    private var runSize: Int { page.size }

    // MARK: running

    /// KVM_RUN, and the exit decoded. EINTR (a signal, a kick) is `.interrupted`.
    public func run() throws(KVMError) -> VCPUExit {
        let result = ckvm_ioctl_none(fd, CKVM_RUN)
        if result == -EINTR || result == -EAGAIN { return .interrupted }
        guard result >= 0 else { throw .ioctl(request: "KVM_RUN", errno: -result) }
        let reason = ckvm_run_exit_reason(runPage)
        switch Int32(reason) {
        case KVM_EXIT_IO:
            let io = ckvm_run_io(runPage)
            let size = Int(io.size), count = Int(io.count), offset = Int(io.data_offset)
            guard size == 1 || size == 2 || size == 4, count >= 1,
                  offset >= 0, offset <= runSize, count <= (runSize - offset) / size else {
                throw .malformedExit("I/O exit port 0x\(String(io.port, radix: 16)) size \(size) count \(count) offset \(offset)")
            }
            return .io(IOExit(direction: io.direction == 0 ? .input : .output, port: io.port,
                              size: size, count: count, dataOffset: offset))
        case KVM_EXIT_MMIO:
            let m = ckvm_run_mmio(runPage)
            let length = Int(min(m.len, 8))
            // Only the low `length` bytes of the data field belong to this access.
            let mask: UInt64 = length >= 8 ? .max : (1 << (8 * UInt64(length))) - 1
            return .mmio(MMIOExit(address: m.phys_addr, length: length, isWrite: m.is_write != 0,
                                  data: m.is_write != 0 ? m.data & mask : 0))
        case KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR:
            let m = ckvm_run_msr(runPage)
            let exit = MSRExit(index: m.index, reason: MSRExitReasons(rawValue: m.reason), data: m.data)
            return Int32(reason) == KVM_EXIT_X86_RDMSR ? .readMSR(exit) : .writeMSR(exit)
        case KVM_EXIT_HYPERCALL:
            let h = ckvm_run_hypercall(runPage)
            let a = h.args
            return .hypercall(HypercallExit(number: h.nr, arguments: [a.0, a.1, a.2, a.3, a.4, a.5],
                                            longMode: h.flags & 1 != 0))
        case KVM_EXIT_HLT: return .halt
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_FAIL_ENTRY: return .failEntry(reason: ckvm_run_fail_entry_reason(runPage))
        case KVM_EXIT_INTERNAL_ERROR:
            let e = ckvm_run_internal(runPage)
            let data = withUnsafeBytes(of: e.data) { raw in (0..<Int(e.ndata)).map { raw.load(fromByteOffset: $0 * 8, as: UInt64.self) } }
            return .internalError(InternalErrorExit(suberror: e.suberror, data: data))
        case KVM_EXIT_SYSTEM_EVENT:
            let s = ckvm_run_system_event(runPage)
            return .systemEvent(type: s.type, data: s.ndata > 0 ? s.data0 : 0)
        case KVM_EXIT_DEBUG: return .debug
        case KVM_EXIT_INTR: return .interrupted
        case KVM_EXIT_IRQ_WINDOW_OPEN: return .irqWindowOpen
        default: return .unhandled(reason: reason)
        }
    }

    /// Element `element` of an OUT exit's data (zero-extended).
    public func ioValue(_ exit: IOExit, element: Int = 0) -> UInt32 {
        guard element >= 0, element < exit.count else { return 0 }
        // SAFETY: run() checked dataOffset + count*size <= runSize.
        let p = UnsafeRawPointer(runPage) + exit.dataOffset + element * exit.size
        switch exit.size {
        case 1: return UInt32(p.load(as: UInt8.self))
        case 2: return UInt32(p.loadUnaligned(as: UInt16.self))
        default: return p.loadUnaligned(as: UInt32.self)
        }
    }

    /// Sets element `element` of an IN exit's data, truncated to the access size.
    public func setIOValue(_ exit: IOExit, element: Int = 0, value: UInt32) {
        guard element >= 0, element < exit.count else { return }
        // SAFETY: run() checked dataOffset + count*size <= runSize.
        let p = UnsafeMutableRawPointer(runPage) + exit.dataOffset + element * exit.size
        switch exit.size {
        case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
        case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
        default: p.storeBytes(of: value, as: UInt32.self)
        }
    }

    /// Completes an MMIO read with `value` (low `length` bytes are used).
    public func completeMMIORead(value: UInt64) {
        ckvm_run_mmio_set_data(runPage, value)
    }

    /// Completes a RDMSR/WRMSR exit: `data` for reads, `injectGP` raises #GP in the guest.
    @inline(__always)
    public func completeMSR(data: UInt64 = 0, injectGP: Bool) {
        ckvm_run_msr_complete(runPage, data, injectGP ? 1 : 0)
    }

    /// Writes the hypercall's return value (must be written on every hypercall exit).
    public func completeHypercall(returnValue: UInt64) {
        ckvm_run_hypercall_set_ret(runPage, returnValue)
    }

    /// KVM_SYNC_X86_REGS: the bit of KVM_CAP_SYNC_REGS's answer that says
    /// the general registers can be synced through the run page.
    public static let syncGeneralRegistersBit = Int32(truncatingIfNeeded: CKVM_SYNC_X86_REGS)

    /// Asks KVM to copy the general registers into the run page on every exit
    /// (KVM_CAP_SYNC_REGS), so `exitRIP` costs no ioctl. Check the capability first.
    public func enableRegisterSync() {
        ckvm_run_set_valid_regs(runPage, CKVM_SYNC_X86_REGS)
    }

    /// RIP at the last exit, valid after `enableRegisterSync()`.
    public var exitRIP: UInt64 { ckvm_run_sync_rip(runPage) }

    /// Clears a pending kick so that the next KVM_RUN enters the guest.
    public func clearImmediateExit() {
        ckvm_run_set_immediate_exit(runPage, 0)
    }

    /// Finishes the exit being handled without running the guest: KVM_RUN with
    /// `immediate_exit` set, after which KVM has completed the pending I/O,
    /// MMIO, MSR or hypercall (an MSR read's value is in RAX/RDX and RIP is past
    /// the instruction) and returns EINTR. The KVM API documentation requires
    /// this before vCPU state is read or changed after such an exit.
    public func completePendingExit() throws(KVMError) {
        ckvm_run_set_immediate_exit(runPage, 1)
        let result = ckvm_ioctl_none(fd, CKVM_RUN)
        // A kick that raced with this keeps working: the run loop checks its
        // stop flag before the next entry, and the kicker sets the flag first.
        ckvm_run_set_immediate_exit(runPage, 0)
        guard result == -EINTR || result == -EAGAIN else {
            if result < 0 { throw .ioctl(request: "KVM_RUN (immediate_exit)", errno: -result) }
            throw .invalidArgument(request: "KVM_RUN (immediate_exit)",
                                   reason: "KVM entered the guest instead of returning at once (exit reason \(ckvm_run_exit_reason(runPage)))")
        }
    }

    // MARK: capabilities

    /// KVM_ENABLE_CAP on the vCPU fd.
    public func enable(_ capability: Capability, arguments: [UInt64] = []) throws(KVMError) {
        var request = try capability.enableRequest(arguments: arguments)
        _ = try Syscall.ioctl(fd, CKVM_ENABLE_CAP, &request, "KVM_ENABLE_CAP(\(capability.name))")
    }

    // MARK: register files

    /// KVM_GET_REGS.
    public func registers() throws(KVMError) -> Registers {
        var raw = kvm_regs()
        _ = try Syscall.ioctl(fd, CKVM_GET_REGS, &raw, "KVM_GET_REGS")
        return Registers(raw)
    }

    /// KVM_SET_REGS.
    public func setRegisters(_ registers: Registers) throws(KVMError) {
        var raw = registers.raw
        _ = try Syscall.ioctl(fd, CKVM_SET_REGS, &raw, "KVM_SET_REGS")
    }

    /// KVM_GET_SREGS.
    public func specialRegisters() throws(KVMError) -> SpecialRegisters {
        var raw = kvm_sregs()
        _ = try Syscall.ioctl(fd, CKVM_GET_SREGS, &raw, "KVM_GET_SREGS")
        return SpecialRegisters(raw)
    }

    /// KVM_SET_SREGS.
    public func setSpecialRegisters(_ sregs: SpecialRegisters) throws(KVMError) {
        var raw = sregs.raw
        _ = try Syscall.ioctl(fd, CKVM_SET_SREGS, &raw, "KVM_SET_SREGS")
    }

    /// KVM_GET_FPU.
    public func fpu() throws(KVMError) -> FPUState {
        var raw = kvm_fpu()
        _ = try Syscall.ioctl(fd, CKVM_GET_FPU, &raw, "KVM_GET_FPU")
        return FPUState(raw)
    }

    /// KVM_SET_FPU.
    public func setFPU(_ state: FPUState) throws(KVMError) {
        guard state.bytes.count == FPUState.byteCount else {
            throw .invalidArgument(request: "KVM_SET_FPU", reason: "image must be \(FPUState.byteCount) bytes, got \(state.bytes.count)")
        }
        var raw = state.raw
        _ = try Syscall.ioctl(fd, CKVM_SET_FPU, &raw, "KVM_SET_FPU")
    }

    /// KVM_GET_XSAVE2 (`xsaveSize` bytes) where the host has KVM_CAP_XSAVE2,
    /// else KVM_GET_XSAVE (4096 bytes).
    public func xsave() throws(KVMError) -> XSAVEState {
        let (request, name) = hasXSAVE2 ? (CKVM_GET_XSAVE2, "KVM_GET_XSAVE2") : (CKVM_GET_XSAVE, "KVM_GET_XSAVE")
        return try withXSAVEBuffer { buffer throws(KVMError) in
            try xsaveTransfer(request, name, buffer)
            return XSAVEState(bytes: Array(buffer))
        }
    }

    /// KVM_SET_XSAVE. KVM reads `xsaveSize` bytes (the XSAVE2 size once the
    /// host has it), so the image must be exactly that long.
    public func setXSAVE(_ state: XSAVEState) throws(KVMError) {
        guard state.bytes.count == xsaveSize else {
            throw .invalidArgument(request: "KVM_SET_XSAVE", reason: "image must be \(xsaveSize) bytes, got \(state.bytes.count)")
        }
        try withXSAVEBuffer { buffer throws(KVMError) in
            buffer.copyBytes(from: state.bytes)
            try xsaveTransfer(CKVM_SET_XSAVE, "KVM_SET_XSAVE", buffer)
        }
    }

    /// A zeroed buffer of the `xsaveSize` bytes KVM copies either way.
    private func withXSAVEBuffer<R>(_ body: (UnsafeMutableRawBufferPointer) throws(KVMError) -> R) throws(KVMError) -> R {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: xsaveSize, alignment: 64)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        return try body(buffer)
    }

    private func xsaveTransfer(_ request: UInt, _ name: String, _ buffer: UnsafeMutableRawBufferPointer) throws(KVMError) {
        // SAFETY: withXSAVEBuffer made the buffer xsaveSize bytes long.
        guard let base = buffer.baseAddress else { throw .invalidArgument(request: name, reason: "empty buffer") }
        let result = Syscall.ioctl(fd, request, buffer: base, name)
        guard result >= 0 else { throw .ioctl(request: name, errno: -result) }
    }

    /// KVM_GET_XCRS.
    public func extendedControlRegisters() throws(KVMError) -> [ExtendedControlRegister] {
        var raw = kvm_xcrs()
        _ = try Syscall.ioctl(fd, CKVM_GET_XCRS, &raw, "KVM_GET_XCRS")
        let count = Int(min(raw.nr_xcrs, 16))
        return withUnsafeBytes(of: raw.xcrs) { bytes in
            let xcrs = bytes.bindMemory(to: kvm_xcr.self)
            return (0..<count).map { ExtendedControlRegister(index: xcrs[$0].xcr, value: xcrs[$0].value) }
        }
    }

    /// KVM_SET_XCRS.
    public func setExtendedControlRegisters(_ registers: [ExtendedControlRegister]) throws(KVMError) {
        var raw = kvm_xcrs()
        guard registers.count <= 16 else {
            throw .invalidArgument(request: "KVM_SET_XCRS", reason: "at most 16 XCRs")
        }
        raw.nr_xcrs = UInt32(registers.count)
        withUnsafeMutableBytes(of: &raw.xcrs) { bytes in
            let xcrs = bytes.bindMemory(to: kvm_xcr.self)
            for (i, r) in registers.enumerated() { xcrs[i].xcr = r.index; xcrs[i].value = r.value }
        }
        _ = try Syscall.ioctl(fd, CKVM_SET_XCRS, &raw, "KVM_SET_XCRS")
    }

    /// KVM_GET_MP_STATE.
    public func mpState() throws(KVMError) -> UInt32 {
        var raw = kvm_mp_state()
        _ = try Syscall.ioctl(fd, CKVM_GET_MP_STATE, &raw, "KVM_GET_MP_STATE")
        return raw.mp_state
    }

    /// KVM_SET_MP_STATE.
    public func setMPState(_ state: UInt32) throws(KVMError) {
        var raw = kvm_mp_state(mp_state: state)
        _ = try Syscall.ioctl(fd, CKVM_SET_MP_STATE, &raw, "KVM_SET_MP_STATE")
    }

    // MARK: CPUID

    /// KVM_SET_CPUID2.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        try withCPUIDBuffer(capacity: entries.count) { header, list throws(KVMError) in
            header.pointee.nent = UInt32(entries.count)
            for (i, entry) in entries.enumerated() { list[i] = entry.raw }
            let result = Syscall.ioctl(fd, CKVM_SET_CPUID2, buffer: UnsafeMutableRawPointer(header), "KVM_SET_CPUID2")
            guard result >= 0 else { throw .ioctl(request: "KVM_SET_CPUID2", errno: -result) }
        }
    }

    /// KVM_GET_CPUID2: the CPUID table this vCPU presents.
    public func cpuid() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 64
        while true {
            let entries: [CPUIDEntry]? = try withCPUIDBuffer(capacity: capacity) { header, list throws(KVMError) in
                header.pointee.nent = UInt32(capacity)
                let result = Syscall.ioctl(fd, CKVM_GET_CPUID2, buffer: UnsafeMutableRawPointer(header), "KVM_GET_CPUID2")
                if result == -E2BIG, capacity < 4096 { return nil }
                guard result >= 0 else { throw .ioctl(request: "KVM_GET_CPUID2", errno: -result) }
                return (0..<min(Int(header.pointee.nent), capacity)).map { CPUIDEntry(list[$0]) }
            }
            if let entries { return entries }
            capacity *= 2
        }
    }

    private func withCPUIDBuffer<R>(capacity: Int, _ body: (UnsafeMutablePointer<kvm_cpuid2>, UnsafeMutablePointer<kvm_cpuid_entry2>) throws(KVMError) -> R) throws(KVMError) -> R {
        let byteCount = MemoryLayout<kvm_cpuid2>.size + max(capacity, 1) * MemoryLayout<kvm_cpuid_entry2>.stride
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        // SAFETY: buffer holds a kvm_cpuid2 header followed by `capacity` entries.
        let header = buffer.assumingMemoryBound(to: kvm_cpuid2.self)
        return try body(header, ckvm_cpuid2_entries(header))
    }

    // MARK: MSRs

    /// KVM_GET_MSRS. Throws `.partialMSRAccess` when KVM stops early (an MSR it does not know).
    public func readMSRs(_ indices: [UInt32]) throws(KVMError) -> [UInt64] {
        var values = [UInt64](repeating: 0, count: indices.count)
        try withMSRBuffer(count: indices.count) { header, entries throws(KVMError) in
            for (i, index) in indices.enumerated() { entries[i].index = index; entries[i].data = 0 }
            let done = try msrTransfer(CKVM_GET_MSRS, "KVM_GET_MSRS", header, indices)
            for i in 0..<done { values[i] = entries[i].data }
        }
        return values
    }

    /// KVM_SET_MSRS. Throws `.partialMSRAccess` when KVM refuses an entry (unknown MSR, reserved bits).
    public func writeMSRs(_ writes: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        try withMSRBuffer(count: writes.count) { header, entries throws(KVMError) in
            for (i, w) in writes.enumerated() { entries[i].index = w.index; entries[i].data = w.value }
            _ = try msrTransfer(CKVM_SET_MSRS, "KVM_SET_MSRS", header, writes.map(\.index))
        }
    }

    /// One MSR through KVM_GET_MSRS.
    public func readMSR(_ index: UInt32) throws(KVMError) -> UInt64 { try readMSRs([index])[0] }

    /// One MSR through KVM_SET_MSRS.
    public func writeMSR(_ index: UInt32, value: UInt64) throws(KVMError) { try writeMSRs([(index, value)]) }

    private func msrTransfer(_ request: UInt, _ name: String, _ header: UnsafeMutablePointer<kvm_msrs>, _ indices: [UInt32]) throws(KVMError) -> Int {
        header.pointee.nmsrs = UInt32(indices.count)
        let result = Syscall.ioctl(fd, request, buffer: UnsafeMutableRawPointer(header), name)
        guard result >= 0 else { throw .ioctl(request: name, errno: -result) }
        try Self.checkMSRCount(Int(result), of: indices, name)
        return indices.count
    }

    /// KVM answers how many entries it processed and stops at the first it
    /// refuses; more than were asked would be a broken answer, not an index.
    static func checkMSRCount(_ done: Int, of indices: [UInt32], _ name: String) throws(KVMError) {
        guard done != indices.count else { return }
        guard done >= 0, done < indices.count else {
            throw .invalidArgument(request: name, reason: "KVM reported \(done) MSRs processed of \(indices.count)")
        }
        throw .partialMSRAccess(request: name, processed: done, requested: indices.count, failedIndex: indices[done])
    }

    private func withMSRBuffer(count: Int, _ body: (UnsafeMutablePointer<kvm_msrs>, UnsafeMutablePointer<kvm_msr_entry>) throws(KVMError) -> Void) throws(KVMError) {
        let byteCount = MemoryLayout<kvm_msrs>.size + max(count, 1) * MemoryLayout<kvm_msr_entry>.stride
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        // SAFETY: buffer holds a kvm_msrs header followed by `count` entries.
        let header = buffer.assumingMemoryBound(to: kvm_msrs.self)
        try body(header, ckvm_msrs_entries(header))
    }

    // MARK: ONE_REG

    /// KVM_GET_ONE_REG for a 64-bit register.
    public func readRegister(_ id: X86RegisterID) throws(KVMError) -> UInt64 {
        try Self.requireU64(id, "KVM_GET_ONE_REG(\(id))")
        var value: UInt64 = 0
        try withUnsafeMutablePointer(to: &value) { pointer throws(KVMError) in
            var request = kvm_one_reg(id: id.rawValue, addr: UInt64(UInt(bitPattern: pointer)))
            _ = try Syscall.ioctl(fd, CKVM_GET_ONE_REG, &request, "KVM_GET_ONE_REG(\(id))")
        }
        return value
    }

    /// KVM_SET_ONE_REG for a 64-bit register.
    public func writeRegister(_ id: X86RegisterID, value: UInt64) throws(KVMError) {
        try Self.requireU64(id, "KVM_SET_ONE_REG(\(id))")
        var copy = value
        try withUnsafeMutablePointer(to: &copy) { pointer throws(KVMError) in
            var request = kvm_one_reg(id: id.rawValue, addr: UInt64(UInt(bitPattern: pointer)))
            _ = try Syscall.ioctl(fd, CKVM_SET_ONE_REG, &request, "KVM_SET_ONE_REG(\(id))")
        }
    }

    /// KVM copies as many bytes as the id's size field says: only a U64 id
    /// fits the 8-byte value behind `addr`, whatever the kernel would accept.
    private static func requireU64(_ id: X86RegisterID, _ name: String) throws(KVMError) {
        guard id.rawValue & X86RegisterID.sizeMask == X86RegisterID.sizeU64 else {
            let bytes = 1 << ((id.rawValue & X86RegisterID.sizeMask) >> 52)
            throw .invalidArgument(request: name, reason: "the id's size is \(bytes) bytes; only 8-byte registers are read and written")
        }
    }

    /// KVM_GET_REG_LIST: the KVM-defined registers of this vCPU (MSRs are
    /// listed by KVM_GET_MSR_INDEX_LIST instead).
    public func registerList() throws(KVMError) -> [X86RegisterID] {
        var capacity = 0
        while true {
            let byteCount = MemoryLayout<kvm_reg_list>.size + capacity * 8
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
            defer { buffer.deallocate() }
            // SAFETY: buffer holds a kvm_reg_list header followed by `capacity` ids.
            let header = buffer.assumingMemoryBound(to: kvm_reg_list.self)
            header.pointee.n = UInt64(capacity)
            let result = Syscall.ioctl(fd, CKVM_GET_REG_LIST, buffer: buffer, "KVM_GET_REG_LIST")
            if result == -E2BIG, Int(header.pointee.n) > capacity, header.pointee.n < 1 << 16 {
                capacity = Int(header.pointee.n)
                continue
            }
            guard result >= 0 else { throw .ioctl(request: "KVM_GET_REG_LIST", errno: -result) }
            let regs = ckvm_reg_list_regs(header)
            return (0..<min(Int(header.pointee.n), capacity)).map { X86RegisterID(rawValue: regs[$0]) }
        }
    }
}
