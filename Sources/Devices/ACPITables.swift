// ACPITables.swift — the ACPI table sets of Deflect's machines, built by the
// ACPI target from this target's device constants (the PM block of
// ACPIPMTimer.swift, the RTC's century byte, the i8042's reset, the SLP_TYP
// values ACPIPM1Registers decodes):
//
//   - `build`: what a multiboot test kernel looks for — RSDP, RSDT, XSDT,
//     MADT, FADT, FACS and a DSDT holding only `\_S3` and `\_S5`;
//   - `buildPC`: the PC platform a stock Linux kernel boots on — the same
//     FADT, MADT and FACS, the DSDT of `PCDSDT` (PCI host bridge, COM1, RTC,
//     sleep states) and an MCFG when PCI has an ECAM.
//
// Pure bytes: the machine copies each blob into guest memory at its address
// (and should mark 0xE0000–0xFFFFF reserved in the memory map). With the
// defaults the tables start at 0xE0000 and the RSDP sits at 0xF0000 (where
// SeaBIOS-era scanners also look first); 254 vCPUs need about 2.5 KiB. The
// FACS is apart, 64-byte aligned, in writable RAM the memory map reports
// reserved: the last 64 bytes of the EBDA (0x9FFC0). The guest writes its S3
// waking vector there, which the read-only BIOS area would drop (QEMU keeps
// its FACS in reserved RAM too).
//
// Revisions: RSDP 2 (ACPI 2.0+, XSDT present), FADT 3 (the 244-byte ACPI 2.0
// layout QEMU's PC machines also use), MADT 3, DSDT 2 (64-bit AML integers),
// FACS version 1, MCFG 1.

import ACPI

/// The ACPI table set for one machine.
public struct ACPITableSet {
    /// Where the RSDP goes by default: 16-byte aligned inside 0xE0000–0xFFFFF.
    public static let defaultRSDPAddress: UInt64 = 0xF_0000
    /// Where the other tables start by default (they grow upwards, well below
    /// the RSDP for any supported vCPU count).
    public static let defaultTablesBase: UInt64 = 0xE_0000
    /// The BIOS area a multiboot kernel scans for the RSDP.
    public static let biosArea: ClosedRange<UInt64> = 0xE_0000...0xF_FFFF
    /// Where the FACS goes by default: the last 64 bytes of the EBDA
    /// (0x9FC00–0x9FFFF), RAM the guest can write and the memory map reserves.
    public static let defaultFACSAddress: UInt64 = 0x9_FFC0
    /// FACS field offsets (ACPI 6.5 table 5.14), for the machine's S3
    /// code (which does not import ACPI).
    public enum FACSField {
        public static let firmwareWakingVector = RootTables.FACSField.firmwareWakingVector
        public static let flags = RootTables.FACSField.flags
        public static let extendedFirmwareWakingVector = RootTables.FACSField.extendedFirmwareWakingVector
        public static let version = RootTables.FACSField.version
        public static let ospmFlags = RootTables.FACSField.ospmFlags
    }

    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    public static let ioAPICAddress: UInt32 = 0xFEC0_0000
    /// The SCI's ISA IRQ (and GSI): 9, as on QEMU's PC machines.
    public static let sciInterrupt: UInt16 = 9
    /// xAPIC IDs 0…254 (255 is broadcast) must fit in 8 bits: vCPU counts
    /// are clamped to 1...254.
    public static let maxVCPUs = 254
    /// The ID of KVM's in-kernel IOAPIC after reset (QEMU's MADT says 0 too;
    /// the table must describe the real device).
    public static let ioAPICID: UInt8 = 0

    public static let oemID = ACPIIdentity.deflect.oemID
    public static let oemTableID = ACPIIdentity.deflect.oemTableID
    public static let creatorID = ACPIIdentity.deflect.creatorID

    /// FADT flags (ACPI 6.5 table 5.10).
    public typealias FADTFlags = FADT.Flags

