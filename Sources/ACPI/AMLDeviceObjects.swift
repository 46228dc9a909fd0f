// AMLDeviceObjects.swift — the conventional objects of a device in the ACPI
// namespace, as `Name`s the OS evaluates: _HID (§6.1.5, an EISA ID or a
// string), _UID (§6.1.12), _ADR (§6.1.1), _STA (§6.3.7) and _CRS (§6.2.2),
// plus the device builder that puts them in their usual order.

extension AML {
    /// _STA bits (§6.3.7): present, enabled, shown in the UI, functioning.
    public static let statusPresentEnabledFunctioning: UInt64 = 0x0F

    /// `Name (_HID, EISAID (id))` for a "PNP0501"-style ID, or a string _HID
    /// ("ACPI0010") otherwise.
    public static func hid(_ id: String) -> AML {
        let isEISA = id.utf8.count == 7 && id.utf8.prefix(3).allSatisfy { (0x41...0x5A).contains($0) }
        return .name("_HID", isEISA ? .eisaID(id) : .string(id))
    }

    /// `Name (_UID, uid)`.
    public static func uid(_ uid: UInt64) -> AML { .name("_UID", .integer(uid)) }

    /// `Name (_ADR, address)`: for a PCI function, device << 16 | function.
    public static func adr(_ address: UInt64) -> AML { .name("_ADR", .integer(address)) }

    /// `Name (_STA, status)`.
    public static func sta(_ status: UInt64 = statusPresentEnabledFunctioning) -> AML { .name("_STA", .integer(status)) }

    /// `Name (_CRS, ResourceTemplate () { resources })`.
    public static func crs(_ resources: [AMLResource]) -> AML { .name("_CRS", .resourceTemplate(resources)) }

    /// `Device (path) { _HID, [_UID], [_STA], [_CRS], extra }`.
    public static func device(_ path: String, hid id: String, uid: UInt64? = nil, status: UInt64? = nil,
                              resources: [AMLResource]? = nil, _ extra: [AML] = []) -> AML {
        var terms = [hid(id)]
        if let uid { terms.append(.uid(uid)) }
        if let status { terms.append(.sta(status)) }
        if let resources { terms.append(.crs(resources)) }
        return .device(path, terms + extra)
    }
}
