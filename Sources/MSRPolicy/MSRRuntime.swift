// MSRPolicy: the runtime decision engine — given a policy, answers every
// RDMSR/WRMSR exit (value, #GP or not, outcome, whether to log) and owns the
// values of emulated MSRs, per vCPU and per VM. Pure: the VMM turns the
// decision into `run->msr.data` / `run->msr.error` and an event.

import KVMABI
import Synchronization

/// The guest's access, as the exit reports it.
public enum MSRAccess: Sendable, Equatable, Hashable {
    case read
    case write(UInt64)
}

/// What the runtime did; the raw value is the word events and statistics use.
public enum MSROutcome: String, Sendable, Hashable, CaseIterable {
    case emulated
    case ignored
    case denied
    case computed
    case host
    case defaultGP = "default-gp"
    case defaultIgnore = "default-ignore"
    /// KVM refused an access it was meant to handle; #GP, as KVM would raise.
    case kernelRefused = "kernel-refused"
    case readOnlyGP = "read-only-gp"
    case reservedGP = "reserved-gp"
}

/// The answer to one exit.
public struct MSRDecision: Sendable, Equatable, Hashable {
    /// The value a read returns (0 for writes and for #GP).
    public var value: UInt64
    /// Whether to set `run->msr.error` (inject #GP).
    public var injectGP: Bool
    public var outcome: MSROutcome
    /// Whether the access becomes an event: the rule is marked `log`, the
    /// default is logged, or the access raised #GP.
    public var log: Bool

    public init(value: UInt64, injectGP: Bool, outcome: MSROutcome, log: Bool) {
        self.value = value; self.injectGP = injectGP; self.outcome = outcome; self.log = log
    }
}

/// Reads the host's value of an MSR (the VMM implements it with /dev/cpu/N/msr).
public protocol HostMSRReader: Sendable {
    func read(_ index: UInt32) -> UInt64?
}

/// One emulated MSR value, as saved in a snapshot.
public struct EmulatedValue: Sendable, Hashable, Codable {
    public var index: UInt32
    public var scope: EmulationScope
    /// The owning vCPU for `.vcpu` scope; nil for `.vm`.
    public var vcpu: Int?
    public var value: UInt64

    public init(index: UInt32, scope: EmulationScope, vcpu: Int?, value: UInt64) {
        self.index = index; self.scope = scope; self.vcpu = vcpu; self.value = value
    }
}

/// Why a runtime could not be built, take a new policy, or restore values.
public enum MSRRuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidTopology(String)
    /// A rule whose `first` is greater than its `last`.
    case invertedRule(first: UInt32, last: UInt32)
    /// Two rules cover the same MSR (the first indices of both).
    case overlappingRules(UInt32, UInt32)
    case unknownProvider(name: String, index: UInt32)
    /// A `host` rule, but the VMM has no way to read host MSRs.
    case hostReaderMissing(index: UInt32)
    /// A `host` rule whose MSR the host cannot read.
    case hostMSRUnreadable(index: UInt32)
    /// Emulated ranges cover more MSRs than the runtime will hold.
    case tooManyEmulatedMSRs(count: UInt64, limit: Int)
    /// A saved value the current policy has no place for.
    case restoreMismatch(index: UInt32, vcpu: Int?, reason: String)

    public var description: String {
        switch self {
        case .invalidTopology(let why): return "invalid vCPU topology: \(why)"
        case .invertedRule(let first, let last):
            return "MSR rule \(hex(first))-\(hex(last)) ends before it starts"
        case .overlappingRules(let a, let b): return "MSR rules starting at \(hex(a)) and \(hex(b)) overlap"
        case .unknownProvider(let name, let index):
            return "MSR \(hex(index)): unknown value provider '\(name)' (known: \(ValueProviders.names.sorted().joined(separator: ", ")))"
        case .hostReaderMissing(let index):
            return "MSR \(hex(index)): the 'host' action needs host MSR access (/dev/cpu/N/msr), which is not available"
        case .hostMSRUnreadable(let index):
            return "MSR \(hex(index)): the 'host' action is set but the host's MSR cannot be read"
        case .tooManyEmulatedMSRs(let count, let limit):
            return "the policy emulates \(count) MSRs; at most \(limit) are supported"
        case .restoreMismatch(let index, let vcpu, let reason):
            return "cannot restore MSR \(hex(index))" + (vcpu.map { " of vCPU \($0)" } ?? "") + ": \(reason)"
        }
    }

}

