// SnapshotHost.swift — the host a snapshot was taken on, as the state file
// records it: CPU vendor, family, model and stepping decoded from CPUID
// leaves 0 and 1 (the caller executes CPUID; this target stays pure).

/// CPU identity of the host that wrote a snapshot.
public struct SnapshotHost: Codable, Sendable, Equatable {
    /// The 12-character vendor string ("GenuineIntel", "AuthenticAMD").
    public var vendor: String
    /// Display family, model and stepping (extended fields folded in).
    public var family: UInt32
    public var model: UInt32
    public var stepping: UInt32

    public init(vendor: String, family: UInt32, model: UInt32, stepping: UInt32) {
        self.vendor = vendor
        self.family = family
        self.model = model
        self.stepping = stepping
    }

    /// Decodes CPUID leaf 0 (vendor in EBX, EDX, ECX) and leaf 1 EAX as the
    /// SDM and APM define the display family and model: the extended family
    /// is added when the base family is 0xF, the extended model is prepended
    /// when the base family is 6 or 0xF.
    public init(leaf0EBX: UInt32, leaf0ECX: UInt32, leaf0EDX: UInt32, leaf1EAX: UInt32) {
        let vendorBytes = [leaf0EBX, leaf0EDX, leaf0ECX].flatMap { word in
            (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) }
        }
        vendor = String(decoding: vendorBytes, as: UTF8.self)
        let baseFamily = (leaf1EAX >> 8) & 0xF
        let baseModel = (leaf1EAX >> 4) & 0xF
        family = baseFamily == 0xF ? baseFamily + ((leaf1EAX >> 20) & 0xFF) : baseFamily
        model = baseFamily == 0x6 || baseFamily == 0xF ? ((leaf1EAX >> 16) & 0xF) << 4 | baseModel : baseModel
        stepping = leaf1EAX & 0xF
    }
}
