// VMM: the slice of QEMU's PC platform small test kernels expect, on top of
// KVM's in-kernel pieces: in-kernel PIC/IOAPIC/local APICs and PIT, fw_cfg,
// RTC/CMOS, the ACPI PM timer and PM1 registers, and ACPI tables in the
// read-only BIOS area; the UART's interrupt on IRQ 4; the real-mode BIOS
// environment SeaBIOS leaves (IVT, BDA, PICs at 0x08/0x70, PIT at 18.2 Hz);
// ACPI S3 through SleepControl; the PCI bus (PCIHub) in the hole above RAM.
import ACPI
import Devices
import Dispatch
import FoundationEssentials
import Glibc
import KVM

/// Which platform a machine presents.
public enum Platform: String, Sendable, CaseIterable, Codable {
    /// UART, debug-exit, i8042, POST and sync ports; no interrupt controller.
    case minimal
    /// The PC slice multiboot kernels expect (see README's compatibility table).
    case pc
}

enum PCPlatform {
    /// The devices the PC platform adds to the standard set.
    /// `clock`: the guest clock (stops while the VM is paused).
    static func devices(memorySize: UInt64, vcpuCount: Int, clock: GuestClock) throws(MachineError) -> [DeviceHub.Extra] {
        let firmware = FirmwareConfig(ramSize: memorySize, cpuCount: vcpuCount, maxCPUs: vcpuCount)
        do {
            try firmware.addFile(name: "etc/deflect/version", bytes: Array("deflect 0.1\n".utf8))
        } catch {
            throw .host("fw_cfg: \(error)")
        }
        let timer = ACPIPMTimer(clock: clock.reader)
        return [
            DeviceHub.Extra(firmware, base: FirmwareConfig.basePort, count: UInt16(FirmwareConfig.portCount)),
            DeviceHub.Extra(RTCCMOS(memorySize: memorySize, cpuCount: vcpuCount, wallClock: { Int64(Date().timeIntervalSince1970) }),
                            base: RTCCMOS.basePort, count: UInt16(RTCCMOS.portCount)),
            DeviceHub.Extra(ACPIPM1Registers(timer: timer), base: ACPIPMPorts.pm1aEventBlock, count: UInt16(ACPIPMPorts.pm1RegistersCount)),
            DeviceHub.Extra(timer, base: ACPIPMPorts.timer, count: UInt16(ACPIPMPorts.timerLength)),
        ]
    }

    /// Creates KVM's in-kernel interrupt controllers and PIT (before the vCPUs).
    static func createInKernelDevices(_ vm: VirtualMachine) throws(KVMError) {
        try vm.createIRQChip()
        try vm.createPIT2()
    }

    /// The PCI host bridge the DSDT describes for a Linux guest: bus 0, the
    /// 32-bit window the BARs are placed in and the ECAM of bus 0 (MCFG),
    /// as PCIHub lays them out in the e820 hole above RAM.
    static var pciWindows: PCIHostBridgeWindows {
        PCIHostBridgeWindows(buses: PCIHub.Layout.ecamBuses,
                             mmio32: UInt32(PCIHub.Layout.mmio32.lowerBound)...UInt32(PCIHub.Layout.mmio32.upperBound))
    }
    static var ecam: ECAMRegion { ECAMRegion(base: PCIHub.Layout.ecamBase, buses: PCIHub.Layout.ecamBuses) }

    /// Writes the ACPI tables into the BIOS area (the FACS into the EBDA):
    /// the multiboot test kernels' set, or for a Linux kernel the set with a
    /// DSDT describing COM1, the RTC, the PCI host bridge and the sleep
    /// states, and the MCFG of the ECAM.
    static func writeACPITables(_ ram: GuestRAM, vcpuCount: Int, forLinux: Bool) throws {
        let tables = forLinux
            ? try ACPITableSet.buildPC(vcpuCount: vcpuCount, pci: pciWindows, ecam: ecam)
            : ACPITableSet.build(vcpuCount: vcpuCount).map { (address: $0.address, bytes: $0.bytes) }
        for table in tables {
            try ram.write(table.bytes, at: table.address)
        }
    }

    /// Writes the IVT, the BIOS data area fields and the interrupt handlers
    /// (see BIOSEnvironment); the image is written afterwards and wins.
    static func writeBIOSEnvironment(_ ram: GuestRAM, unixSeconds: Int64) throws(GuestMemoryError) {
        let secondsSinceMidnight = Int(((unixSeconds % 86_400) + 86_400) % 86_400)
        for blob in BIOSEnvironment.handlerBlobs() + BIOSEnvironment.lowMemoryBlobs(secondsSinceMidnight: secondsSinceMidnight) {
            try ram.write(blob.bytes, at: blob.address)
        }
    }

