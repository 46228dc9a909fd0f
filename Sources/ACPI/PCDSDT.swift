// PCDSDT.swift — the DSDT of Deflect's PC platform, as a stock Linux kernel
// reads it (QEMU's `-M pc` DSDT is the model, without its PCI hot-plug, ISA
// bridge and CPU AML):
//
//   Scope (\_SB) {
//     Device (PCI0) {                     // PCI host bridge
//       _HID PNP0A03, _SEG 0, _BBN first bus, _UID 0
//       _CRS: WordBusNumber (buses), IO (Decode16, 0xCF8, 0xCF8, 1, 8),
//             WordIO 0x0000–0x0CF7, WordIO 0x0D00–0xFFFF,
//             DWordMemory (the 32-bit PCI hole), [QWordMemory (above RAM)]
//     }
//     Device (COM1) { _HID PNP0501, _UID 1, _STA 0x0F, _CRS IO 0x3F8–0x3FF, IRQNoFlags {4} }
//     Device (RTC)  { _HID PNP0B00, _STA 0x0F, _CRS IO 0x70–0x71, IRQNoFlags {8} }
//     [Device (ECAM) { _HID PNP0C02, _UID 1, _CRS Memory32Fixed/QWordMemory (the ECAM) }]
//   }
//   Name (_S3, Package (4) { s3, s3, 0, 0 })   // when the platform suspends
//   Name (_S5, Package (4) { s5, s5, 0, 0 })
//
// The _Sx packages hold the PM1a/PM1b SLP_TYP values the PM1 control
// register decodes (ACPI 6.5 §7.4.2); Deflect's ACPIPM1Registers decode 0 as
// soft-off and 1 as suspend to RAM, as QEMU's acpi_pm1_cnt_write does. The
// ECAM device reserves the MCFG's region as a motherboard resource, without
// which Linux refuses to use MMCONFIG ("not reserved in ACPI motherboard
// resources").

/// The PC platform's DSDT.
public enum PCDSDT {
    /// The SLP_TYP values of the sleep states the platform has.
    public struct SleepTypes: Sendable, Equatable {
        /// S3 (suspend to RAM); nil: no `\_S3`.
        public var s3: UInt8?
        /// S5 (soft off).
        public var s5: UInt8
        public init(s3: UInt8?, s5: UInt8) {
            self.s3 = s3
            self.s5 = s5
        }
    }

    /// A legacy ISA device: its I/O ports and IRQ.
    public struct ISADevice: Sendable, Equatable {
        public var ports: ClosedRange<UInt16>
        public var irq: UInt8
        public init(ports: ClosedRange<UInt16>, irq: UInt8) {
            self.ports = ports
            self.irq = irq
        }
        /// COM1: 0x3F8–0x3FF, IRQ 4.
        public static let com1 = ISADevice(ports: 0x3F8...0x3FF, irq: 4)
        /// The CMOS RTC: 0x70–0x71, IRQ 8.
        public static let rtc = ISADevice(ports: 0x70...0x71, irq: 8)
    }

    /// What the DSDT describes.
    public struct Configuration: Sendable, Equatable {
        public var pci: PCIHostBridgeWindows
        public var ecam: ECAMRegion?
        public var com1: ISADevice?
        public var rtc: ISADevice?
        public var sleep: SleepTypes

        public init(pci: PCIHostBridgeWindows, ecam: ECAMRegion? = nil, com1: ISADevice? = .com1,
                    rtc: ISADevice? = .rtc, sleep: SleepTypes) {
            self.pci = pci
            self.ecam = ecam
            self.com1 = com1
            self.rtc = rtc
            self.sleep = sleep
        }
    }

    /// The DSDT's revision: 2, so AML integers are 64-bit.
    public static let revision: UInt8 = 2

    /// The whole table.
    public static func table(_ configuration: Configuration, identity: ACPIIdentity = .deflect) throws(ACPIError) -> [UInt8] {
        SystemDescriptionTable.frame(signature: "DSDT", revision: revision, body: try aml(configuration), identity: identity)
    }

    /// The AML of the table's body.
    public static func aml(_ configuration: Configuration) throws(ACPIError) -> [UInt8] {
        try validate(configuration)
        var devices = [hostBridge(configuration.pci)]
        if let com1 = configuration.com1 {
            devices.append(.device("COM1", hid: "PNP0501", uid: 1, status: AML.statusPresentEnabledFunctioning,
                                   resources: isaResources(com1)))
        }
        if let rtc = configuration.rtc {
            devices.append(.device("RTC", hid: "PNP0B00", status: AML.statusPresentEnabledFunctioning,
                                   resources: isaResources(rtc)))
        }
        if let ecam = configuration.ecam, let range = ecam.range {
            devices.append(.device("ECAM", hid: "PNP0C02", uid: 1, resources: [reservation(range)]))
        }
        do throws(AMLError) {
            return try (AML.scope("\\_SB", devices).encode() + sleepObjects(configuration.sleep))
        } catch {
            throw .aml(error)
        }
    }

