// KVM: the system handle (/dev/kvm): API version, capabilities, supported
// CPUID, MSR index lists, and creating VMs.
internal import CKVM
import Glibc

/// An open `/dev/kvm`. Owns its file descriptor.
public final class KVMSystem: Sendable {
    /// The KVM API version this code speaks (KVM_GET_API_VERSION).
    public static let expectedAPIVersion: Int32 = 12
    public static let defaultPath = "/dev/kvm"

    let fd: CInt
    /// Size of the per-vCPU `kvm_run` mapping (KVM_GET_VCPU_MMAP_SIZE).
    public let vcpuMapSize: Int

    /// Opens the KVM device and checks the API version.
    public init(path: String = KVMSystem.defaultPath) throws(KVMError) {
        let fd = try Syscall.open(path, flags: O_RDWR)
        do throws(KVMError) {
            let version = try Syscall.ioctl(fd, CKVM_GET_API_VERSION, "KVM_GET_API_VERSION")
            guard version == Self.expectedAPIVersion else { throw KVMError.unsupportedAPIVersion(version) }
            vcpuMapSize = Int(try Syscall.ioctl(fd, CKVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE"))
        } catch {
            Syscall.close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { Syscall.close(fd) }

    /// KVM_GET_API_VERSION.
    public func apiVersion() throws(KVMError) -> Int32 {
        try Syscall.ioctl(fd, CKVM_GET_API_VERSION, "KVM_GET_API_VERSION")
    }

    /// KVM_CHECK_EXTENSION on the system fd: 0 = unsupported, otherwise a capability-specific value.
    public func check(_ capability: Capability) throws(KVMError) -> Int32 {
        try Syscall.ioctl(fd, CKVM_CHECK_EXTENSION, value: UInt(capability.rawValue), "KVM_CHECK_EXTENSION(\(capability.name))")
    }

    /// KVM_CREATE_VM with the default VM type.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let vmfd = try Syscall.ioctl(fd, CKVM_CREATE_VM, value: 0, "KVM_CREATE_VM")
        return VirtualMachine(fd: vmfd, system: self)
    }

    /// KVM_GET_SUPPORTED_CPUID: the CPUID entries KVM can present to a guest.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 128
        while true {
            let byteCount = MemoryLayout<kvm_cpuid2>.size + capacity * MemoryLayout<kvm_cpuid_entry2>.stride
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
            // SAFETY: buffer holds a kvm_cpuid2 header followed by `capacity` entries.
            let header = buffer.assumingMemoryBound(to: kvm_cpuid2.self)
            header.pointee.nent = UInt32(capacity)
            let result = Syscall.ioctl(fd, CKVM_GET_SUPPORTED_CPUID, buffer: buffer, "KVM_GET_SUPPORTED_CPUID")
            if result == -E2BIG && capacity < 4096 { capacity *= 2; continue }
            guard result >= 0 else { throw .ioctl(request: "KVM_GET_SUPPORTED_CPUID", errno: -result) }
            let count = min(Int(header.pointee.nent), capacity)
            let entries = ckvm_cpuid2_entries(header)
            return (0..<count).map { CPUIDEntry(entries[$0]) }
        }
    }

    /// KVM_GET_MSR_INDEX_LIST: MSRs KVM saves and restores for a guest.
    public func msrIndexList() throws(KVMError) -> [UInt32] {
        try indexList(CKVM_GET_MSR_INDEX_LIST, "KVM_GET_MSR_INDEX_LIST")
    }

    /// KVM_GET_MSR_FEATURE_INDEX_LIST: feature MSRs (read on the system fd).
    public func featureMSRIndexList() throws(KVMError) -> [UInt32] {
        try indexList(CKVM_GET_MSR_FEATURE_INDEX_LIST, "KVM_GET_MSR_FEATURE_INDEX_LIST")
    }

    /// Both list requests answer E2BIG with the needed count when `nmsrs` is too small.
    private func indexList(_ request: UInt, _ name: String) throws(KVMError) -> [UInt32] {
        var capacity = 0
        while true {
            let byteCount = MemoryLayout<kvm_msr_list>.size + capacity * MemoryLayout<UInt32>.stride
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
            defer { buffer.deallocate() }
            // SAFETY: buffer holds a kvm_msr_list header followed by `capacity` indices.
            let header = buffer.assumingMemoryBound(to: kvm_msr_list.self)
            header.pointee.nmsrs = UInt32(capacity)
            let result = Syscall.ioctl(fd, request, buffer: buffer, name)
            if result == -E2BIG, Int(header.pointee.nmsrs) > capacity {
                capacity = Int(header.pointee.nmsrs)
                continue
            }
            guard result >= 0 else { throw .ioctl(request: name, errno: -result) }
            let count = min(Int(header.pointee.nmsrs), capacity)
            let indices = ckvm_msr_list_indices(header)
            return (0..<count).map { indices[$0] }
        }
    }
}
