// VMM: how a run ended, the process status each ending maps to, and the
// register dump that goes with a guest failure.
import KVMABI
import KVM

/// The registers of one vCPU at the moment a run ended badly.
public struct VCPURegisterDump: Sendable, Equatable, CustomStringConvertible {
    public var vcpu: Int
    public var registers: Registers?
    public var special: SpecialRegisters?
    /// Why the registers could not be read, if they could not.
    public var unavailableReason: String?

    public init(vcpu: Int, registers: Registers?, special: SpecialRegisters?, unavailableReason: String? = nil) {
        self.vcpu = vcpu
        self.registers = registers
        self.special = special
        self.unavailableReason = unavailableReason
    }

    public var description: String {
        func h(_ v: UInt64) -> String { paddedHexDigits(v, 16) }
        guard let r = registers else { return "vCPU \(vcpu): registers unavailable (\(unavailableReason ?? "unknown"))" }
        var lines = [
            "vCPU \(vcpu): RIP=\(h(r.rip)) RFLAGS=\(h(r.rflags)) RSP=\(h(r.rsp)) RBP=\(h(r.rbp))",
            "  RAX=\(h(r.rax)) RBX=\(h(r.rbx)) RCX=\(h(r.rcx)) RDX=\(h(r.rdx))",
            "  RSI=\(h(r.rsi)) RDI=\(h(r.rdi)) R8 =\(h(r.r8)) R9 =\(h(r.r9))",
            "  R10=\(h(r.r10)) R11=\(h(r.r11)) R12=\(h(r.r12)) R13=\(h(r.r13))",
            "  R14=\(h(r.r14)) R15=\(h(r.r15))",
        ]
        if let s = special {
            lines.append("  CR0=\(h(s.cr0)) CR2=\(h(s.cr2)) CR3=\(h(s.cr3)) CR4=\(h(s.cr4)) EFER=\(h(s.efer))")
            lines.append("  CS=\(String(s.cs.selector, radix: 16)) base=\(h(s.cs.base)) l=\(s.cs.l ? 1 : 0) db=\(s.cs.db ? 1 : 0)  SS=\(String(s.ss.selector, radix: 16))  GDT=\(h(s.gdt.base))/\(s.gdt.limit) IDT=\(h(s.idt.base))/\(s.idt.limit)")
        }
        return lines.joined(separator: "\n")
    }
}

/// How a run ended.
public enum RunOutcome: Sendable, Equatable {
    /// Every vCPU executed HLT with nothing left to wake it.
    case allHalted
    /// The guest wrote `value` to the debug-exit port; the process status is `status`.
    case guestExit(value: UInt32, status: Int32)
    /// The guest asked for a reset (i8042 0xFE).
    case resetRequested(vcpu: Int)
    /// The guest requested ACPI soft-off (S5): status 0, as QEMU exits.
    case powerOff
    /// The guest woke from S3 with no FACS waking vector: SeaBIOS would boot
    /// again from scratch, a reset; the run ends as for a reset.
    case resumeWithoutWakingVector
    /// A vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
    case tripleFault(VCPURegisterDump)
    /// KVM could not continue the guest (emulation failure, failed entry, ...).
    case guestFailure(description: String, VCPURegisterDump)
    /// The run did not end within the timeout; every vCPU's registers.
    case timeout(seconds: Double, [VCPURegisterDump])
    /// Stopped by the user (SIGINT/SIGTERM).
    case interruptedByUser
    /// Output the user asked for (serial, events) could not be written.
    case outputFailed(String)
    /// A KVM request failed on the host side.
    case hostError(String)
    /// The guest was migrated and runs on the receiver now (status 0).
    case migrated(destination: String)

    /// The process status `deflect run` exits with. Deflect's own statuses are
    /// even so that they never collide with a debug-exit status (always odd).
    public var exitStatus: Int32 {
        switch self {
        case .allHalted: return 0
        case let .guestExit(_, status): return status & 0xFF
        case .resetRequested, .resumeWithoutWakingVector: return ExitStatus.reset
        case .powerOff: return 0
        case .tripleFault: return ExitStatus.tripleFault
        case .guestFailure: return ExitStatus.guestFailure
        case .timeout: return ExitStatus.timeout
        case .interruptedByUser: return ExitStatus.interrupted
        case .outputFailed: return ExitStatus.outputFailed
        case .hostError: return ExitStatus.hostError
        case .migrated: return 0
        }
    }

    /// One line for the user, plus register dumps when the guest failed.
    public var report: String {
        switch self {
        case .allHalted: return "all vCPUs halted"
        case let .guestExit(value, status): return "guest exited through the debug-exit port with value 0x\(String(value, radix: 16)) (status \(status & 0xFF))"
        case let .resetRequested(vcpu): return "guest requested a reset (i8042) on vCPU \(vcpu)"
        case .powerOff: return "guest powered off (ACPI S5)"
        case .resumeWithoutWakingVector: return "guest woke from ACPI S3 without a FACS waking vector; the firmware would reboot: stopped"
        case let .tripleFault(dump): return "guest triple-faulted on vCPU \(dump.vcpu)\n\(dump)"
        case let .guestFailure(description, dump): return "guest failed on vCPU \(dump.vcpu): \(description)\n\(dump)"
        case let .timeout(seconds, dumps):
            return (["guest did not finish within \(seconds) s; stopped"] + dumps.map(\.description)).joined(separator: "\n")
        case .interruptedByUser: return "stopped by signal"
        case let .outputFailed(message): return "error: \(message); the guest was stopped"
        case let .hostError(message): return "host error: \(message)"
        case let .migrated(destination): return "migrated to \(destination)"
        }
    }

    /// Whether the guest ended in a way it asked for.
    public var isGuestRequested: Bool {
        switch self {
        case .allHalted, .guestExit, .resetRequested, .powerOff, .resumeWithoutWakingVector: return true
        default: return false
        }
    }
}

/// The process statuses of `deflect`, in one table.
public enum ExitStatus {
    public static let reset: Int32 = 2
    public static let tripleFault: Int32 = 4
    public static let guestFailure: Int32 = 6
    public static let timeout: Int32 = 8
    public static let interrupted: Int32 = 10
    /// Bad command-line usage (swift-argument-parser's own status).
    public static let usage: Int32 = 64
    /// The image or another input file is missing or invalid.
    public static let badInput: Int32 = 66
    /// /dev/kvm is missing or not accessible.
    public static let kvmUnavailable: Int32 = 68
    /// The CPU model (--cpu) cannot run on this host: another vendor, or
    /// features its KVM cannot give.
    public static let cpuModelUnavailable: Int32 = 72
    /// A KVM request or the host failed.
    public static let hostError: Int32 = 70
    /// Output the user asked for (serial, events) could not be written (EX_IOERR).
    public static let outputFailed: Int32 = 74
}