/// Architectural lock bits of MSRs a policy may emulate read-write: once the
/// guest sets the lock bit, hardware stops taking writes. `Emulation` has no
/// field for it, so the runtime applies this table to `read-write` emulated
/// MSRs (only matters when the policy's writable mask lets the bit be set).
public enum MSRLockBits {
    public enum WhenLocked: Sendable, Hashable {
        /// Writes are accepted and dropped (RAPL power limits).
        case ignoreWrites
        /// Writes raise #GP (IA32_FEATURE_CONTROL).
        case generalProtection
    }

    /// The lock bit of `index` and what a write does once it is set.
    public static func lock(for index: UInt32) -> (mask: UInt64, whenLocked: WhenLocked)? {
        switch index {
        case 0x3A: return (1 << 0, .generalProtection)   // IA32_FEATURE_CONTROL, SDM Table 2-2
        case 0x610: return (1 << 63, .ignoreWrites)      // MSR_PKG_POWER_LIMIT
        case 0x618: return (1 << 31, .ignoreWrites)      // MSR_DRAM_POWER_LIMIT
        case 0x638: return (1 << 31, .ignoreWrites)      // MSR_PP0_POWER_LIMIT
        case 0x640: return (1 << 31, .ignoreWrites)      // MSR_PP1_POWER_LIMIT
        case 0x64B: return (1 << 31, .ignoreWrites)      // MSR_CONFIG_TDP_CONTROL
        case 0x64C: return (1 << 31, .ignoreWrites)      // MSR_TURBO_ACTIVATION_RATIO
        default: return nil
        }
    }
}

/// Answers RDMSR/WRMSR exits for one VM.
///
/// Concurrency: `handle` runs on every vCPU thread at once. The compiled
/// policy and its value stores form an immutable `RuntimeGeneration` swapped under
/// one lock; each vCPU's values sit behind that vCPU's own mutex and the
/// per-VM values behind one more, so vCPUs only contend on per-VM MSRs. A
/// thread that keeps a `GenerationCache` reads the generation pointer under
/// the lock only after an install (one atomic load tells).
///
/// Allocation: after `init`, `handle` does not touch the heap. Every emulated
/// MSR has its slot in a fixed-size `[UInt64]` created at compile time and
/// only ever written in place (the array is uniquely referenced, so no
/// copy-on-write); rules are a flat array of trivial structs searched in
/// place; providers are an enum resolved from their names at compile time;
/// the decision is a trivial struct; no String is built. The only reference
/// traffic is retaining the current generation (with a `GenerationCache`,
/// only when it changed). Unknown MSRs leave no state
/// behind, so a guest storming random MSRs costs no memory. (Checked with
/// valgrind: a million mixed exits add no malloc call, debug or release.)
public final class MSRRuntime: Sendable {
    /// The most MSR indices emulated ranges may cover (per scope, counted once).
    public static let maxEmulatedMSRs = 65_536
    /// The most vCPUs a runtime accepts (KVM's own limit is of this order).
    public static let maxVCPUs = 4_096

    private let vcpuCount: Int
    private let coresPerPackage: Int
    private let threadsPerCore: Int
    private let hostReader: (any HostMSRReader)?
    private let clock: @Sendable () -> UInt64
    private let current: Mutex<RuntimeGeneration>
    /// How many generations were installed: a thread's `GenerationCache` is
    /// current while its number matches.
    private let installed = Atomic<UInt64>(0)

    /// - Parameters:
    ///   - coresPerPackage: defaults to `vcpuCount / threadsPerCore` (one package).
    ///   - hostReader: needed only when a rule uses `host`.
    ///   - clock: nanoseconds since the VM started (for computed counters).
    public init(policy: MSRPolicy, vcpuCount: Int, coresPerPackage: Int? = nil, threadsPerCore: Int = 1,
                hostReader: (any HostMSRReader)?, clock: @escaping @Sendable () -> UInt64) throws(MSRRuntimeError) {
        guard vcpuCount >= 1, vcpuCount <= Self.maxVCPUs else {
            throw .invalidTopology("\(vcpuCount) vCPUs (1...\(Self.maxVCPUs) supported)")
        }
        guard threadsPerCore >= 1, threadsPerCore <= vcpuCount else {
            throw .invalidTopology("\(threadsPerCore) threads per core for \(vcpuCount) vCPUs")
        }
        let cores = coresPerPackage ?? max(vcpuCount / threadsPerCore, 1)
        guard cores >= 1, cores <= 0xFFFF else { throw .invalidTopology("\(cores) cores per package") }
        self.vcpuCount = vcpuCount
        self.coresPerPackage = cores
        self.threadsPerCore = threadsPerCore
        self.hostReader = hostReader
        self.clock = clock
        let compiled = try RuntimePolicy(policy, hostReader: hostReader)
        self.current = Mutex(RuntimeGeneration(compiled, vm: compiled.initialValues(scope: .vm),
                                        vcpu: Array(repeating: compiled.initialValues(scope: .vcpu), count: vcpuCount)))
    }

