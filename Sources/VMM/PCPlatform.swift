// VMM: the slice of QEMU's PC platform small test kernels expect, on top of
// KVM's in-kernel pieces: in-kernel PIC/IOAPIC/local APICs and PIT, fw_cfg,
// RTC/CMOS, the ACPI PM timer and PM1 registers, and ACPI tables in the
// read-only BIOS area; the UART's interrupt on IRQ 4.
import Devices
import Dispatch
import Foundation
import KVM

/// Which platform a machine presents.
public enum Platform: String, Sendable, CaseIterable {
    /// UART, debug-exit, i8042, POST and sync ports; no interrupt controller.
    case minimal
    /// The PC slice multiboot kernels expect (see README's compatibility table).
    case pc
}

enum PCPlatform {
    /// The devices the PC platform adds to the standard set.
    static func devices(memorySize: UInt64, vcpuCount: Int) throws(MachineError) -> [DeviceHub.Extra] {
        let start = DispatchTime.now().uptimeNanoseconds
        let monotonic: @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds &- start }
        let firmware = FirmwareConfig(ramSize: memorySize, cpuCount: vcpuCount, maxCPUs: vcpuCount)
        do {
            try firmware.addFile(name: "etc/deflect/version", bytes: Array("deflect 0.1\n".utf8))
        } catch {
            throw .host("fw_cfg: \(error)")
        }
        let timer = ACPIPMTimer(clock: monotonic)
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

    /// Writes the ACPI tables into the BIOS area.
    static func writeACPITables(_ ram: GuestRAM, vcpuCount: Int) throws(GuestMemoryError) {
        for table in ACPITableSet.build(vcpuCount: vcpuCount) {
            try ram.write(table.bytes, at: table.address)
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
