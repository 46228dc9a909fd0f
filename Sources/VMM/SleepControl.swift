// VMM: the platform side of ACPI S3 (suspend to RAM) and the wake-up, as
// QEMU with SeaBIOS does them; `Lifecycle` owns the state change and the
// parked vCPUs. Suspend (`acpi_pm1_cnt_write` → qemu_system_suspend): the
// vCPU that wrote SLP_EN stops at that I/O exit, every other vCPU parks at a
// consistent point (VCPUParking), no guest instruction runs, the CMOS
// shutdown status becomes 0xFE (pc_cmos_set_s3_resume), and a thread polls
// for a wake event: the RTC alarm, with B.AIE and PM1_EN.RTC_EN set
// (rtc_update_timer → qemu_system_wakeup_request). The run's timeout and
// SIGINT still end it (they stop the parked vCPUs).
//
// Wake (qemu_system_wakeup → system reset, then acpi_notify_wakeup, then
// SeaBIOS's handle_resume/s3_resume): PM1 and RTC reset with WAK_STS|RTC_STS,
// CMOS 0x0F cleared, PICs programmed by pic_setup (0x08/0x70, all masked but
// the cascade), the PIT as after reset, every local APIC reset; the
// bootstrap processor enters real mode at the FACS Firmware_Waking_Vector
// (SeaBIOS's find_resume_vector reads only that 32-bit field, and only when
// the FACS signature is intact), the others wait for INIT/SIPI. Memory,
// including the IVT, is kept — except what QEMU's reset rewrites: the
// PT_LOAD segments of an ELF multiboot kernel, .bss zeroed (rom_reset of the
// blobs load_elf registered; observed under QEMU 7.2). A zero vector makes
// SeaBIOS reboot: the run ends as for a reset.
import Devices
import FoundationEssentials
import Glibc
import KVM
import Loader

final class SleepControl: Sendable {
    /// How often a suspended machine checks its wake sources.
    static let wakePollSeconds = 0.01
    /// The stack SS:SP the resumed processor gets: the top of the EBDA below
    /// the FACS (reserved memory the guest does not use).
    static let resumeStackSegment: UInt16 = 0x9FC0
    static let resumeStackPointer: UInt16 = 0x03C0
    /// CMOS shutdown status during S3 (QEMU's pc_cmos_set_s3_resume).
    static let s3ResumeShutdownStatus: UInt8 = 0xFE

    private let vm: VirtualMachine
    private let ram: GuestRAM
    private let devices: DeviceHub
    private let events: EventLog
    private let vcpuCount: Int
    private let facsAddress: UInt64
    /// Image bytes the wake-up's reset writes again (see the file header).
    private let segmentsRewrittenOnReset: [MemorySegment]

    init(vm: VirtualMachine, ram: GuestRAM, devices: DeviceHub, events: EventLog, vcpuCount: Int, segmentsRewrittenOnReset: [MemorySegment],
         facsAddress: UInt64 = ACPITableSet.defaultFACSAddress) {
        self.vm = vm
        self.ram = ram
        self.devices = devices
        self.events = events
        self.vcpuCount = vcpuCount
        self.facsAddress = facsAddress
        self.segmentsRewrittenOnReset = segmentsRewrittenOnReset
    }

    /// The segments QEMU's system reset rewrites for this image: an ELF
    /// multiboot kernel's PT_LOAD segments at p_paddr, zero-filled to p_memsz.
    /// Nothing for the a.out-kludge layout or other modes (QEMU reads those
    /// into a buffer, not into reset-time blobs).
    static func segmentsRewrittenOnReset(image: [UInt8], mode: BootMode) -> [MemorySegment] {
        guard mode == .multiboot, let header = try? MultibootHeader(parsing: image),
              header.flags & MultibootConstants.flagAddressFields == 0,
              let elf = try? ELF32Image(parsing: image) else { return [] }
        return elf.loadSegments.filter { $0.memorySize > 0 }.compactMap { segment in
            // The loader accepted these ranges; re-check instead of trapping.
            let start = Int(segment.offset), count = Int(segment.fileSize)
            guard count <= image.count, start <= image.count - count, segment.memorySize >= segment.fileSize else { return nil }
            return MemorySegment(guestPhysicalAddress: segment.physicalAddress, fileBytes: image[start..<(start + count)],
                                 memorySize: Int(segment.memorySize))
        }
    }

    /// Every vCPU is parked: the machine sleeps from now on. Records the
    /// suspend and sets the CMOS as QEMU does.
    func enterSleep(requestedBy vcpu: Int) {
        events.record(.suspended(vcpu: vcpu))
        _ = devices.withDevice(at: RTCCMOS.basePort, as: RTCCMOS.self) { rtc in
            rtc.setCMOS(RTCCMOS.Register.shutdownStatus, Self.s3ResumeShutdownStatus)
            // Alarms that rang while the guest ran are not wake events.
            rtc.advanceAlarm()
        }
    }

    /// Whether a wake event happened. QEMU wakes on an RTC alarm only when
    /// the guest enabled both the alarm interrupt (RTC B.AIE) and the RTC
    /// wake event (PM1_EN.RTC_EN).
    func wakeEventPending() -> Bool {
        let armed = devices.withDevice(at: ACPIPMPorts.pm1aEventBlock, as: ACPIPM1Registers.self) { $0.rtcWakeEnabled } ?? false
        let rang = devices.withDevice(at: RTCCMOS.basePort, as: RTCCMOS.self) { rtc in
            rtc.advanceAlarm() && rtc.alarmInterruptEnabled
        } ?? false
        return armed && rang
    }

