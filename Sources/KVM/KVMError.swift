// KVM: errors of the KVM layer. Every error says which request failed and why.
import Glibc

/// A failure of the KVM layer, naming the request (or system call) and errno.
public enum KVMError: Error, Equatable, CustomStringConvertible {
    /// An ioctl on a KVM file descriptor failed.
    case ioctl(request: String, errno: Int32)
    /// `open(2)` of a device failed.
    case open(path: String, errno: Int32)
    /// `mmap(2)` failed.
    case mmap(what: String, errno: Int32)
    /// KVM_GET_MSRS / KVM_SET_MSRS processed fewer entries than asked.
    case partialMSRAccess(request: String, processed: Int, requested: Int, failedIndex: UInt32)
    /// `/dev/kvm` answers with an API version we do not speak.
    case unsupportedAPIVersion(Int32)
    /// An argument the caller passed cannot be expressed to KVM.
    case invalidArgument(request: String, reason: String)
    /// KVM_RUN returned an exit whose data does not fit the mapped run page.
    case malformedExit(String)
    /// The calling thread could not be made kickable (signal handler or mask):
    /// a vCPU run there could never be stopped.
    case kickUnavailable(String)
    /// A restored vCPU state's TSC rate differs from this host's and KVM
    /// cannot scale it (no KVM_CAP_TSC_CONTROL); nothing was restored.
    case tscFrequencyMismatch(savedKHz: UInt32, hostKHz: UInt32)

    public var description: String {
        switch self {
        case let .ioctl(request, errno):
            return "\(request) failed: \(ErrnoName.describe(errno))"
        case let .open(path, errno):
            return "cannot open \(path): \(ErrnoName.describe(errno))"
        case let .mmap(what, errno):
            return "cannot map \(what): \(ErrnoName.describe(errno))"
        case let .partialMSRAccess(request, processed, requested, failedIndex):
            return "\(request) processed \(processed) of \(requested) MSRs; KVM refused MSR 0x\(String(failedIndex, radix: 16))"
        case let .unsupportedAPIVersion(version):
            return "KVM API version \(version) is not supported (expected 12)"
        case let .invalidArgument(request, reason):
            return "\(request): \(reason)"
        case let .malformedExit(what):
            return "malformed KVM exit: \(what)"
        case let .kickUnavailable(reason):
            return "vCPU cannot be kicked out of KVM_RUN: \(reason)"
        case let .tscFrequencyMismatch(saved, host):
            return TSCFrequencyMismatch(savedKHz: saved, hostKHz: host).description
        }
    }

    /// The errno of the failed call, when there is one.
    public var errno: Int32? {
        switch self {
        case let .ioctl(_, e), let .open(_, e), let .mmap(_, e): return e
        default: return nil
        }
    }
}

/// Symbolic errno names: "EINVAL (Invalid argument)" reads better than "22".
public enum ErrnoName {
    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO",
        E2BIG: "E2BIG", EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES",
        EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV", EINVAL: "EINVAL",
        ENOTTY: "ENOTTY", ENOSPC: "ENOSPC", ERANGE: "ERANGE", ENOSYS: "ENOSYS",
        EOPNOTSUPP: "EOPNOTSUPP", ESRCH: "ESRCH",
    ]

    public static func describe(_ code: Int32) -> String {
        let message = String(cString: strerror(code))
        if let name = names[code] { return "\(name) (\(message))" }
        return "errno \(code) (\(message))"
    }
}
