// KVM: an eventfd, the counter KVM signals for an ioeventfd (a guest write it
// matched) and reads for an irqfd (an interrupt to raise). Device back ends
// wait on it off the vCPU threads.
internal import CKVM
import Glibc

public final class EventFD: Sendable {
    /// The descriptor, open until the object goes away.
    public let fd: CInt

    /// A non-blocking eventfd (EFD_CLOEXEC | EFD_NONBLOCK) starting at `initial`.
    public init(initial: UInt32 = 0) throws(KVMError) {
        let result = ckvm_eventfd(initial, 1)
        guard result >= 0 else { throw .ioctl(request: "eventfd", errno: -result) }
        fd = result
    }

    deinit { Glibc.close(fd) }

    /// Adds one to the counter (what KVM does for a matched guest write;
    /// what a device does to raise its irqfd's interrupt).
    public func signal() throws(KVMError) {
        var one: UInt64 = 1
        let written = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
        guard written == 8 else { throw .ioctl(request: "eventfd write", errno: Glibc.errno) }
    }

    /// The counter, reset to 0; 0 when nothing was signalled since the last take.
    public func take() throws(KVMError) -> UInt64 {
        var value: UInt64 = 0
        let count = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, 8) }
        if count == 8 { return value }
        if count < 0 && Glibc.errno == EAGAIN { return 0 }
        throw .ioctl(request: "eventfd read", errno: count < 0 ? Glibc.errno : EIO)
    }

    /// Waits up to `milliseconds` for the counter to become non-zero; true if it did.
    public func wait(milliseconds: Int32) -> Bool {
        var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&ready, 1, milliseconds) == 1 && ready.revents & Int16(POLLIN) != 0
    }
}
