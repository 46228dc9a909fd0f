// MCFG.swift — the PCI Express memory-mapped configuration table, signature
// "MCFG" (PCI Firmware Specification 3.2 §4.1.2, tables 4-2 and 4-3),
// revision 1: 8 reserved bytes, then one 16-byte allocation per ECAM
// region: base address (of bus 0), segment, first and last bus, 4 reserved.

public enum MCFG {
    public static let revision: UInt8 = 1
    public static let allocationSize = 16

    public static func table(_ regions: [ECAMRegion], identity: ACPIIdentity = .deflect) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: 8)
        for region in regions {
            body += ACPIBytes.littleEndian(region.base) + ACPIBytes.littleEndian(region.segment)
                + [region.buses.lowerBound, region.buses.upperBound, 0, 0, 0, 0]
        }
        return SystemDescriptionTable.frame(signature: "MCFG", revision: revision, body: body, identity: identity)
    }
}
