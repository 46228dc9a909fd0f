// VMM: what a snapshot needs from the host that restores it, recorded in the
// optional `host` section of the state file and checked before a restore
// builds anything: the KVM capabilities the restore path uses for this state
// (in-kernel irqchip and PIT, SREGS2, an XSAVE image larger than 4096 bytes)
// and the CPUID feature bits the saved guest CPUID has. A host missing one is
// refused with one line naming it, instead of a half-restored guest or a
// guest that finds a feature gone. Snapshots without the section (older
// ones) are checked by what the restore itself verifies.
import KVM
import Snapshot

/// The needs of one snapshot (the `host` section, JSON).
public struct HostRequirements: Codable, Sendable, Equatable {
    /// KVM_CHECK_EXTENSION(number) must answer at least `minimum`.
    public struct KVMCapability: Codable, Sendable, Equatable {
        public var name: String
        public var number: UInt32
        public var minimum: Int32
        /// Why the snapshot needs it (for the refusal).
        public var reason: String

        public init(_ capability: Capability, minimum: Int32 = 1, reason: String) {
            name = capability.name; number = capability.rawValue; self.minimum = minimum; self.reason = reason
        }
    }

    /// Bits of one CPUID register the guest was given; KVM_GET_SUPPORTED_CPUID
    /// on the restoring host must offer all of them.
    public struct CPUIDFeatures: Codable, Sendable, Equatable {
        public var function: UInt32
        public var index: UInt32
        public var register: CPUIDRegister
        public var bits: UInt32
    }

    /// A CPUID output register, saved as "eax", "ebx", "ecx" or "edx".
    public enum CPUIDRegister: String, Codable, Sendable {
        case eax, ebx, ecx, edx
    }

    public var capabilities: [KVMCapability]
    public var cpuidFeatures: [CPUIDFeatures]

    public init(capabilities: [KVMCapability], cpuidFeatures: [CPUIDFeatures]) {
        self.capabilities = capabilities
        self.cpuidFeatures = cpuidFeatures
    }

    /// XSAVE images up to this size fit the legacy KVM_GET/SET_XSAVE.
    static let legacyXSAVEBytes = 4096

    /// The CPUID registers holding feature flags, with the bits KVM changes at
    /// run time (OSXSAVE follows CR4, OSPKE too, APIC follows IA32_APIC_BASE)
    /// and HTT (Deflect sets it from the vCPU count) masked out: those are
    /// state, not features the host must offer.
    static let featureRegisters: [(function: UInt32, index: UInt32, register: CPUIDRegister, dynamicBits: UInt32)] = [
        (0x1, 0, .ecx, 1 << 27),
        (0x1, 0, .edx, 1 << 9 | 1 << 28),
        (0x7, 0, .ebx, 0),
        (0x7, 0, .ecx, 1 << 4),
        (0x7, 0, .edx, 0),
        (0x7, 1, .eax, 0),
        (0xD, 1, .eax, 0),
        (0x8000_0001, 0, .ecx, 0),
        (0x8000_0001, 0, .edx, 0),
    ]

