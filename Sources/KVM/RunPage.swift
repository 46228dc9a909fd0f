// KVM: the mapped `kvm_run` page of one vCPU, shared by the VCPU and its
// kicker so that it stays mapped as long as either is alive.
internal import CKVM

/// The vCPU's `kvm_run` mapping (KVM_GET_VCPU_MMAP_SIZE bytes of the vCPU
/// fd). A kicker can be held after its VCPU is gone: it must still write to
/// mapped memory, so the mapping is unmapped when the last holder goes. The
/// mapping keeps KVM's vCPU file alive, so a late kick only sets a flag no
/// one reads.
final class RunPage: @unchecked Sendable {
    // SAFETY: the vCPU's thread reads and writes the page; other threads
    // only store `immediate_exit`, atomically (ckvm_run_set_immediate_exit).
    let pointer: UnsafeMutablePointer<kvm_run>
    let size: Int

    init(mapping: UnsafeMutableRawPointer, size: Int) {
        // SAFETY: the mapping is `size` (>= sizeof(kvm_run)) bytes from KVM_GET_VCPU_MMAP_SIZE.
        self.pointer = mapping.bindMemory(to: kvm_run.self, capacity: 1)
        self.size = size
    }

    deinit { Syscall.munmap(UnsafeMutableRawPointer(pointer), length: size) }
}