    /// The policy in force.
    public var policy: MSRPolicy { current.withLock { $0.policy } }

    // MARK: - The exit path

    /// The answer to one RDMSR/WRMSR exit of `vcpu`.
    public func handle(index: UInt32, access: MSRAccess, vcpu: Int, reasons: MSRExitReasons) -> MSRDecision {
        var cache = GenerationCache()
        return handle(index: index, access: access, vcpu: vcpu, reasons: reasons, cache: &cache)
    }

    /// The generation in force as one calling thread last saw it, so that
    /// the exit path takes no lock while no policy is installed.
    public struct GenerationCache: Sendable {
        fileprivate var generation: RuntimeGeneration?
        fileprivate var number: UInt64 = 0
        /// The runtime the generation belongs to (a cache handed to another starts over).
        fileprivate var owner: ObjectIdentifier?
        public init() {}
    }

    /// `handle`, for a thread that keeps `cache` across its exits (a vCPU's
    /// thread): no lock unless a policy was installed since its last exit.
    public func handle(index: UInt32, access: MSRAccess, vcpu: Int, reasons: MSRExitReasons,
                       cache: inout GenerationCache) -> MSRDecision {
        // A vCPU number outside the VM is a VMM bug, not a guest action: answer
        // #GP rather than trap, and make it visible.
        guard vcpu >= 0, vcpu < vcpuCount else {
            return MSRDecision(value: 0, injectGP: true, outcome: .denied, log: true)
        }
        while true {
            let number = installed.load(ordering: .acquiring)
            if cache.number != number || cache.generation == nil || cache.owner != ObjectIdentifier(self) {
                cache.generation = current.withLock { $0 }
                cache.number = number
                cache.owner = ObjectIdentifier(self)
            }
            // nil: the generation was retired by an install or a restore
            // after this thread read it; the next read of `current` sees its successor.
            if let generation = cache.generation,
               let decision = decide(generation, index: index, access: access, vcpu: vcpu, reasons: reasons) {
                return decision
            }
            cache.generation = nil
        }
    }

    private func decide(_ g: RuntimeGeneration, index: UInt32, access: MSRAccess, vcpu: Int,
                        reasons: MSRExitReasons) -> MSRDecision? {
        guard let rule = g.rule(for: index) else {
            return defaultDecision(g, access: access, reasons: reasons)
        }
        let log = rule.log
        switch rule.kind {
        case .kernel:
            // The filter let KVM handle it, so reaching here means KVM refused
            // it (UNKNOWN/INVAL): raise #GP as KVM would have.
            return Self.gp(.kernelRefused)
        case .ignore(let readValue):
            if case .read = access { return MSRDecision(value: readValue, injectGP: false, outcome: .ignored, log: log) }
            return MSRDecision(value: 0, injectGP: false, outcome: .ignored, log: log)
        case .deny:
            return Self.gp(.denied)
        case .computed(let provider):
            guard case .read = access else { return Self.gp(.readOnlyGP) }
            let context = ProviderContext(vcpu: vcpu, vcpuCount: vcpuCount, coresPerPackage: coresPerPackage,
                                          threadsPerCore: threadsPerCore, nanosecondsSinceStart: clock())
            return MSRDecision(value: provider.read(context: context), injectGP: false, outcome: .computed, log: log)
        case .host:
            guard case .read = access else { return Self.gp(.readOnlyGP) }
            // Probed at start; if the host stops answering, the guest gets #GP.
            guard let value = hostReader?.read(index) else { return Self.gp(.host) }
            return MSRDecision(value: value, injectGP: false, outcome: .host, log: log)
        case .emulate(let emulation, let slotBase):
            let slot = slotBase + Int(index - rule.first)
            let store = emulation.scope == .vm ? g.vmStore : g.vcpuStores[vcpu]
            return store.state.withLock { state -> MSRDecision? in
                guard !state.retired else { return nil }
                let current = state.values[slot]
                switch access {
                case .read:
                    return MSRDecision(value: current, injectGP: false, outcome: .emulated, log: log)
                case .write(let value):
                    switch Self.write(value, to: current, index: index, emulation: emulation) {
                    case .store(let newValue):
                        state.values[slot] = newValue
                        return MSRDecision(value: 0, injectGP: false, outcome: .emulated, log: log)
                    case .fault(let outcome):
                        return Self.gp(outcome)
                    }
                }
            }
        }
    }