    /// `[(address, bytes)]` for the RSDP and every table of a multiboot test
    /// kernel's machine; copy each into guest memory. `vcpuCount` is clamped
    /// to 1...254; `tablesBase` is rounded up to 16 bytes and `facsAddress`
    /// to 64. The caller keeps the RSDP and the FACS out of the table range
    /// (the defaults do) and the RSDP inside the BIOS area so kernels find it.
    public static func build(vcpuCount: Int, tablesBase: UInt64 = defaultTablesBase,
                             rsdpAddress: UInt64 = defaultRSDPAddress,
                             facsAddress: UInt64 = defaultFACSAddress) -> [(address: UInt64, bytes: [UInt8])] {
        // QEMU's sleep-state objects (hw/i386/acpi-build.c) and nothing else.
        // The packages are fixed and valid, so their encoding cannot fail.
        let aml = (try? PCDSDT.sleepObjects(sleepTypes)) ?? []
        let tables = PlatformTables(dsdtAML: aml, fadt: fadt, madt: madt(vcpuCount: vcpuCount))
        return tables.blobs(PlatformTables.Layout(tablesBase: tablesBase, rsdpAddress: rsdpAddress, facsAddress: facsAddress))
            .map { (address: $0.address, bytes: $0.bytes) }
    }

    /// The PC platform's table set for a Linux guest: the DSDT describes the
    /// PCI host bridge with `pci`'s windows, COM1, the RTC and the sleep
    /// states; an MCFG and its motherboard reservation come with `ecam`.
    /// Placement as `build`. Throws when the windows contradict each other.
    public static func buildPC(vcpuCount: Int, pci: PCIHostBridgeWindows, ecam: ECAMRegion? = nil,
                               tablesBase: UInt64 = defaultTablesBase, rsdpAddress: UInt64 = defaultRSDPAddress,
                               facsAddress: UInt64 = defaultFACSAddress) throws(ACPIError) -> [(address: UInt64, bytes: [UInt8])] {
        let dsdt = try PCDSDT.aml(PCDSDT.Configuration(pci: pci, ecam: ecam, sleep: sleepTypes))
        let tables = PlatformTables(dsdtAML: dsdt, fadt: fadt, madt: madt(vcpuCount: vcpuCount), ecam: ecam.map { [$0] } ?? [])
        return tables.blobs(PlatformTables.Layout(tablesBase: tablesBase, rsdpAddress: rsdpAddress, facsAddress: facsAddress))
            .map { (address: $0.address, bytes: $0.bytes) }
    }

    /// `\_S3` and `\_S5` as ACPIPM1Registers decodes them: 1 is suspend to
    /// RAM, 0 soft off.
    public static let sleepTypes = PCDSDT.SleepTypes(s3: ACPIPM1Registers.Control.suspendToRAMType,
                                                     s5: ACPIPM1Registers.Control.softOffType)

    /// The FADT of both sets: the PM block of ACPIPMTimer.swift, the SCI on
    /// IRQ 9, the RTC's century byte, legacy devices and an 8042, and the
    /// reset register the i8042 implements (port 0x64, value 0xFE: Deflect
    /// has no 0xCF9 reset control register).
    static let fadt = FADT(
        sciInterrupt: sciInterrupt,
        pm: FADT.PMBlock(eventBlock: ACPIPMPorts.pm1aEventBlock, eventLength: ACPIPMPorts.pm1EventLength,
                         controlBlock: ACPIPMPorts.pm1aControlBlock, controlLength: ACPIPMPorts.pm1ControlLength,
                         timerBlock: ACPIPMPorts.timer, timerLength: ACPIPMPorts.timerLength),
        centuryIndex: RTCCMOS.Register.century,
        reset: .i8042)

    /// One LAPIC per vCPU (clamped to 1...254), KVM's IOAPIC, the PC's
    /// overrides (IRQ 0 → GSI 2, the SCI level-triggered), NMI on LINT1.
    static func madt(vcpuCount: Int) -> MADT {
        MADT(localAPICAddress: localAPICAddress, apicIDs: MADT.apicIDs(vcpuCount: min(vcpuCount, maxVCPUs)),
             ioAPIC: MADT.IOAPIC(id: ioAPICID, address: ioAPICAddress),
             overrides: MADT.pcOverrides(sci: UInt8(sciInterrupt)))
    }
}
