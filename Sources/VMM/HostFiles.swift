// VMM: the host files the VMM reads besides /dev/kvm (the msr driver), with
// their libc calls in one place.
import Glibc

enum HostFiles {
    /// One 8-byte pread at offset `index` of the msr driver's file; nil when
    /// the driver is missing, not permitted, or the MSR does not exist.
    static func readMSR(path: String, index: UInt32) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { pread(fd, $0.baseAddress, 8, off_t(index)) }
        return n == 8 ? value : nil
    }
}