    private enum WriteResult { case store(UInt64), fault(MSROutcome) }

    /// `Emulation.applyWrite` plus architectural lock bits, with the reason for a #GP.
    private static func write(_ value: UInt64, to current: UInt64, index: UInt32,
                              emulation: Emulation) -> WriteResult {
        if emulation.writes == .readWrite, let lock = MSRLockBits.lock(for: index), current & lock.mask != 0 {
            return lock.whenLocked == .ignoreWrites ? .store(current) : .fault(.readOnlyGP)
        }
        if let newValue = emulation.applyWrite(value, to: current) { return .store(newValue) }
        return .fault(emulation.writes == .readOnly ? .readOnlyGP : .reservedGP)
    }

    private func defaultDecision(_ g: RuntimeGeneration, access: MSRAccess, reasons: MSRExitReasons) -> MSRDecision {
        let policy = g.compiled.defaults
        // With default scope `unknown` the default covers only MSRs KVM does not
        // implement. INVAL without UNKNOWN means KVM implements this one and
        // refused the access: that is KVM's answer, not the default's.
        if policy.scope == .unknown, reasons.contains(.invalid), !reasons.contains(.unknown) {
            return Self.gp(.kernelRefused)
        }
        switch policy.action {
        case .gp:
            return Self.gp(.defaultGP)
        case .ignore:
            return MSRDecision(value: 0, injectGP: false, outcome: .defaultIgnore, log: policy.log)
        case .kernel:
            // KVM was allowed to handle it and still sent it here: it refused.
            return Self.gp(.kernelRefused)
        }
    }

    private static func gp(_ outcome: MSROutcome) -> MSRDecision {
        MSRDecision(value: 0, injectGP: true, outcome: outcome, log: true)
    }

    // MARK: - Policy replacement and snapshots

    /// A policy checked by `prepare`, ready for `install`.
    public struct PreparedMSRPolicy: Sendable {
        let runtimePolicy: RuntimePolicy
    }

    /// Puts `policy` in force. Emulated values carry over for every MSR the new
    /// policy still emulates with the same scope; other emulated MSRs (new
    /// ones, or ones whose scope changed) start at their initial value. On
    /// error the old policy stays in force, untouched.
    public func replacePolicy(_ policy: MSRPolicy) throws(MSRRuntimeError) {
        install(try prepare(policy))
    }

    /// Checks `policy` and builds everything it needs, without putting it in
    /// force: the part of a replacement that can fail. `install` cannot fail,
    /// so a caller can make the replacement all or nothing with other steps
    /// (the KVM filter) in between.
    public func prepare(_ policy: MSRPolicy) throws(MSRRuntimeError) -> PreparedMSRPolicy {
        PreparedMSRPolicy(runtimePolicy: try RuntimePolicy(policy, hostReader: hostReader))
    }

    /// Puts a prepared policy in force (see `replacePolicy`).
    public func install(_ prepared: PreparedMSRPolicy) {
        let next = prepared.runtimePolicy
        // (new slot, old slot) pairs per scope, worked out before taking locks.
        var vmMoves: [(Int, Int)] = []
        var vcpuMoves: [(Int, Int)] = []
        current.withLock { old in
            for rule in next.rules {
                guard case .emulate(let emulation, let newBase) = rule.kind else { continue }
                var index = rule.first
                while true {
                    if let oldRule = old.rule(for: index), case .emulate(let oldEmulation, let oldBase) = oldRule.kind,
                       oldEmulation.scope == emulation.scope {
                        let move = (newBase + Int(index - rule.first), oldBase + Int(index - oldRule.first))
                        if emulation.scope == .vm { vmMoves.append(move) } else { vcpuMoves.append(move) }
                    }
                    if index == rule.last { break }
                    index += 1
                }
            }
            var vmValues = next.initialValues(scope: .vm)
            old.vmStore.state.withLock { state in
                for (to, from) in vmMoves { vmValues[to] = state.values[from] }
                state.retired = true
            }
            let vcpuInitial = next.initialValues(scope: .vcpu)
            var vcpuValues: [[UInt64]] = []
            for store in old.vcpuStores {
                var values = vcpuInitial
                store.state.withLock { state in
                    for (to, from) in vcpuMoves { values[to] = state.values[from] }
                    state.retired = true
                }
                vcpuValues.append(values)
            }
            old = RuntimeGeneration(next, vm: vmValues, vcpu: vcpuValues)
        }
        installed.add(1, ordering: .releasing)
    }

