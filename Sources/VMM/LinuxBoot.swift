// VMM: a Linux kernel's boot on the PC platform — the loader's plan (bzImage
// through the 64-bit boot protocol, or an ELF vmlinux through PVH) with the
// platform's own ranges kept out of the kernel's RAM: the BIOS area with the
// ACPI tables, and the EBDA whose last bytes hold the FACS.
import Devices
import Loader

enum LinuxBoot {
    /// The EBDA (0x9FC00–0x9FFFF): reserved for the FACS (ACPITableSet).
    static let extendedBIOSDataArea: Range<UInt64> = 0x9_FC00..<0xA_0000

    static func image(_ configuration: MachineConfiguration) throws(LoaderError) -> BootImage {
        let initrd = configuration.initrd.map { [UInt8]($0) }
        let reserved = [extendedBIOSDataArea]
        switch configuration.mode {
        case .pvh:
            return try PVHLoader.plan(image: configuration.image, initrd: initrd, commandLine: configuration.append,
                                      memoryBytes: configuration.memoryBytes, layout: .pc, reserved: reserved,
                                      acpiRSDPAddress: ACPITableSet.defaultRSDPAddress).bootImage
        default:
            return try LinuxLoader.plan(image: configuration.image, initrd: initrd, commandLine: configuration.append,
                                        memoryBytes: configuration.memoryBytes, layout: .pc, reserved: reserved,
                                        acpiRSDPAddress: ACPITableSet.defaultRSDPAddress).bootImage
        }
    }
}