    /// `Name (_S3, …)` (if any) and `Name (_S5, …)`.
    public static func sleepObjects(_ sleep: SleepTypes) throws(AMLError) -> [UInt8] {
        var terms: [AML] = []
        if let s3 = sleep.s3 { terms.append(sleepPackage("_S3", s3)) }
        terms.append(sleepPackage("_S5", sleep.s5))
        var bytes: [UInt8] = []
        for term in terms { try term.encode(into: &bytes) }
        return bytes
    }

    /// `Name (_Sx, Package (4) { PM1a SLP_TYP, PM1b SLP_TYP, reserved, reserved })`.
    private static func sleepPackage(_ name: String, _ type: UInt8) -> AML {
        .name(name, .package([.integer(UInt64(type)), .integer(UInt64(type)), .zero, .zero]))
    }

    private static func hostBridge(_ pci: PCIHostBridgeWindows) -> AML {
        var resources: [AMLResource] = [
            .wordBusNumber(UInt16(pci.buses.lowerBound)...UInt16(pci.buses.upperBound), usage: .producer),
            .io(decode16: true, minimum: PCIHostBridgeWindows.configPorts.lowerBound,
                maximum: PCIHostBridgeWindows.configPorts.lowerBound, alignment: 1,
                length: UInt8(PCIHostBridgeWindows.configPorts.count)),
        ]
        resources += PCIHostBridgeWindows.ioWindows.map { AMLResource.wordIO($0, usage: .producer) }
        resources.append(.dwordMemory(pci.mmio32, usage: .producer, caching: .nonCacheable, writable: true))
        if let mmio64 = pci.mmio64 {
            resources.append(.qwordMemory(mmio64, usage: .producer, caching: .cacheable, writable: true))
        }
        return .device("PCI0", [
            .hid("PNP0A03"),
            .name("_SEG", .zero),
            .name("_BBN", .integer(UInt64(pci.buses.lowerBound))),
            .uid(0),
            .crs(resources),
        ])
    }

    /// IO (Decode16, first, first, 1, count) and IRQNoFlags {irq}.
    private static func isaResources(_ device: ISADevice) -> [AMLResource] {
        [.io(decode16: true, minimum: device.ports.lowerBound, maximum: device.ports.lowerBound, alignment: 1,
             length: UInt8(clamping: device.ports.count)),
         .irqNoFlags([device.irq])]
    }

    /// A consumed memory range: Memory32Fixed below 4 GiB, QWordMemory above.
    private static func reservation(_ range: ClosedRange<UInt64>) -> AMLResource {
        if range.upperBound <= UInt64(UInt32.max) {
            return .memory32Fixed(writable: true, base: UInt32(range.lowerBound),
                                  length: UInt32(range.upperBound - range.lowerBound + 1))
        }
        return .qwordMemory(range, usage: .consumer, caching: .nonCacheable, writable: true)
    }

    /// Refuses a description whose ranges contradict each other.
    static func validate(_ configuration: Configuration) throws(ACPIError) {
        let pci = configuration.pci
        if let mmio64 = pci.mmio64, mmio64.lowerBound <= UInt64(UInt32.max) {
            throw .invalidConfiguration("the 64-bit PCI window \(hex(mmio64)) starts below 4 GiB")
        }
        for device in [configuration.com1, configuration.rtc].compactMap({ $0 }) where device.ports.count > 255 {
            throw .invalidConfiguration("an ISA device's ports \(hex(device.ports)) are more than 255")
        }
        guard let ecam = configuration.ecam else { return }
        guard let range = ecam.range, ecam.base % ECAMRegion.bytesPerBus == 0 else {
            throw .invalidConfiguration("the ECAM at \(hex(ecam.base)) is not 1 MiB aligned or passes the end of memory")
        }
        guard pci.buses.contains(ecam.buses.lowerBound), pci.buses.contains(ecam.buses.upperBound) else {
            throw .invalidConfiguration("the ECAM's buses \(ecam.buses) are not the host bridge's \(pci.buses)")
        }
        let windows = [UInt64(pci.mmio32.lowerBound)...UInt64(pci.mmio32.upperBound)] + [pci.mmio64].compactMap { $0 }
        for window in windows where window.overlaps(range) {
            throw .invalidConfiguration("the ECAM \(hex(range)) overlaps the PCI window \(hex(window))")
        }
    }

    private static func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16, uppercase: true) }
    private static func hex<T: BinaryInteger>(_ range: ClosedRange<T>) -> String { hex(range.lowerBound) + "–" + hex(range.upperBound) }
}