    /// Every emulated MSR value, sorted by index, then vCPU (per-VM values have no vCPU).
    public func emulatedValues() -> [EmulatedValue] {
        current.withLock { g in
            let vm = g.vmStore.state.withLock { $0.values.map { $0 } }
            let vcpus = g.vcpuStores.map { store in store.state.withLock { $0.values.map { $0 } } }
            var out: [EmulatedValue] = []
            for rule in g.rules {
                guard case .emulate(let emulation, let base) = rule.kind else { continue }
                var index = rule.first
                while true {
                    let slot = base + Int(index - rule.first)
                    if emulation.scope == .vm {
                        out.append(EmulatedValue(index: index, scope: .vm, vcpu: nil, value: vm[slot]))
                    } else {
                        for (vcpu, values) in vcpus.enumerated() {
                            out.append(EmulatedValue(index: index, scope: .vcpu, vcpu: vcpu, value: values[slot]))
                        }
                    }
                    if index == rule.last { break }
                    index += 1
                }
            }
            return out
        }
    }

    /// Sets emulated values from a snapshot, bypassing write masks (it is the
    /// VMM restoring state, not the guest writing). Every value must match an
    /// emulated MSR of the current policy with the same scope; otherwise
    /// nothing is changed.
    public func restore(_ values: [EmulatedValue]) throws(MSRRuntimeError) {
        try current.withLock { (g: inout RuntimeGeneration) throws(MSRRuntimeError) -> Void in
            var vmWrites: [(Int, UInt64)] = []
            var vcpuWrites: [(vcpu: Int, slot: Int, value: UInt64)] = []
            for saved in values {
                guard let rule = g.rule(for: saved.index), case .emulate(let emulation, let base) = rule.kind else {
                    throw .restoreMismatch(index: saved.index, vcpu: saved.vcpu, reason: "the policy does not emulate it")
                }
                guard emulation.scope == saved.scope else {
                    throw .restoreMismatch(index: saved.index, vcpu: saved.vcpu,
                                           reason: "saved per-\(saved.scope.rawValue), emulated per-\(emulation.scope.rawValue)")
                }
                let slot = base + Int(saved.index - rule.first)
                switch (saved.scope, saved.vcpu) {
                case (.vm, nil):
                    vmWrites.append((slot, saved.value))
                case (.vcpu, .some(let vcpu)) where vcpu >= 0 && vcpu < vcpuCount:
                    vcpuWrites.append((vcpu, slot, saved.value))
                default:
                    throw .restoreMismatch(index: saved.index, vcpu: saved.vcpu,
                                           reason: "vCPU number does not fit the scope or the VM's \(vcpuCount) vCPUs")
                }
            }
            g.vmStore.state.withLock { state in
                for (slot, value) in vmWrites { state.values[slot] = value }
            }
            for write in vcpuWrites {
                g.vcpuStores[write.vcpu].state.withLock { $0.values[write.slot] = write.value }
            }
        }
    }
}

// MARK: - Compiled policy

/// One rule in the form the exit path wants: trivial values only, so reading
/// it retains nothing.
struct RuntimeRule: Sendable, MSRSpan {
    enum Kind: Sendable {
        case kernel
        /// `slotBase` is the rule's first slot in its scope's value array.
        case emulate(Emulation, slotBase: Int)
        case ignore(UInt64)
        case deny
        case computed(ValueProviders.Provider)
        case host
    }
    var first: UInt32
    var last: UInt32
    var log: Bool
    var kind: Kind
}

