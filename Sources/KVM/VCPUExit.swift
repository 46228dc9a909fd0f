// KVM: the typed result of KVM_RUN. `VCPU.run()` decodes `kvm_run` into this
// enum in exactly one place; nothing else reads the exit union.
import KVMABI

/// Port I/O exit. Data lives in the run page; read and write it through
/// `VCPU.ioValue(_:element:)` / `VCPU.setIOValue(_:element:value:)`.
public struct IOExit: Sendable, Equatable {
    public enum Direction: UInt8, Sendable { case input = 0, output = 1 }
    public var direction: Direction
    public var port: UInt16
    /// Access width in bytes: 1, 2 or 4.
    public var size: Int
    /// Number of elements (> 1 for string I/O such as `rep outsb`).
    public var count: Int
    /// Offset of the data in the run page (internal to the KVM layer).
    let dataOffset: Int
}

/// MMIO exit for an address no memory slot backs.
public struct MMIOExit: Sendable, Equatable {
    public var address: UInt64
    /// 1, 2, 4 or 8 bytes.
    public var length: Int
    public var isWrite: Bool
    /// The value written (little-endian, `length` low bytes valid).
    public var data: UInt64
}

/// RDMSR / WRMSR exit to user space (KVM_CAP_X86_USER_SPACE_MSR).
public struct MSRExit: Sendable, Equatable {
    public var index: UInt32
    /// Why KVM exited (INVAL, UNKNOWN, FILTER).
    public var reason: MSRExitReasons
    /// The value written (WRMSR only).
    public var data: UInt64
}

/// KVM_EXIT_HYPERCALL (KVM_CAP_EXIT_HYPERCALL).
public struct HypercallExit: Sendable, Equatable {
    public var number: UInt64
    public var arguments: [UInt64]
    /// Set when the guest was in 64-bit mode (flags bit 0).
    public var longMode: Bool
}

/// KVM_EXIT_INTERNAL_ERROR: KVM could not continue (e.g. emulation failed).
public struct InternalErrorExit: Sendable, Equatable {
    /// KVM_INTERNAL_ERROR_EMULATION 1, SIMUL_EX 2, DELIVERY_EV 3, UNEXPECTED_EXIT_REASON 4.
    public var suberror: UInt32
    public var data: [UInt64]

    public var suberrorName: String {
        switch suberror {
        case 1: return "emulation failure"
        case 2: return "simultaneous exceptions"
        case 3: return "exit during event delivery"
        case 4: return "unexpected exit reason"
        default: return "suberror \(suberror)"
        }
    }
}

/// `run->system_event.type` of KVM_EXIT_SYSTEM_EVENT (`KVM_SYSTEM_EVENT_*` in <linux/kvm.h>).
public enum KVMSystemEvent {
    /// KVM_SYSTEM_EVENT_SHUTDOWN: the guest asked to power off.
    public static let shutdown: UInt32 = 1
    /// KVM_SYSTEM_EVENT_RESET: the guest asked for a reset.
    public static let reset: UInt32 = 2
    /// KVM_SYSTEM_EVENT_CRASH: the guest reported a crash.
    public static let crash: UInt32 = 3
}

/// Why KVM_RUN returned.
public enum VCPUExit: Sendable, Equatable {
    case io(IOExit)
    case mmio(MMIOExit)
    case readMSR(MSRExit)
    case writeMSR(MSRExit)
    case hypercall(HypercallExit)
    /// The guest executed HLT and KVM has no in-kernel APIC to wait in.
    case halt
    /// Triple fault (or another shutdown condition).
    case shutdown
    /// VM entry failed; the hardware reason code.
    case failEntry(reason: UInt64)
    case internalError(InternalErrorExit)
    /// KVM_EXIT_SYSTEM_EVENT (shutdown, reset, crash ...).
    case systemEvent(type: UInt32, data: UInt64)
    case debug
    /// KVM_RUN returned EINTR: a signal (such as a kick) or immediate_exit.
    case interrupted
    case irqWindowOpen
    /// An exit reason this layer does not decode.
    case unhandled(reason: UInt32)

    /// The accounting bucket of this exit.
    public var kind: ExitKind {
        switch self {
        case let .io(io): return io.direction == .input ? .ioIn : .ioOut
        case let .mmio(m): return m.isWrite ? .mmioWrite : .mmioRead
        case .readMSR: return .readMSR
        case .writeMSR: return .writeMSR
        case .hypercall: return .hypercall
        case .halt: return .halt
        case .shutdown: return .shutdown
        case .failEntry: return .failEntry
        case .internalError: return .internalError
        case .systemEvent: return .systemEvent
        case .debug: return .debug
        case .interrupted: return .interrupted
        case .irqWindowOpen: return .irqWindowOpen
        case .unhandled: return .other
        }
    }
}

/// Buckets for exit accounting, dense so a fixed array can count them.
public enum ExitKind: Int, CaseIterable, Sendable, CustomStringConvertible {
    case ioIn, ioOut, mmioRead, mmioWrite, readMSR, writeMSR, hypercall, halt, shutdown,
         failEntry, internalError, systemEvent, debug, interrupted, irqWindowOpen, other

    public var description: String {
        switch self {
        case .ioIn: return "io-in"
        case .ioOut: return "io-out"
        case .mmioRead: return "mmio-read"
        case .mmioWrite: return "mmio-write"
        case .readMSR: return "rdmsr"
        case .writeMSR: return "wrmsr"
        case .hypercall: return "hypercall"
        case .halt: return "hlt"
        case .shutdown: return "shutdown"
        case .failEntry: return "fail-entry"
        case .internalError: return "internal-error"
        case .systemEvent: return "system-event"
        case .debug: return "debug"
        case .interrupted: return "interrupted"
        case .irqWindowOpen: return "irq-window"
        case .other: return "other"
        }
    }
}