    /// Both in-kernel PICs as ICW1–ICW4 (edge, cascade on IRQ 2, 8086 mode)
    /// and OCW1 leave them: SeaBIOS's pic_reset with its vector bases, then
    /// the given interrupt masks. Nothing pending or in service.
    static func programPICs(_ vm: VirtualMachine, masterMask: UInt8, slaveMask: UInt8) throws(KVMError) {
        let setups: [(PICChip, UInt8, UInt8)] = [
            (.master, BIOSEnvironment.masterVectorBase, masterMask),
            (.slave, BIOSEnvironment.slaveVectorBase, slaveMask),
        ]
        for (chip, base, mask) in setups {
            var pic = try vm.pic(chip)
            // ICW1 keeps only level-triggered requests (irr &= elcr) and
            // clears the rest; ICW4 = 0x01: no auto-EOI, not fully nested.
            pic.irr &= pic.elcr
            pic.lastIRR = 0
            pic.isr = 0
            pic.priorityAdd = 0
            pic.readRegisterSelect = 0
            pic.poll = 0
            pic.specialMask = 0
            pic.initState = 0
            pic.autoEOI = 0
            pic.rotateOnAutoEOI = 0
            pic.specialFullyNestedMode = 0
            pic.init4 = 1
            pic.irqBase = base
            pic.imr = mask
            try vm.setPIC(chip, pic)
        }
    }

    /// PIT channel 0 counting 65536 in `channel0Mode` (18.2 Hz on IRQ 0).
    /// With `resetAllChannels` channels 1 and 2 are as QEMU's reset leaves
    /// them too (mode 3, count 65536, channel 2's gate low, speaker off).
    static func programPIT(_ vm: VirtualMachine, channel0Mode: UInt8, resetAllChannels: Bool) throws(KVMError) {
        func channel(mode: UInt8, gate: UInt8) -> PITChannelState {
            var c = PITChannelState()
            c.count = BIOSEnvironment.pitReloadCount
            c.rwMode = 3      // LSB then MSB
            c.readState = 3
            c.writeState = 3
            c.mode = mode
            c.gate = gate
            return c
        }
        var pit = try vm.pitState()
        pit.channels[0] = channel(mode: channel0Mode, gate: 1)
        if resetAllChannels {
            pit.channels[1] = channel(mode: BIOSEnvironment.pitModeAfterReset, gate: 1)
            pit.channels[2] = channel(mode: BIOSEnvironment.pitModeAfterReset, gate: 0)
            pit.flags &= ~2   // KVM_PIT_FLAGS_SPEAKER_DATA_ON
        }
        try vm.setPITState(pit)
    }

    /// The bootstrap processor's local APIC as SeaBIOS's smp_setup leaves it:
    /// software-enabled, LINT0 ExtINT and LINT1 NMI, both level-triggered
    /// (QEMU 7.2: SVR 0x1FF, LVT0 0x8700). After an S3 wake it is as reset.
    static func setUpBootLocalAPIC(_ vcpu: VCPU) throws(KVMError) {
        var apic = try vcpu.localAPIC()
        apic.setRegister(LocalAPICRegister.spuriousVector,
                         apic.register(LocalAPICRegister.spuriousVector) | LocalAPICRegister.softwareEnable)
        apic.setRegister(LocalAPICRegister.lint0, LocalAPICRegister.extINT | LocalAPICRegister.levelTriggered)
        apic.setRegister(LocalAPICRegister.lint1, LocalAPICRegister.nmi | LocalAPICRegister.levelTriggered)
        try vcpu.setLocalAPIC(apic)
    }

    /// The BIOS environment before the guest starts (see BIOSEnvironment).
    static func setUpBIOSEnvironment(_ vm: VirtualMachine, ram: GuestRAM) throws(MachineError) {
        do {
            try writeBIOSEnvironment(ram, unixSeconds: Int64(Date().timeIntervalSince1970))
        } catch {
            throw .host("BIOS environment: \(error)")
        }
        do throws(KVMError) {
            try programPICs(vm, masterMask: BIOSEnvironment.masterMaskAtBoot, slaveMask: BIOSEnvironment.slaveMaskAtBoot)
            try programPIT(vm, channel0Mode: BIOSEnvironment.pitModeAtBoot, resetAllChannels: false)
        } catch {
            throw .kvm(error)
        }
    }
}

/// A device interrupt line wired to a GSI of KVM's in-kernel irqchip.
final class KVMInterruptLine: InterruptLine {
    private let vm: VirtualMachine
    private let irq: UInt32

    init(vm: VirtualMachine, irq: UInt32) {
        self.vm = vm
        self.irq = irq
    }

    func setLevel(_ high: Bool) {
        // A failing KVM_IRQ_LINE leaves the guest polling, as without an irqchip.
        try? vm.setIRQLine(irq, high: high)
    }
}
