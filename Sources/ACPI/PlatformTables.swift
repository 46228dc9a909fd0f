// PlatformTables.swift — a whole table set placed in guest memory: the blobs
// a machine copies to their addresses, and the RSDP's address (what a Linux
// boot puts in boot_params.acpi_rsdp_addr; a multiboot kernel scans the BIOS
// area for it instead).
//
// Layout from `tablesBase` upwards, each table 16-byte aligned: DSDT, FADT,
// MADT, [MCFG], RSDT, XSDT. The FACS is apart, 64-byte aligned (ACPI requires
// it), in RAM the guest can write (it writes its waking vector there); the
// RSDP at its own address, 16-byte aligned. The RSDT and XSDT list the FADT,
// the MADT and the MCFG; the DSDT and FACS are reached through the FADT.

/// A table set and where it goes.
public struct PlatformTables: Sendable, Equatable {
    /// Where the pieces go.
    public struct Layout: Sendable, Equatable {
        /// Rounded up to 16 bytes.
        public var tablesBase: UInt64
        public var rsdpAddress: UInt64
        /// Rounded up to 64 bytes.
        public var facsAddress: UInt64

        public init(tablesBase: UInt64, rsdpAddress: UInt64, facsAddress: UInt64) {
            self.tablesBase = tablesBase
            self.rsdpAddress = rsdpAddress
            self.facsAddress = facsAddress
        }
    }

    /// One piece to copy into guest memory.
    public struct Blob: Sendable, Equatable {
        public var address: UInt64
        public var bytes: [UInt8]
        public var signature: String { String(decoding: bytes.prefix(4), as: UTF8.self) }
    }

    /// The DSDT's AML (its body, without the header).
    public var dsdtAML: [UInt8]
    public var fadt: FADT
    public var madt: MADT
    /// MCFG allocations; empty: no MCFG.
    public var ecam: [ECAMRegion]
    public var identity: ACPIIdentity

    public init(dsdtAML: [UInt8], fadt: FADT, madt: MADT, ecam: [ECAMRegion] = [], identity: ACPIIdentity = .deflect) {
        self.dsdtAML = dsdtAML
        self.fadt = fadt
        self.madt = madt
        self.ecam = ecam
        self.identity = identity
    }

    /// The RSDP first, then the tables in layout order (the FACS after the
    /// DSDT). The caller keeps the RSDP and the FACS outside the tables' range.
    public func blobs(_ layout: Layout) -> [Blob] {
        var cursor = ACPIBytes.align(layout.tablesBase, 16)
        var blobs: [Blob] = []
        func place(_ bytes: [UInt8]) -> UInt64 {
            let address = ACPIBytes.align(cursor, 16)
            blobs.append(Blob(address: address, bytes: bytes))
            cursor = address &+ UInt64(bytes.count)
            return address
        }
        let dsdt = place(SystemDescriptionTable.frame(signature: "DSDT", revision: PCDSDT.revision, body: dsdtAML,
                                                      identity: identity))
        let facs = ACPIBytes.align(layout.facsAddress, 64)
        blobs.append(Blob(address: facs, bytes: RootTables.facs()))
        var entries = [place(fadt.table(dsdt: dsdt, facs: facs, identity: identity))]
        entries.append(place(madt.table(identity: identity)))
        if !ecam.isEmpty { entries.append(place(MCFG.table(ecam, identity: identity))) }
        let rsdt = place(RootTables.rsdt(entries, identity: identity))
        let xsdt = place(RootTables.xsdt(entries, identity: identity))
        blobs.insert(Blob(address: layout.rsdpAddress, bytes: RootTables.rsdp(rsdt: rsdt, xsdt: xsdt, identity: identity)), at: 0)
        return blobs
    }
}
