// KVM: x86 ONE_REG register ids (KVM_GET_ONE_REG / KVM_SET_ONE_REG /
// KVM_GET_REG_LIST), Linux 6.18 encoding:
//   KVM_REG_X86 (0x2000000000000000) | type << 32 | KVM_REG_SIZE_U64 | index
// type 2 = MSR (index = MSR number), type 3 = KVM-defined (0 = guest SSP).

/// A typed x86 ONE_REG id.
public struct X86RegisterID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public static let x86Arch: UInt64 = 0x2000_0000_0000_0000
    public static let sizeU64: UInt64 = 0x0030_0000_0000_0000
    static let archMask: UInt64 = 0xFF00_0000_0000_0000
    static let sizeMask: UInt64 = 0x00F0_0000_0000_0000
    public static let typeMSR: UInt64 = 2
    public static let typeKVM: UInt64 = 3

    public enum Kind: Equatable, Sendable {
        case msr(UInt32)
        case kvmDefined(UInt32)
    }

    public let rawValue: UInt64

    /// Accepts any raw id (KVM decides whether it is valid; tests send bad ones on purpose).
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// The ONE_REG id of MSR `index`.
    public static func msr(_ index: UInt32) -> X86RegisterID {
        X86RegisterID(rawValue: x86Arch | typeMSR << 32 | sizeU64 | UInt64(index))
    }

    /// A KVM-defined register (`KVM_X86_REG_TYPE_KVM`).
    public static func kvmDefined(_ index: UInt32) -> X86RegisterID {
        X86RegisterID(rawValue: x86Arch | typeKVM << 32 | sizeU64 | UInt64(index))
    }

    /// `KVM_REG_GUEST_SSP`: the guest's shadow-stack pointer (CET).
    public static let guestSSP = kvmDefined(0)

    /// The decoded kind, or nil when the id is not a well-formed x86 U64 id
    /// (wrong arch, wrong size, unknown type, or reserved bits 51:35 set).
    public var kind: Kind? {
        guard rawValue & Self.archMask == Self.x86Arch, rawValue & Self.sizeMask == Self.sizeU64 else { return nil }
        let reserved = rawValue & 0x000F_FFF8_0000_0000
        guard reserved == 0 else { return nil }
        let type = (rawValue >> 32) & 0x7
        let index = UInt32(truncatingIfNeeded: rawValue)
        switch type {
        case Self.typeMSR: return .msr(index)
        case Self.typeKVM: return .kvmDefined(index)
        default: return nil
        }
    }

    public var description: String {
        switch kind {
        case let .msr(index)?: return "MSR 0x" + String(index, radix: 16)
        case .kvmDefined(0)?: return "KVM_REG_GUEST_SSP"
        case let .kvmDefined(index)?: return "KVM register \(index)"
        case nil: return "register id 0x" + String(rawValue, radix: 16)
        }
    }
}
