// HypercallABI.swift — the numbers of the KVM paravirtual hypercall ABI this
// target speaks: hypercall numbers, the KVM_E* return codes a guest sees, and
// the shared/private page attribute. Values are from the uapi headers
// include/uapi/linux/kvm_para.h and arch/x86/include/uapi/asm/kvm_para.h.

/// `KVM_HC_*` hypercall numbers (include/uapi/linux/kvm_para.h).
public enum HypercallNumber {
    /// `KVM_HC_MAP_GPA_RANGE`: the guest announces that a range of its
    /// guest-physical memory is now shared (plaintext) or private (encrypted).
    public static let mapGPARange: UInt64 = 12
}

/// `KVM_E*` hypercall return codes. A hypercall returns 0 on success and the
/// *negated* code on failure, in RAX.
public enum KVMErrorCode {
    /// `KVM_ENOSYS`: no such hypercall (deliberately not the Linux errno 38).
    public static let enosys: Int64 = 1000
    /// `KVM_EFAULT` = `EFAULT`.
    public static let efault: Int64 = 14
    /// `KVM_EINVAL` = `EINVAL`.
    public static let einval: Int64 = 22
    /// `KVM_E2BIG` = `E2BIG`.
    public static let e2big: Int64 = 7
    /// `KVM_EPERM` = `EPERM`.
    public static let eperm: Int64 = 1
    /// `KVM_EOPNOTSUPP`.
    public static let eopnotsupp: Int64 = 95

    /// The value to put in `run->hypercall.ret` for a failure with `code`:
    /// the two's-complement of `-code`, as the kernel stores it in RAX.
    /// (KVM itself truncates it to 32 bits for a guest not in long mode.)
    public static func returnValue(_ code: Int64) -> UInt64 {
        UInt64(bitPattern: 0 &- code)
    }
}

/// What a range of guest-physical memory currently is, from the host's
/// point of view: `shared` pages are plaintext and visible to the host (and a
/// migration copies them as they are); `private` pages are encrypted or
/// guest_memfd-backed.
public enum PageAttribute: String, Sendable, CaseIterable, Codable {
    case shared
    case `private`
}

/// Bit layout of the MAP_GPA_RANGE attribute word (a2), from
/// arch/x86/include/uapi/asm/kvm_para.h.
public enum MapGPARangeAttributes {
    /// Bits 3:0: page-size encoding (`KVM_MAP_GPA_RANGE_PAGE_SZ_*`).
    public static let pageSizeMask: UInt64 = 0xF
    /// Bit 4: `KVM_MAP_GPA_RANGE_ENCRYPTED` (set = private, clear = shared).
    public static let encrypted: UInt64 = 1 << 4
    /// Bits 63:5: reserved, must be zero.
    public static let reservedMask: UInt64 = ~0x1F
    /// `KVM_MAP_GPA_RANGE_PAGE_SZ_4K`, `_2M`, `_1G`.
    public static let pageSize4K: UInt64 = 0
    public static let pageSize2M: UInt64 = 1
    public static let pageSize1G: UInt64 = 2

    /// Bytes per page for a page-size encoding; nil for the reserved values 3..15.
    public static func bytes(forPageSizeEncoding encoding: UInt64) -> UInt64? {
        switch encoding {
        case pageSize4K: return 4096
        case pageSize2M: return 2 << 20
        case pageSize1G: return 1 << 30
        default: return nil
        }
    }

    /// The attribute word a guest would pass for `attribute` with page size `pageSizeEncoding`.
    public static func word(_ attribute: PageAttribute, pageSizeEncoding: UInt64 = pageSize4K) -> UInt64 {
        (attribute == .private ? encrypted : 0) | (pageSizeEncoding & pageSizeMask)
    }
}