    /// The wake-up's platform reset. Returns the work each parked vCPU runs
    /// before it enters the guest again, or nil when there is no waking
    /// vector (the firmware would reboot: the run ends as for a reset).
    func wake(source: String) throws(KVMError) -> [Int: VCPUParking.Work]? {
        let vector = wakingVector()
        _ = devices.withDevice(at: ACPIPMPorts.pm1aEventBlock, as: ACPIPM1Registers.self) { $0.wake(byRTC: true) }
        _ = devices.withDevice(at: RTCCMOS.basePort, as: RTCCMOS.self) { rtc in
            rtc.systemReset()
            rtc.setCMOS(RTCCMOS.Register.shutdownStatus, 0)
        }
        guard vector != 0 else { return nil }
        for segment in segmentsRewrittenOnReset {
            do {
                try ram.write(segment.bytes, at: segment.guestPhysicalAddress)
            } catch {
                throw .invalidArgument(request: "S3 wake", reason: "rewriting the kernel image: \(error)")
            }
        }
        try PCPlatform.programPICs(vm, masterMask: BIOSEnvironment.masterMaskAfterResume,
                                   slaveMask: BIOSEnvironment.slaveMaskAfterResume)
        try PCPlatform.programPIT(vm, channel0Mode: BIOSEnvironment.pitModeAfterReset, resetAllChannels: true)
        events.record(.resumed(wakeSource: source, wakingVector: vector))
        var work: [Int: VCPUParking.Work] = [:]
        let resume = BootCPUState.s3Resume(wakingVector: vector, stackSegment: Self.resumeStackSegment,
                                           stackPointer: Self.resumeStackPointer)
        let afterINIT = BootCPUState.afterINIT()
        for index in 0..<vcpuCount {
            let isBSP = index == 0
            let state = isBSP ? resume : afterINIT
            work[index] = { vcpu in try Self.reset(vcpu, isBSP: isBSP, to: state) }
        }
        return work
    }

    /// The FACS Firmware_Waking_Vector, or 0 when the FACS is unreadable or
    /// its signature was overwritten (SeaBIOS then finds no vector either).
    func wakingVector() -> UInt32 {
        guard let facs = try? ram.read(at: facsAddress, count: ACPITableSet.FACSField.flags),
              facs.prefix(4).elementsEqual("FACS".utf8) else { return 0 }
        let field = ACPITableSet.FACSField.firmwareWakingVector
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(facs[field + $1]) << (8 * UInt32($1)) }
    }

    /// A vCPU as QEMU's system reset leaves it, then placed at `state`
    /// (runs on the vCPU's own thread while the machine is parked).
    static func reset(_ vcpu: VCPU, isBSP: Bool, to state: BootCPUState) throws(KVMError) {
        try BootState.apply(state, to: vcpu)
        var sregs = try vcpu.specialRegisters()
        sregs.apicBase = resetAPICBase(isBSP: isBSP)
        sregs.cr2 = 0
        sregs.cr8 = 0
        sregs.interruptBitmap = [0, 0, 0, 0]
        try vcpu.setSpecialRegisters(sregs)
        try vcpu.setLocalAPIC(resetLocalAPIC(try vcpu.localAPIC(), isBSP: isBSP))
        try vcpu.setMPState(isBSP ? MPState.runnable.rawValue : MPState.initReceived.rawValue)
    }

    /// IA32_APIC_BASE after reset: 0xFEE00000, enabled, BSP flag on vCPU 0.
    static func resetAPICBase(isBSP: Bool) -> UInt64 {
        0xFEE0_0000 | 1 << 11 | (isBSP ? 1 << 8 : 0)
    }

    /// A local APIC's registers after reset, keeping its ID and version:
    /// every LVT masked, DFR flat, SVR 0xFF (software-disabled), no pending
    /// or in-service vectors, timer stopped. On the BSP LINT0 is ExtINT and
    /// unmasked so the 8259 reaches it in real mode (QEMU's apic_reset_common;
    /// KVM's LINT0_REENABLED quirk does the same at vCPU creation).
    static func resetLocalAPIC(_ current: LocalAPICState, isBSP: Bool) -> LocalAPICState {
        var apic = LocalAPICState(bytes: [UInt8](repeating: 0, count: LocalAPICState.size))
        apic.setRegister(LocalAPICRegister.id, current.register(LocalAPICRegister.id))
        apic.setRegister(LocalAPICRegister.version, current.register(LocalAPICRegister.version))
        apic.setRegister(LocalAPICRegister.destinationFormat, 0xFFFF_FFFF)
        apic.setRegister(LocalAPICRegister.spuriousVector, 0xFF)
        for lvt in LocalAPICRegister.localVectorTable { apic.setRegister(lvt, LocalAPICRegister.masked) }
        if isBSP { apic.setRegister(LocalAPICRegister.lint0, LocalAPICRegister.extINT) }
        return apic
    }
}

/// xAPIC register offsets and values the firmware setup and the reset use.
enum LocalAPICRegister {
    static let id = 0x20
    static let version = 0x30
    static let destinationFormat = 0xE0
    static let spuriousVector = 0xF0
    static let lint0 = 0x350
    static let lint1 = 0x360
    /// CMCI, timer, thermal, performance, LINT0, LINT1, error.
    static let localVectorTable = [0x2F0, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370]
    static let masked: UInt32 = 1 << 16
    /// Delivery mode ExtINT (0b111 << 8), not masked.
    static let extINT: UInt32 = 0x700
    /// Delivery mode NMI (0b100 << 8), not masked.
    static let nmi: UInt32 = 0x400
    static let levelTriggered: UInt32 = 1 << 15
    /// SVR bit 8: APIC software-enabled.
    static let softwareEnable: UInt32 = 1 << 8
}
