// KVM: the VM handle: memory slots, vCPUs, VM-wide capabilities, MSR filter,
// in-kernel irqchip/PIT and the x86 real-mode helper addresses.
internal import CKVM
import Glibc
import KVMABI
import Synchronization

/// A KVM virtual machine (the fd KVM_CREATE_VM returns). Owns its fd; guest
/// memory regions live as long as the VM.
public final class VirtualMachine: Sendable {
    let fd: CInt
    public let system: KVMSystem
    let regions = Mutex<[GuestMemory]>([])
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 was enabled (`enableManualDirtyLogProtect`).
    let manualDirtyProtect = Atomic<Bool>(false)

    init(fd: CInt, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    deinit { Syscall.close(fd) }

    /// KVM_CHECK_EXTENSION on the VM fd (some answers are per VM).
    public func check(_ capability: Capability) throws(KVMError) -> Int32 {
        try Syscall.ioctl(fd, CKVM_CHECK_EXTENSION, value: UInt(capability.rawValue), "KVM_CHECK_EXTENSION(\(capability.name))")
    }

    /// KVM_ENABLE_CAP on the VM fd.
    public func enable(_ capability: Capability, arguments: [UInt64] = []) throws(KVMError) {
        var request = try capability.enableRequest(arguments: arguments)
        _ = try Syscall.ioctl(fd, CKVM_ENABLE_CAP, &request, "KVM_ENABLE_CAP(\(capability.name))")
    }

    /// Maps `size` bytes and registers them as slot `slot` at `start`
    /// (KVM_SET_USER_MEMORY_REGION): anonymous memory, or `backing`'s file
    /// (shared, or private copy-on-write for a restore). A `readOnly` slot
    /// (KVM_MEM_READONLY) turns guest writes into MMIO exits; the host side
    /// stays writable so the VMM can fill it. `logDirtyPages` sets
    /// KVM_MEM_LOG_DIRTY_PAGES (read with `dirtyPages(slot:)`).
    public func addMemory(slot: UInt32, at start: GuestPhysicalAddress, size: UInt64,
                          readOnly: Bool = false, backing: GuestMemoryBacking = .anonymous,
                          logDirtyPages: Bool = false) throws(KVMError) -> GuestMemory {
        let request = "KVM_SET_USER_MEMORY_REGION"
        guard size > 0, size % 4096 == 0, start.rawValue % 4096 == 0, size <= UInt64(Int.max) else {
            throw .invalidArgument(request: request, reason: "region must be non-empty and 4 KiB aligned")
        }
        let host: UnsafeMutableRawPointer
        if let mapped = backing.file {
            let (end, overflow) = mapped.offset.addingReportingOverflow(size)
            guard mapped.offset % 4096 == 0, !overflow, end <= mapped.file.size else {
                throw .invalidArgument(request: request, reason: "slot \(slot) needs [0x\(String(mapped.offset, radix: 16)), +0x\(String(size, radix: 16))) of a \(mapped.file.size)-byte memory file")
            }
            host = try Syscall.mmap(length: Int(size), fd: mapped.file.fd, shared: mapped.shared, offset: mapped.offset,
                                    what: "\(size >> 20) MiB of guest RAM from a memory file")
        } else {
            host = try Syscall.mmap(length: Int(size), fd: -1, shared: false, what: "\(size >> 20) MiB of guest RAM")
            // Transparent huge pages where the host allows them, as QEMU asks
            // for guest RAM: fewer EPT and page-table entries, and a snapshot's
            // scan of untouched RAM maps the huge zero page 2 MiB at a time.
            // Advice only: a host without THP keeps 4 KiB pages.
            _ = madvise(host, Int(size), MADV_HUGEPAGE)
        }
        let memory = GuestMemory(slot: slot, start: start, size: size, host: host, backing: backing, readOnly: readOnly)
        try register(memory, logDirtyPages: logDirtyPages)
        regions.withLock { $0.append(memory) }
        return memory
    }

    /// KVM_CREATE_VCPU with the given vCPU id (also its initial APIC id).
    public func createVCPU(id: UInt32) throws(KVMError) -> VCPU {
        // Asked per VM: the answer counts only the features this VM may use.
        let xsave2Size = try check(.xsave2)
        let hasSREGS2 = try check(.sregs2) > 0
        let canSetTSCFrequency = try check(.tscControl) > 0
        let vcpufd = try Syscall.ioctl(fd, CKVM_CREATE_VCPU, value: UInt(id), "KVM_CREATE_VCPU")
        do throws(KVMError) {
            let run = try Syscall.mmap(length: system.vcpuMapSize, fd: vcpufd, shared: true, what: "kvm_run of vCPU \(id)")
            return VCPU(fd: vcpufd, id: id, run: run, runSize: system.vcpuMapSize, xsave2Size: Int(xsave2Size),
                        hasSREGS2: hasSREGS2, canSetTSCFrequency: canSetTSCFrequency)
        } catch {
            Syscall.close(vcpufd)
            throw error
        }
    }

    /// KVM_SET_TSS_ADDR: three pages KVM uses for real-mode emulation on Intel.
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        _ = try Syscall.ioctl(fd, CKVM_SET_TSS_ADDR, value: UInt(address), "KVM_SET_TSS_ADDR")
    }

