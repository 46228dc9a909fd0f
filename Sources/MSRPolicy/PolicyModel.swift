// MSRPolicy: the per-VM MSR policy as Swift values: rules over MSR ranges,
// the action each takes, and the default for MSRs no rule names. This is the
// model the TOML file format, the filter compiler and the runtime share.

/// Where something was written in a policy file (1-based line and column).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file; self.line = line; self.column = column
    }
    public var description: String { "\(file):\(line):\(column)" }
}

/// Who owns an emulated MSR's value.
public enum EmulationScope: String, Sendable, Hashable, CaseIterable, Codable {
    /// Each vCPU has its own value (most MSRs).
    case vcpu
    /// One value shared by every vCPU of the VM (package-scoped MSRs).
    case vm
}

/// What a guest write to an emulated MSR does.
public enum WriteBehaviour: String, Sendable, Hashable, CaseIterable {
    /// Writable bits change (subject to `writableMask` and `reservedMask`).
    case readWrite = "read-write"
    /// Any write raises #GP.
    case readOnly = "read-only"
    /// Writes are accepted and dropped.
    case writeIgnored = "write-ignored"
}

/// A user-space-owned MSR value and the rules for changing it.
public struct Emulation: Sendable, Hashable {
    public var initialValue: UInt64
    public var scope: EmulationScope
    /// Bits a guest write may change; the others keep their value.
    public var writableMask: UInt64
    /// Bits that raise #GP when a write sets them.
    public var reservedMask: UInt64
    public var writes: WriteBehaviour

    public init(initialValue: UInt64 = 0, scope: EmulationScope = .vcpu, writableMask: UInt64 = .max,
                reservedMask: UInt64 = 0, writes: WriteBehaviour = .readWrite) {
        self.initialValue = initialValue; self.scope = scope; self.writableMask = writableMask
        self.reservedMask = reservedMask; self.writes = writes
    }

    /// The value a write of `value` leaves, or nil when it must raise #GP.
    public func applyWrite(_ value: UInt64, to current: UInt64) -> UInt64? {
        switch writes {
        case .readOnly: return nil
        case .writeIgnored: return current
        case .readWrite:
            guard value & reservedMask == 0 else { return nil }
            return (current & ~writableMask) | (value & writableMask)
        }
    }
}

/// What happens when the guest reads or writes an MSR.
public enum MSRAction: Sendable, Hashable {
    /// KVM handles it in the kernel (the filter allows it).
    case kernel
    /// User space owns the value.
    case emulate(Emulation)
    /// Reads return `readValue`, writes are dropped.
    case ignore(readValue: UInt64)
    /// Any access raises #GP.
    case deny
    /// Reads come from a named built-in provider (see `ValueProviders`); writes raise #GP.
    case computed(provider: String)
    /// Reads return the host's value of the MSR (opt-in only); writes raise #GP.
    case host

    /// Whether accesses exit to user space (everything but `kernel`).
    public var isUserSpace: Bool { if case .kernel = self { return false } else { return true } }

    /// The policy-file spelling of the action.
    public var keyword: String {
        switch self {
        case .kernel: return "kernel"
        case .emulate: return "emulate"
        case .ignore: return "ignore"
        case .deny: return "deny"
        case .computed: return "computed"
        case .host: return "host"
        }
    }
}

/// One rule: an action for a contiguous range of MSR indices.
public struct MSRRule: Sendable, Hashable {
    public var first: UInt32
    public var last: UInt32
    public var action: MSRAction
    /// Every access that hits this rule becomes an event.
    public var log: Bool
    /// Where the rule was written (nil for rules built in Swift or from a profile).
    public var location: SourceLocation?
    /// Where the value comes from, e.g. "Intel SDM Vol. 4, Table 2-12" (profiles).
    public var origin: String?

    public init(first: UInt32, last: UInt32, action: MSRAction, log: Bool = false,
                location: SourceLocation? = nil, origin: String? = nil) {
        self.first = first; self.last = last; self.action = action; self.log = log
        self.location = location; self.origin = origin
    }

    public init(_ index: UInt32, _ action: MSRAction, log: Bool = false, origin: String? = nil) {
        self.init(first: index, last: index, action: action, log: log, origin: origin)
    }

    public func contains(_ index: UInt32) -> Bool { first <= index && index <= last }
}

/// What happens to MSRs that no rule names.
public enum DefaultAction: String, Sendable, Hashable, CaseIterable {
    /// Raise #GP.
    case gp
    /// Reads return 0, writes are dropped (the per-VM `ignore_msrs`).
    case ignore
    /// Let KVM decide (it implements many MSRs and raises #GP for the rest).
    case kernel
}

/// Which MSRs the default applies to.
public enum DefaultScope: String, Sendable, Hashable, CaseIterable {
    /// Only MSRs KVM does not implement (or refuses): KVM keeps handling the
    /// MSRs it knows. This is the per-VM replacement for `kvm.ignore_msrs`.
    case unknown
    /// Every MSR no rule names, KVM-implemented or not (filter default deny);
    /// x2APIC MSRs 0x800–0x8ff are the exception, KVM never filters them.
    case all
}

/// A complete per-VM MSR policy.
public struct MSRPolicy: Sendable, Hashable {
    /// Sorted by `first`, non-overlapping (see `validated`).
    public private(set) var rules: [MSRRule]
    public var defaultAction: DefaultAction
    public var defaultScope: DefaultScope
    /// Whether accesses that reach the default become events.
    public var logDefault: Bool
    /// The CPU-model profile the rules were layered on, if any.
    public var profile: String?

    public init(rules: [MSRRule], defaultAction: DefaultAction = .kernel, defaultScope: DefaultScope = .unknown,
                logDefault: Bool = false, profile: String? = nil) {
        self.rules = rules.sorted { $0.first < $1.first }
        self.defaultAction = defaultAction
        self.defaultScope = defaultScope
        self.logDefault = logDefault
        self.profile = profile
    }

    /// The rule covering `index`, found by binary search; nil means the default applies.
    public func rule(for index: UInt32) -> MSRRule? { rules.span(covering: index) }
}
