// PCIDevice.swift — the contract a PCI function follows on the bus (its
// configuration space, configuration and BAR accesses), the interrupt pin it
// may drive, and the host bridge at 00:00.0.

/// A function on bus 0. The bus reaches the configuration space through
/// `readConfig`/`writeConfig` (defaults: the bytes, with their masks) and the
/// BARs through `readBAR`/`writeBAR` with the offset inside the BAR. Devices
/// never block and never talk to KVM; `size` is 1, 2, 4 or 8.
public protocol PCIDevice: AnyObject {
    var name: String { get }
    var configSpace: PCIConfigSpace { get }
    func readConfig(offset: Int, size: Int) -> UInt32
    func writeConfig(offset: Int, size: Int, value: UInt32)
    func readBAR(_ index: Int, offset: UInt64, size: Int) -> UInt64
    func writeBAR(_ index: Int, offset: UInt64, size: Int, value: UInt64)
}

extension PCIDevice {
    public func readConfig(offset: Int, size: Int) -> UInt32 { configSpace.read(offset: offset, size: size) }
    public func writeConfig(offset: Int, size: Int, value: UInt32) { configSpace.write(offset: offset, size: size, value: value) }
    /// A device without BAR registers reads as all ones (a master abort).
    public func readBAR(_ index: Int, offset: UInt64, size: Int) -> UInt64 { allOnes(size: size) }
    public func writeBAR(_ index: Int, offset: UInt64, size: Int, value: UInt64) {}
}

/// All ones in the low `size` bytes (1, 2, 4 or 8; anything else counts as 8).
public func allOnes(size: Int) -> UInt64 {
    switch size {
    case 1: 0xFF
    case 2: 0xFFFF
    case 4: 0xFFFF_FFFF
    default: UInt64.max
    }
}

/// The INTx line a function drives (level). The machine decides where it
/// goes (an IOAPIC pin, an irqfd with a resample fd); devices call it only
/// when the level changes.
public protocol PCIInterruptPin: AnyObject {
    func setLevel(_ high: Bool)
}

/// The host bridge at 00:00.0: a function with only an identity, as QEMU's
/// generic PCIe host (GPEX, 1b36:0008) presents it. Chosen over the q35
/// MCH (8086:29c0) because Deflect emulates none of the MCH's chipset
/// registers (PAM, SMRAM, PCIEXBAR): an Intel ID invites drivers (intel-agp
/// probes 29c0) and firmware to use registers that are not there, while
/// no driver binds a GPEX bridge and Linux only needs class 06/00.
public final class PCIHostBridge: PCIDevice {
    public let name = "pci-host-bridge"
    public let configSpace: PCIConfigSpace

    public static let identity = PCIIdentity(vendorID: 0x1B36, deviceID: 0x0008, revision: 0, classCode: 0x06_0000,
                                             subsystemVendorID: 0x1AF4, subsystemID: 0x1100)

    public init() {
        configSpace = PCIConfigSpace(identity: Self.identity)
    }
}
