// CPUModel: one CPUID entry as data (the shape of KVM's kvm_cpuid_entry2,
// without importing KVM), the registers by name, the table helpers every
// other file uses, and the one error type of the target.

/// One CPUID entry as KVM's kvm_cpuid_entry2 holds it (the VMM converts to/from KVM's CPUIDEntry).
public struct CPUIDLeaf: Codable, Sendable, Hashable {
    public var function, index, flags, eax, ebx, ecx, edx: UInt32

    /// `flags` bit 0 (KVM_CPUID_FLAG_SIGNIFCANT_INDEX): the entry depends on ECX (`index`).
    public static let significantIndex: UInt32 = 1

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0,
                ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }

    /// The value of one register.
    public subscript(_ register: CPUIDRegister) -> UInt32 {
        get {
            switch register {
            case .eax: return eax
            case .ebx: return ebx
            case .ecx: return ecx
            case .edx: return edx
            }
        }
        set {
            switch register {
            case .eax: eax = newValue
            case .ebx: ebx = newValue
            case .ecx: ecx = newValue
            case .edx: edx = newValue
            }
        }
    }
}

public enum CPUIDRegister: String, Codable, Sendable, CaseIterable { case eax, ebx, ecx, edx }

/// Lookups and edits on a CPUID table (an array of leaves, as KVM hands it out).
extension [CPUIDLeaf] {
    /// The entry for `function`/`index`; an entry without a significant index answers every index.
    func leaf(_ function: UInt32, _ index: UInt32 = 0) -> CPUIDLeaf? {
        first { $0.function == function && ($0.index == index || $0.flags & CPUIDLeaf.significantIndex == 0) }
    }

    func value(_ function: UInt32, _ index: UInt32, _ register: CPUIDRegister) -> UInt32 {
        leaf(function, index)?[register] ?? 0
    }

    /// Changes the entry for `function`/`index` in place; false if there is none.
    @discardableResult
    mutating func edit(_ function: UInt32, _ index: UInt32 = 0, _ change: (inout CPUIDLeaf) -> Void) -> Bool {
        guard let position = firstIndex(where: {
            $0.function == function && ($0.index == index || $0.flags & CPUIDLeaf.significantIndex == 0)
        }) else { return false }
        change(&self[position])
        return true
    }

    /// The vendor string of leaf 0 (EBX, EDX, ECX), "" if the table has none.
    public var vendor: String {
        guard let zero = leaf(0) else { return "" }
        return CPUVendorString.decode(ebx: zero.ebx, edx: zero.edx, ecx: zero.ecx)
    }

    /// Sorted by function, then index: the order tables are written and compared in.
    var sortedByLeaf: [CPUIDLeaf] { sorted { ($0.function, $0.index) < ($1.function, $1.index) } }
}

/// The 12-byte vendor string in CPUID leaf 0 (and 0x80000000) EBX, EDX, ECX.
enum CPUVendorString {
    static let intel = "GenuineIntel"
    static let amd = "AuthenticAMD"

    static func decode(ebx: UInt32, edx: UInt32, ecx: UInt32) -> String {
        let bytes = [ebx, edx, ecx].flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// EBX, EDX, ECX of a vendor string of at most 12 ASCII bytes (shorter ones NUL-padded).
    static func encode(_ vendor: String) -> (ebx: UInt32, edx: UInt32, ecx: UInt32) {
        let words = packWords(Array(vendor.utf8), count: 3)
        return (words[0], words[1], words[2])
    }

    /// `count` little-endian words from `bytes`, NUL-padded and cut to fit.
    static func packWords(_ bytes: [UInt8], count: Int) -> [UInt32] {
        (0..<count).map { word in
            (0..<4).reduce(UInt32(0)) { value, byte in
                let offset = word * 4 + byte
                return value | UInt32(offset < bytes.count ? bytes[offset] : 0) << (byte * 8)
            }
        }
    }
}

/// A refusal or a malformed input, as one line; file errors read "PATH:LINE:COL: message".
public struct CPUModelError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    /// Where in a model file, when the problem is in one.
    public var file: String?
    public var line: Int?
    public var column: Int?

    public init(_ message: String, file: String? = nil, line: Int? = nil, column: Int? = nil) {
        self.message = message; self.file = file; self.line = line; self.column = column
    }

    public var description: String {
        guard let file else { return message }
        guard let line, let column else { return "\(file): \(message)" }
        return "\(file):\(line):\(column): \(message)"
    }
}