    /// What a snapshot of this machine state needs. CPUID features count
    /// when the guest has them and this host's KVM_GET_SUPPORTED_CPUID offers
    /// them: those are the features Deflect gave the guest. (KVM_GET_CPUID2
    /// can answer more than was set: on the nested kvm_pvm test host it adds
    /// the host's own leaf-1 bits, SSE3 to RDRAND, that the supported list
    /// lacks; requiring those would refuse a restore on the very same host.)
    static func needed(vm: VMSnapshot, vcpus: [VCPUSnapshot], supportedCPUID: [CPUIDEntry]) -> HostRequirements {
        var capabilities: [KVMCapability] = []
        if vm.irqchip != nil { capabilities.append(KVMCapability(.irqchip, reason: "in-kernel PICs, IOAPIC and LAPICs")) }
        if vm.pit != nil { capabilities.append(KVMCapability(.pit2, reason: "in-kernel PIT")) }
        if vcpus.contains(where: { $0.specialRegisters.format == .sregs2 }) {
            capabilities.append(KVMCapability(.sregs2, reason: "special registers saved with their PDPTRs"))
        }
        let xsaveBytes = vcpus.map(\.xsave.count).max() ?? 0
        if xsaveBytes > legacyXSAVEBytes {
            capabilities.append(KVMCapability(.xsave2, minimum: Int32(clamping: xsaveBytes),
                                              reason: "an XSAVE image of \(xsaveBytes) bytes"))
        }
        let features = featureRegisters.compactMap { leaf -> CPUIDFeatures? in
            let bits = vcpus.reduce(UInt32(0)) { $0 | Self.value(of: leaf.register, in: $1.cpuid, leaf.function, leaf.index) }
                & Self.value(of: leaf.register, in: supportedCPUID, leaf.function, leaf.index) & ~leaf.dynamicBits
            return bits == 0 ? nil : CPUIDFeatures(function: leaf.function, index: leaf.index, register: leaf.register, bits: bits)
        }
        return HostRequirements(capabilities: capabilities, cpuidFeatures: features)
    }

    /// The first need this host does not meet, as one line; nil when it meets all.
    /// `capabilityValue` answers KVM_CHECK_EXTENSION (0 when unsupported).
    func firstUnmet(capabilityValue: (Capability) -> Int32, supportedCPUID: [CPUIDEntry]) -> String? {
        for need in capabilities {
            let here = capabilityValue(Capability(rawValue: need.number))
            if here < need.minimum {
                let wanted = need.minimum == 1 ? need.name : "\(need.name) >= \(need.minimum)"
                let has = here == 0 ? "this host's KVM lacks it" : "this host's KVM answers \(here)"
                return "needs \(wanted) (\(need.reason)); \(has)"
            }
        }
        for need in cpuidFeatures {
            let missing = need.bits & ~Self.value(of: need.register, in: supportedCPUID, need.function, need.index)
            if missing != 0 {
                return "the guest's CPUID.(EAX=0x\(String(need.function, radix: 16)),ECX=\(need.index)):\(need.register.rawValue.uppercased()) has bits 0x\(String(missing, radix: 16)) this host's KVM does not support (KVM_GET_SUPPORTED_CPUID)"
            }
        }
        return nil
    }

    /// A register of the entry for (function, index) in `entries`; 0 if there is none.
    private static func value(of register: CPUIDRegister, in entries: [CPUIDEntry], _ function: UInt32, _ index: UInt32) -> UInt32 {
        guard let entry = entries.first(where: {
            $0.function == function && ($0.flags & CPUIDEntry.significantIndex == 0 || $0.index == index)
        }) else { return 0 }
        switch register {
        case .eax: return entry.eax
        case .ebx: return entry.ebx
        case .ecx: return entry.ecx
        case .edx: return entry.edx
        }
    }
}

/// The host a restore runs on, as the checks before it see it.
public struct RestoreHost: Sendable {
    public var cpu: SnapshotHost
    public var kvmAPIVersion: UInt32
    public var supportedCPUID: [CPUIDEntry]
    /// KVM_CHECK_EXTENSION's answer (0 when unsupported or unanswerable).
    public var capabilityValue: @Sendable (Capability) -> Int32

    public init(cpu: SnapshotHost, kvmAPIVersion: UInt32, supportedCPUID: [CPUIDEntry],
                capabilityValue: @escaping @Sendable (Capability) -> Int32) {
        self.cpu = cpu; self.kvmAPIVersion = kvmAPIVersion; self.supportedCPUID = supportedCPUID
        self.capabilityValue = capabilityValue
    }

    /// This host, asked through `system`.
    public static func current(_ system: KVMSystem) throws(MachineError) -> RestoreHost {
        let cpu = try SnapshotHost.current(system)
        do throws(KVMError) {
            return RestoreHost(cpu: cpu, kvmAPIVersion: UInt32(clamping: try system.apiVersion()),
                               supportedCPUID: try system.supportedCPUID(),
                               capabilityValue: { (try? system.check($0)) ?? 0 })
        } catch {
            throw .kvm(error)
        }
    }
}
