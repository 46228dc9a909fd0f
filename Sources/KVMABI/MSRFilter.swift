// KVMABI: values of the KVM user-space ABI that the KVM layer and the pure
// modules (MSR policy, hypercalls) share, so that each exists once: the MSR
// filter of KVM_X86_SET_MSR_FILTER with its limits, and the exit reasons of
// KVM_CAP_X86_USER_SPACE_MSR. Pure values; the KVM layer copies them into the
// C structures.

/// `struct kvm_msr_filter`: the default for MSRs no range covers, and up to
/// 16 bitmap ranges. KVM consults the first range of the access's kind
/// (read or write) that contains the index.
public struct MSRFilter: Sendable, Equatable {
    /// `KVM_MSR_FILTER_MAX_RANGES`.
    public static let maxRanges = 16
    /// `KVM_MSR_FILTER_MAX_BITMAP_SIZE` (0x600 bytes) × 8 bits.
    public static let maxMSRsPerRange: UInt32 = 0x600 * 8
    /// The x2APIC MSRs: KVM never filters them (guest accesses always reach KVM).
    public static let unfilteredRange: ClosedRange<UInt32> = 0x800...0x8FF

    public enum DefaultAction: UInt32, Sendable { case allow = 0, deny = 1 }

    /// The raw `flags` word: `KVM_MSR_FILTER_DEFAULT_ALLOW` 0 / `DEFAULT_DENY` 1
    /// (other bits exist only so tests can see KVM refuse them).
    public var flags: UInt32
    /// In order; the first range of the access's kind containing an index decides.
    public var ranges: [MSRFilterRange]

    public init(default action: DefaultAction, ranges: [MSRFilterRange]) {
        self.flags = action.rawValue
        self.ranges = ranges
    }

    public init(rawFlags: UInt32, ranges: [MSRFilterRange]) {
        self.flags = rawFlags
        self.ranges = ranges
    }

    /// True for `DEFAULT_ALLOW`.
    public var defaultAllow: Bool { flags & 1 == 0 }

    /// Whether KVM lets a guest access through to its own MSR code, modelling
    /// `kvm_msr_allowed()`: x2APIC MSRs always; else the first range of the
    /// access's kind containing the index decides by its bit; else the default.
    public func allows(_ index: UInt32, write: Bool) -> Bool {
        if Self.unfilteredRange.contains(index) { return true }
        let kind = write ? MSRFilterRange.write : MSRFilterRange.read
        for range in ranges where range.flags & kind != 0 && range.contains(index) { return range.bit(index) }
        return defaultAllow
    }
}

/// `struct kvm_msr_filter_range`.
public struct MSRFilterRange: Sendable, Equatable {
    /// `KVM_MSR_FILTER_READ`.
    public static let read: UInt32 = 1
    /// `KVM_MSR_FILTER_WRITE`.
    public static let write: UInt32 = 2

    /// READ | WRITE (other bits are KVM's to refuse).
    public var flags: UInt32
    public var base: UInt32
    /// `nmsrs`: MSRs base ..< base + count (1 ... `MSRFilter.maxMSRsPerRange`,
    /// checked by the KVM layer before the ioctl).
    public private(set) var count: UInt32
    /// Bit n (LSB first within each byte) = 1 allows MSR base+n. Always the
    /// bytes KVM copies for `count` MSRs: BITS_TO_LONGS(count) * 8.
    public private(set) var bitmap: [UInt8]

    /// A bitmap shorter than KVM reads is padded with zero bits, which deny;
    /// bytes past what KVM reads are dropped (they name no MSR of the range).
    public init(flags: UInt32 = MSRFilterRange.read | MSRFilterRange.write, base: UInt32, count: UInt32, bitmap: [UInt8]) {
        self.flags = flags; self.base = base; self.count = count
        // An oversized count is refused before the ioctl; do not allocate for it.
        let size = Self.bitmapByteCount(for: min(count, MSRFilter.maxMSRsPerRange))
        self.bitmap = Array(bitmap.prefix(size)) + [UInt8](repeating: 0, count: max(0, size - bitmap.count))
    }

    /// What KVM copies for `count` MSRs: BITS_TO_LONGS(count) * 8 bytes.
    public static func bitmapByteCount(for count: UInt32) -> Int { (Int(count) + 63) / 64 * 8 }

    public func contains(_ index: UInt32) -> Bool {
        index >= base && UInt64(index) < UInt64(base) + UInt64(count)
    }

    /// The bit for `index`; false outside the range.
    public func bit(_ index: UInt32) -> Bool {
        guard contains(index) else { return false }
        let n = Int(index - base)
        return n / 8 < bitmap.count && bitmap[n / 8] & (1 << UInt8(n % 8)) != 0
    }
}

/// Why KVM sent a guest's RDMSR/WRMSR to user space (`run->msr.reason`), and
/// the mask of `KVM_CAP_X86_USER_SPACE_MSR` saying which reasons exit.
public struct MSRExitReasons: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `KVM_MSR_EXIT_REASON_INVAL`: KVM implements the MSR but refused this access (a bad value, reserved bits…).
    public static let invalid = MSRExitReasons(rawValue: 1 << 0)
    /// `KVM_MSR_EXIT_REASON_UNKNOWN`: KVM does not implement the MSR.
    public static let unknown = MSRExitReasons(rawValue: 1 << 1)
    /// `KVM_MSR_EXIT_REASON_FILTER`: the MSR filter denied the access.
    public static let filter = MSRExitReasons(rawValue: 1 << 2)
    public static let all: MSRExitReasons = [.invalid, .unknown, .filter]
}
