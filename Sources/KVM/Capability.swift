// KVM: the KVM capabilities Deflect uses, with their uapi numbers and names,
// and the KVM_ENABLE_CAP argument VM and vCPU fds share.
internal import CKVM

/// A KVM capability (`KVM_CAP_*`), queried with KVM_CHECK_EXTENSION and,
/// for some, turned on with KVM_ENABLE_CAP.
public struct Capability: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let irqchip = Capability(rawValue: 0)          // KVM_CAP_IRQCHIP
    public static let hlt = Capability(rawValue: 1)              // KVM_CAP_HLT
    public static let userMemory = Capability(rawValue: 3)       // KVM_CAP_USER_MEMORY
    public static let setTSSAddress = Capability(rawValue: 4)    // KVM_CAP_SET_TSS_ADDR
    public static let extCPUID = Capability(rawValue: 7)         // KVM_CAP_EXT_CPUID
    public static let nrVCPUs = Capability(rawValue: 9)          // KVM_CAP_NR_VCPUS
    public static let nrMemorySlots = Capability(rawValue: 10)   // KVM_CAP_NR_MEMSLOTS
    public static let mpState = Capability(rawValue: 14)         // KVM_CAP_MP_STATE
    public static let setIdentityMapAddress = Capability(rawValue: 37) // KVM_CAP_SET_IDENTITY_MAP_ADDR
    public static let vcpuEvents = Capability(rawValue: 41)      // KVM_CAP_VCPU_EVENTS
    public static let pit2 = Capability(rawValue: 33)            // KVM_CAP_PIT2
    public static let xsave = Capability(rawValue: 55)           // KVM_CAP_XSAVE
    public static let xcrs = Capability(rawValue: 56)            // KVM_CAP_XCRS
    public static let maxVCPUs = Capability(rawValue: 66)        // KVM_CAP_MAX_VCPUS
    public static let readonlyMemory = Capability(rawValue: 81)  // KVM_CAP_READONLY_MEM
    public static let oneReg = Capability(rawValue: 70)          // KVM_CAP_ONE_REG
    public static let syncRegisters = Capability(rawValue: 74)   // KVM_CAP_SYNC_REGS
    public static let immediateExit = Capability(rawValue: 136)  // KVM_CAP_IMMEDIATE_EXIT
    public static let getMSRFeatures = Capability(rawValue: 153) // KVM_CAP_GET_MSR_FEATURES
    public static let x86UserSpaceMSR = Capability(rawValue: 188) // KVM_CAP_X86_USER_SPACE_MSR
    public static let x86MSRFilter = Capability(rawValue: 189)   // KVM_CAP_X86_MSR_FILTER
    public static let exitHypercall = Capability(rawValue: 201)  // KVM_CAP_EXIT_HYPERCALL
    public static let binaryStatsFD = Capability(rawValue: 203)  // KVM_CAP_BINARY_STATS_FD
    public static let adjustClock = Capability(rawValue: 39)     // KVM_CAP_ADJUST_CLOCK (KVM_GET/SET_CLOCK)
    public static let xsave2 = Capability(rawValue: 208)         // KVM_CAP_XSAVE2 (answer: XSAVE image bytes)
    public static let debugRegisters = Capability(rawValue: 50)  // KVM_CAP_DEBUGREGS
    public static let tscControl = Capability(rawValue: 60)      // KVM_CAP_TSC_CONTROL (KVM_SET_TSC_KHZ per vCPU)
    public static let getTSCKHz = Capability(rawValue: 61)       // KVM_CAP_GET_TSC_KHZ
    public static let manualDirtyLogProtect2 = Capability(rawValue: 168) // KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (answer: supported flags)
    public static let sregs2 = Capability(rawValue: 200)         // KVM_CAP_SREGS2 (KVM_GET/SET_SREGS2, with the PDPTRs)

    /// The capabilities `deflect doctor` reports, in the order it prints them.
    public static let reported: [Capability] = [
        .userMemory, .setTSSAddress, .setIdentityMapAddress, .extCPUID, .nrVCPUs, .maxVCPUs,
        .nrMemorySlots, .readonlyMemory, .mpState, .irqchip, .pit2, .vcpuEvents, .xsave, .xsave2, .xcrs, .oneReg, .syncRegisters,
        .immediateExit, .getMSRFeatures, .x86UserSpaceMSR, .x86MSRFilter, .exitHypercall, .binaryStatsFD, .adjustClock,
    ]

    public var name: String {
        switch rawValue {
        case 0: return "KVM_CAP_IRQCHIP"
        case 1: return "KVM_CAP_HLT"
        case 3: return "KVM_CAP_USER_MEMORY"
        case 4: return "KVM_CAP_SET_TSS_ADDR"
        case 7: return "KVM_CAP_EXT_CPUID"
        case 9: return "KVM_CAP_NR_VCPUS"
        case 10: return "KVM_CAP_NR_MEMSLOTS"
        case 14: return "KVM_CAP_MP_STATE"
        case 33: return "KVM_CAP_PIT2"
        case 37: return "KVM_CAP_SET_IDENTITY_MAP_ADDR"
        case 41: return "KVM_CAP_VCPU_EVENTS"
        case 55: return "KVM_CAP_XSAVE"
        case 56: return "KVM_CAP_XCRS"
        case 66: return "KVM_CAP_MAX_VCPUS"
        case 81: return "KVM_CAP_READONLY_MEM"
        case 70: return "KVM_CAP_ONE_REG"
        case 74: return "KVM_CAP_SYNC_REGS"
        case 136: return "KVM_CAP_IMMEDIATE_EXIT"
        case 153: return "KVM_CAP_GET_MSR_FEATURES"
        case 188: return "KVM_CAP_X86_USER_SPACE_MSR"
        case 189: return "KVM_CAP_X86_MSR_FILTER"
        case 201: return "KVM_CAP_EXIT_HYPERCALL"
        case 203: return "KVM_CAP_BINARY_STATS_FD"
        case 39: return "KVM_CAP_ADJUST_CLOCK"
        case 208: return "KVM_CAP_XSAVE2"
        case 50: return "KVM_CAP_DEBUGREGS"
        case 60: return "KVM_CAP_TSC_CONTROL"
        case 61: return "KVM_CAP_GET_TSC_KHZ"
        case 168: return "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2"
        case 200: return "KVM_CAP_SREGS2"
        default: return "KVM_CAP_\(rawValue)"
        }
    }

    public var description: String { "\(name) (\(rawValue))" }
}

extension Capability {
    /// The KVM_ENABLE_CAP argument; kvm_enable_cap has room for 4 arguments,
    /// and dropping one silently would enable something else than asked.
    func enableRequest(arguments: [UInt64]) throws(KVMError) -> kvm_enable_cap {
        guard arguments.count <= 4 else {
            throw .invalidArgument(request: "KVM_ENABLE_CAP(\(name))", reason: "\(arguments.count) arguments, at most 4")
        }
        var request = kvm_enable_cap()
        request.cap = rawValue
        withUnsafeMutableBytes(of: &request.args) { raw in
            for (i, value) in arguments.enumerated() { raw.storeBytes(of: value, toByteOffset: i * 8, as: UInt64.self) }
        }
        return request
    }
}