    /// KVM_SET_IDENTITY_MAP_ADDR: one page for the real-mode identity map on Intel.
    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        var value = address
        _ = try Syscall.ioctl(fd, CKVM_SET_IDENTITY_MAP_ADDR, &value, "KVM_SET_IDENTITY_MAP_ADDR")
    }

    /// KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and local APICs.
    public func createIRQChip() throws(KVMError) {
        _ = try Syscall.ioctl(fd, CKVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP")
    }

    /// KVM_CREATE_PIT2: in-kernel i8254. With `speakerPort`
    /// (KVM_PIT_SPEAKER_DUMMY) KVM also answers port 0x61, whose bit 5 is
    /// channel 2's output: without it that port would have to be emulated in
    /// user space from state KVM keeps.
    public func createPIT2(speakerPort: Bool = true) throws(KVMError) {
        var config = kvm_pit_config()
        config.flags = speakerPort ? 1 : 0   // KVM_PIT_SPEAKER_DUMMY
        _ = try Syscall.ioctl(fd, CKVM_CREATE_PIT2, &config, "KVM_CREATE_PIT2")
    }

    /// KVM_IRQ_LINE: sets the level of a GSI on the in-kernel irqchip.
    public func setIRQLine(_ irq: UInt32, high: Bool) throws(KVMError) {
        var level = kvm_irq_level()
        level.irq = irq
        level.level = high ? 1 : 0
        _ = try Syscall.ioctl(fd, CKVM_IRQ_LINE, &level, "KVM_IRQ_LINE")
    }

    /// KVM_X86_SET_MSR_FILTER: installs `filter` (may be called while vCPUs run).
    /// Range and bitmap sizes are checked here; flag bits are left to KVM,
    /// which answers EINVAL for undefined ones.
    public func setMSRFilter(_ filter: MSRFilter) throws(KVMError) {
        let request = "KVM_X86_SET_MSR_FILTER"
        guard filter.ranges.count <= MSRFilter.maxRanges else {
            throw .invalidArgument(request: request, reason: "\(filter.ranges.count) ranges, at most \(MSRFilter.maxRanges)")
        }
        for (i, range) in filter.ranges.enumerated() {
            guard range.count >= 1, range.count <= MSRFilter.maxMSRsPerRange else {
                throw .invalidArgument(request: request, reason: "range \(i) at MSR 0x\(String(range.base, radix: 16)) covers \(range.count) MSRs; a range covers 1 to \(MSRFilter.maxMSRsPerRange)")
            }
        }
        var raw = kvm_msr_filter()
        raw.flags = filter.flags
        // KVM copies BITS_TO_LONGS(nmsrs) * 8 bytes of each bitmap: every
        // range gets exactly that much, zero-filled (deny) past what the
        // caller gave, all in one buffer alive across the ioctl.
        let sizes = filter.ranges.map { MSRFilterRange.bitmapByteCount(for: $0.count) }
        let total = sizes.reduce(0, +)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(total, 1), alignment: 8)
        defer { storage.deallocate() }
        storage.initializeMemory(as: UInt8.self, repeating: 0, count: max(total, 1))
        var offset = 0
        withUnsafeMutableBytes(of: &raw.ranges) { rangesRaw in
            let ranges = rangesRaw.bindMemory(to: kvm_msr_filter_range.self)
            for (i, range) in filter.ranges.enumerated() {
                // SAFETY: storage has `total` bytes; range i owns [offset, offset + sizes[i]).
                range.bitmap.withUnsafeBytes { bytes in
                    if let base = bytes.baseAddress {
                        (storage + offset).copyMemory(from: base, byteCount: min(bytes.count, sizes[i]))
                    }
                }
                ranges[i].flags = range.flags
                ranges[i].nmsrs = range.count
                ranges[i].base = range.base
                ranges[i].bitmap = (storage + offset).assumingMemoryBound(to: UInt8.self)
                offset += sizes[i]
            }
        }
        _ = try Syscall.ioctl(fd, CKVM_X86_SET_MSR_FILTER, &raw, request)
    }
}
