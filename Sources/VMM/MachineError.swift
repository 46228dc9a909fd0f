// VMM: errors that stop a machine from being built or started.
import KVM
import Loader

/// Why a machine could not be built or run. Each case prints as one line.
public enum MachineError: Error, CustomStringConvertible {
    /// A number or option out of range.
    case configuration(String)
    /// The image (or a multiboot module) is not valid for the requested mode or does not fit.
    case image(LoaderError)
    /// `/dev/kvm` is missing or not accessible.
    case kvmUnavailable(KVMError)
    /// A KVM request failed while building or running the machine.
    case kvm(KVMError)
    /// The host refused something the machine needs.
    case host(String)
    /// A snapshot cannot be taken or restored (one line naming what is wrong).
    case snapshot(String)
    /// An output file (serial, events) cannot be opened.
    case output(String)
    /// The MSR policy cannot be used (does not compile to a filter, needs what the host lacks).
    case policy(String)
    /// A live migration failed or was refused (one line naming why).
    case migration(String)
    /// A device's host side cannot be used (a `--disk` file that cannot be opened).
    case device(String)

    public var description: String {
        switch self {
        case let .configuration(message): return message
        case let .image(error): return error.concernsModules ? "\(error)" : "invalid image: \(error)"
        case let .kvmUnavailable(error): return "KVM is not usable: \(error)"
        case let .kvm(error): return "KVM error: \(error)"
        case let .host(message): return message
        case let .policy(message): return "MSR policy: \(message)"
        case let .output(message): return message
        case let .snapshot(message): return "snapshot: \(message)"
        case let .migration(message): return "migration: \(message)"
        case let .device(message): return message
        }
    }
}
