// MapGPARange.swift — decoding and validating the arguments of
// KVM_HC_MAP_GPA_RANGE (a0 = GPA, a1 = number of 4 KiB pages, a2 = attributes)
// into a request, or into the reason it must be refused. Nothing here changes
// state: the handler validates first and only then touches the page map.
import KVMABI

/// A validated MAP_GPA_RANGE call: `[start, start + byteLength)` becomes `attribute`.
public struct MapGPARangeRequest: Sendable, Equatable, CustomStringConvertible {
    /// a0: first guest-physical byte, aligned to `pageSize`.
    public var start: UInt64
    /// a1: the number of 4 KiB pages (always 4 KiB units, whatever `pageSize` says).
    public var pageCount: UInt64
    /// Bytes per page from a2 bits 3:0: 4096, 2 MiB or 1 GiB.
    public var pageSize: UInt64
    /// From a2 bit 4: set = private (encrypted), clear = shared.
    public var attribute: PageAttribute
    /// `pageCount * 4096`, a multiple of `pageSize`.
    public var byteLength: UInt64

    public init(start: UInt64, pageCount: UInt64, pageSize: UInt64, attribute: PageAttribute, byteLength: UInt64) {
        self.start = start
        self.pageCount = pageCount
        self.pageSize = pageSize
        self.attribute = attribute
        self.byteLength = byteLength
    }

    /// The guest-physical bytes the request covers. Validation guarantees
    /// `start + byteLength` does not overflow.
    public var range: Range<UInt64> { start..<(start &+ byteLength) }

    public var description: String {
        "map \(hex(start))..<\(hex(start &+ byteLength)) (\(pageCount) x 4 KiB, page size \(sizeString(pageSize))) \(attribute.rawValue)"
    }
}

/// Why a MAP_GPA_RANGE call was refused. Every case is the guest's fault, is
/// answered with `returnCode` and leaves the page map untouched.
public enum MapGPARangeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// a2 has bits 63:5 set (the payload is the whole a2).
    case reservedAttributeBits(UInt64)
    /// a2 bits 3:0 hold an encoding other than 0 (4K), 1 (2M), 2 (1G).
    case badPageSize(UInt64)
    /// a1 is zero.
    case zeroPages
    /// a0 is not a multiple of the page size.
    case misaligned(start: UInt64, pageSize: UInt64)
    /// The length (a1 × 4 KiB) is not a multiple of the 2 MiB / 1 GiB page size.
    case misalignedLength(byteLength: UInt64, pageSize: UInt64)
    /// a1 × 4096 or a0 + length does not fit in 64 bits.
    case overflow
    /// The range does not lie inside guest memory `[0, limit)`.
    case outsideMemory(start: UInt64, end: UInt64, limit: UInt64)
    /// The range lies inside `[0, limit)` but not inside one RAM range: it
    /// touches the hole between RAM below 3 GiB and RAM from 4 GiB.
    case notRAM(start: UInt64, end: UInt64)

    /// The `KVM_E*` code the guest gets (negated) in RAX.
    ///
    /// Always `KVM_EINVAL`: it is what KVM itself returns for the checks it
    /// makes before exiting to user space (unaligned GPA, zero pages, GFN
    /// wrap-around in `__kvm_emulate_hypercall`), and the remaining checks are
    /// the same kind of fault — malformed arguments. `KVM_EFAULT` would claim a
    /// failed guest-memory access, which never happens here, and guests (Linux,
    /// OVMF) only test for non-zero anyway.
    public var returnCode: Int64 { KVMErrorCode.einval }

    public var description: String {
        switch self {
        case .reservedAttributeBits(let a2):
            return "reserved attribute bits set: a2 = \(hex(a2)) (bits 63:5 must be zero)"
        case .badPageSize(let encoding):
            return "page-size field \(encoding) is not 0 (4 KiB), 1 (2 MiB) or 2 (1 GiB)"
        case .zeroPages:
            return "zero pages"
        case .misaligned(let start, let pageSize):
            return "GPA \(hex(start)) is not aligned to the \(sizeString(pageSize)) page size"
        case .misalignedLength(let byteLength, let pageSize):
            return "length \(hex(byteLength)) is not a multiple of the \(sizeString(pageSize)) page size"
        case .overflow:
            return "range overflows 64 bits"
        case .outsideMemory(let start, let end, let limit):
            return "range \(hex(start))..<\(hex(end)) is outside guest memory [0, \(hex(limit)))"
        case .notRAM(let start, let end):
            return "range \(hex(start))..<\(hex(end)) is not inside one RAM range (it touches the hole below 4 GiB)"
        }
    }
}

/// Turns the three MAP_GPA_RANGE argument registers into a request.
public enum MapGPARangeDecoder {
    /// The size unit of a1, fixed by the ABI ("a1: the number of (4kb) pages").
    public static let unit: UInt64 = 4096

    /// Validates `a0` (GPA), `a1` (number of 4 KiB pages) and `a2` (attributes)
    /// against guest memory `[0, memoryLimit)`.
    ///
    /// The page-size field is a hint in the kernel docs ("preferred page
    /// size"); we hold the guest to it: a 2 MiB or 1 GiB request must start and
    /// end on that boundary. Checks run in a fixed order (attribute word, page
    /// size, count, length overflow, alignment, end overflow, bounds) so one
    /// call always yields the same error.
    public static func decode(a0: UInt64, a1: UInt64, a2: UInt64, memoryLimit: UInt64) -> Result<MapGPARangeRequest, MapGPARangeError> {
        if a2 & MapGPARangeAttributes.reservedMask != 0 {
            return .failure(.reservedAttributeBits(a2))
        }
        let encoding = a2 & MapGPARangeAttributes.pageSizeMask
        guard let pageSize = MapGPARangeAttributes.bytes(forPageSizeEncoding: encoding) else {
            return .failure(.badPageSize(encoding))
        }
        if a1 == 0 {
            return .failure(.zeroPages)
        }
        let (byteLength, lengthOverflow) = a1.multipliedReportingOverflow(by: unit)
        if lengthOverflow {
            return .failure(.overflow)
        }
        if a0 % pageSize != 0 {
            return .failure(.misaligned(start: a0, pageSize: pageSize))
        }
        if byteLength % pageSize != 0 {
            return .failure(.misalignedLength(byteLength: byteLength, pageSize: pageSize))
        }
        let (end, endOverflow) = a0.addingReportingOverflow(byteLength)
        if endOverflow {
            return .failure(.overflow)
        }
        if end > memoryLimit {
            return .failure(.outsideMemory(start: a0, end: end, limit: memoryLimit))
        }
        let attribute: PageAttribute = a2 & MapGPARangeAttributes.encrypted != 0 ? .private : .shared
        return .success(MapGPARangeRequest(start: a0, pageCount: a1, pageSize: pageSize,
                                           attribute: attribute, byteLength: byteLength))
    }
}


/// "4 KiB", "2 MiB", "1 GiB" for exact binary multiples, else hex bytes.
func sizeString(_ bytes: UInt64) -> String {
    let units: [(shift: UInt64, name: String)] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")]
    for unit in units where bytes >= 1 << unit.shift && bytes % (1 << unit.shift) == 0 {
        return "\(bytes >> unit.shift) \(unit.name)"
    }
    return "\(bytes) B"
}