/// A set of emulated values behind one lock. `retired` marks a store whose
/// generation has been replaced; an access that finds it retired retries
/// on the new generation, so no write lands in a store already copied.
final class RuntimeValueStore: Sendable {
    struct State {
        var values: [UInt64]
        var retired = false
    }
    let state: Mutex<State>
    init(_ values: [UInt64]) {
        // A buffer of its own: arrays handed in may share storage (every vCPU
        // starts from the same initial array), and a shared buffer would be
        // copied — allocated — by the first guest write on the exit path.
        var own: [UInt64] = []
        own.reserveCapacity(values.count)
        own.append(contentsOf: values)
        state = Mutex(State(values: own))
    }
}

/// A policy validated and resolved into what the exit path needs.
struct RuntimePolicy: Sendable {
    struct Default: Sendable {
        var action: DefaultAction
        var scope: DefaultScope
        var log: Bool
    }

    var policy: MSRPolicy
    var rules: [RuntimeRule]
    var defaults: Default
    var vmSlotCount: Int
    var vcpuSlotCount: Int

    init(_ policy: MSRPolicy, hostReader: (any HostMSRReader)?) throws(MSRRuntimeError) {
        var compiled: [RuntimeRule] = []
        compiled.reserveCapacity(policy.rules.count)
        var vmSlots = 0, vcpuSlots = 0
        if let overlap = PolicyChecks.overlaps(policy.rules).first {
            throw .overlappingRules(overlap.earlier.first, overlap.later.first)
        }
        for rule in policy.rules {
            guard rule.first <= rule.last else { throw .invertedRule(first: rule.first, last: rule.last) }
            let kind: RuntimeRule.Kind
            switch rule.action {
            case .kernel: kind = .kernel
            case .deny: kind = .deny
            case .ignore(let readValue): kind = .ignore(readValue)
            case .computed(let name):
                guard let provider = ValueProviders.Provider(rawValue: name) else {
                    throw .unknownProvider(name: name, index: rule.first)
                }
                kind = .computed(provider)
            case .host:
                guard let hostReader else { throw .hostReaderMissing(index: rule.first) }
                // Probe once at start so a host without MSR access fails now,
                // not at the guest's first access.
                guard hostReader.read(rule.first) != nil else { throw .hostMSRUnreadable(index: rule.first) }
                kind = .host
            case .emulate(let emulation):
                let count = UInt64(rule.last - rule.first) + 1
                let used = UInt64(emulation.scope == .vm ? vmSlots : vcpuSlots)
                guard used + count <= UInt64(MSRRuntime.maxEmulatedMSRs) else {
                    throw .tooManyEmulatedMSRs(count: used + count, limit: MSRRuntime.maxEmulatedMSRs)
                }
                if emulation.scope == .vm {
                    kind = .emulate(emulation, slotBase: vmSlots); vmSlots += Int(count)
                } else {
                    kind = .emulate(emulation, slotBase: vcpuSlots); vcpuSlots += Int(count)
                }
            }
            compiled.append(RuntimeRule(first: rule.first, last: rule.last, log: rule.log, kind: kind))
        }
        self.policy = policy
        self.rules = compiled
        self.defaults = Default(action: policy.defaultAction, scope: policy.defaultScope, log: policy.logDefault)
        self.vmSlotCount = vmSlots
        self.vcpuSlotCount = vcpuSlots
    }

    /// The initial values of every slot of one scope.
    func initialValues(scope: EmulationScope) -> [UInt64] {
        var values = Array(repeating: UInt64(0), count: scope == .vm ? vmSlotCount : vcpuSlotCount)
        for rule in rules {
            guard case .emulate(let emulation, let base) = rule.kind, emulation.scope == scope else { continue }
            let count = Int(rule.last - rule.first) + 1
            for slot in base..<(base + count) { values[slot] = emulation.initialValue }
        }
        return values
    }

    /// Binary search over the flat rule array.
    func rule(for index: UInt32) -> RuntimeRule? { rules.span(covering: index) }
}

/// A compiled policy with its value stores; immutable, replaced as a whole.
final class RuntimeGeneration: Sendable {
    let compiled: RuntimePolicy
    let vmStore: RuntimeValueStore
    let vcpuStores: [RuntimeValueStore]

    init(_ compiled: RuntimePolicy, vm: [UInt64], vcpu: [[UInt64]]) {
        self.compiled = compiled
        self.vmStore = RuntimeValueStore(vm)
        self.vcpuStores = vcpu.map { RuntimeValueStore($0) }
    }

    var policy: MSRPolicy { compiled.policy }
    var rules: [RuntimeRule] { compiled.rules }
    func rule(for index: UInt32) -> RuntimeRule? { compiled.rule(for: index) }
}
