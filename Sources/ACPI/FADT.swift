// FADT.swift — the Fixed ACPI Description Table, signature "FACP" (ACPI 6.5
// §5.2.9, table 5.9), revision 3: the 244-byte ACPI 2.0 layout QEMU's PC
// machines use and every Linux since 2.6 reads. It points at the DSDT and
// the FACS (FIRMWARE_CTRL below 4 GiB, X_FIRMWARE_CTRL above: ACPI requires
// the other to be zero, and Linux lists a FACS given both ways twice) and describes the fixed hardware: the PM1a
// event and control blocks, the PM timer, the SCI's interrupt, the RTC's
// century byte, the reset register, and the boot architecture flags.
//
// No SMI command port: the platform is always in ACPI mode (SCI_EN reads 1).
// No GPE blocks. The X_ register blocks repeat the 32-bit ones as Generic
// Addresses of the same length (ACPICA warns when they differ).

/// The platform's fixed hardware as the FADT describes it.
public struct FADT: Sendable, Equatable {
    /// Field offsets (table 5.9).
    public enum Offset {
        public static let firmwareControl = 36
        public static let dsdt = 40
        public static let preferredPMProfile = 45
        public static let sciInterrupt = 46
        public static let smiCommand = 48
        public static let pm1aEventBlock = 56
        public static let pm1aControlBlock = 64
        public static let pmTimerBlock = 76
        public static let pm1EventLength = 88
        public static let pm1ControlLength = 89
        public static let pm2ControlLength = 90
        public static let pmTimerLength = 91
        public static let c2Latency = 96
        public static let c3Latency = 98
        public static let century = 108
        public static let bootArchitecture = 109
        public static let flags = 112
        public static let resetRegister = 116
        public static let resetValue = 128
        public static let xFirmwareControl = 132
        public static let xDSDT = 140
        public static let xPM1aEventBlock = 148
        public static let xPM1aControlBlock = 172
        public static let xPMTimerBlock = 208
    }

    /// Length of a revision-3 FADT.
    public static let length = 244
    public static let revision: UInt8 = 3

    /// Fixed feature flags (table 5.10).
    public enum Flags {
        public static let wbinvd: UInt32 = 1 << 0
        public static let processorC1: UInt32 = 1 << 2
        /// Set: the power button is not a fixed feature.
        public static let powerButton: UInt32 = 1 << 4
        /// Set: the sleep button is not a fixed feature.
        public static let sleepButton: UInt32 = 1 << 5
        /// A 32-bit PM timer (clear: 24-bit).
        public static let timerValueExtended: UInt32 = 1 << 8
        /// RESET_REG_SUP: the reset register works.
        public static let resetRegisterSupported: UInt32 = 1 << 10
    }

    /// IA-PC boot architecture flags (table 5.11).
    public enum BootArchitecture {
        /// LEGACY_DEVICES: ISA devices (the UART, the RTC) the OS finds by itself.
        public static let legacyDevices: UInt16 = 1 << 0
        /// 8042: a keyboard controller at 0x60/0x64.
        public static let i8042: UInt16 = 1 << 1
        /// VGA Not Present.
        public static let vgaNotPresent: UInt16 = 1 << 2
        /// CMOS RTC Not Present.
        public static let cmosRTCNotPresent: UInt16 = 1 << 5
    }

    /// The PM1a event and control blocks and the PM timer, in I/O space.
    public struct PMBlock: Sendable, Equatable {
        public var eventBlock: UInt16
        public var eventLength: UInt8
        public var controlBlock: UInt16
        public var controlLength: UInt8
        public var timerBlock: UInt16
        public var timerLength: UInt8

        public init(eventBlock: UInt16, eventLength: UInt8, controlBlock: UInt16, controlLength: UInt8,
                    timerBlock: UInt16, timerLength: UInt8) {
            self.eventBlock = eventBlock
            self.eventLength = eventLength
            self.controlBlock = controlBlock
            self.controlLength = controlLength
            self.timerBlock = timerBlock
            self.timerLength = timerLength
        }
    }

    /// A reset register and the value written to it.
    public struct Reset: Sendable, Equatable {
        public var register: GenericAddress
        public var value: UInt8
        public init(register: GenericAddress, value: UInt8) {
            self.register = register
            self.value = value
        }
        /// The i8042's command port 0x64, value 0xFE (pulse the CPU reset line).
        public static let i8042 = Reset(register: .io(port: 0x64, bitWidth: 8, accessSize: .byte), value: 0xFE)
    }

    public var sciInterrupt: UInt16
    public var pm: PMBlock
    /// The CMOS index of the century byte (0: none).
    public var centuryIndex: UInt8
    public var bootArchitecture: UInt16
    /// Flags without RESET_REG_SUP: it follows `reset`.
    public var flags: UInt32
    /// nil: no reset register.
    public var reset: Reset?

    public init(sciInterrupt: UInt16, pm: PMBlock, centuryIndex: UInt8,
                bootArchitecture: UInt16 = BootArchitecture.legacyDevices | BootArchitecture.i8042,
                flags: UInt32 = Flags.wbinvd | Flags.processorC1 | Flags.powerButton | Flags.sleepButton,
                reset: Reset? = .i8042) {
        self.sciInterrupt = sciInterrupt
        self.pm = pm
        self.centuryIndex = centuryIndex
        self.bootArchitecture = bootArchitecture
        self.flags = flags
        self.reset = reset
    }

    /// The table, pointing at the DSDT and the FACS at these addresses.
    public func table(dsdt: UInt64, facs: UInt64, identity: ACPIIdentity = .deflect) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: Self.length - SystemDescriptionTable.headerSize)
        func put(_ offset: Int, _ bytes: [UInt8]) {
            let start = offset - SystemDescriptionTable.headerSize
            body.replaceSubrange(start..<(start + bytes.count), with: bytes)
        }
        if let below4G = UInt32(exactly: facs) {
            put(Offset.firmwareControl, ACPIBytes.littleEndian(below4G))
        } else {
            put(Offset.xFirmwareControl, ACPIBytes.littleEndian(facs))
        }
        put(Offset.dsdt, ACPIBytes.littleEndian(UInt32(truncatingIfNeeded: dsdt)))
        put(Offset.preferredPMProfile, [0]) // unspecified
        put(Offset.sciInterrupt, ACPIBytes.littleEndian(sciInterrupt))
        put(Offset.pm1aEventBlock, ACPIBytes.littleEndian(UInt32(pm.eventBlock)))
        put(Offset.pm1aControlBlock, ACPIBytes.littleEndian(UInt32(pm.controlBlock)))
        put(Offset.pmTimerBlock, ACPIBytes.littleEndian(UInt32(pm.timerBlock)))
        put(Offset.pm1EventLength, [pm.eventLength, pm.controlLength, 0, pm.timerLength])
        // > 100 and > 1000 µs: no C2, no C3.
        put(Offset.c2Latency, ACPIBytes.littleEndian(UInt16(0x0FFF)))
        put(Offset.c3Latency, ACPIBytes.littleEndian(UInt16(0x0FFF)))
        put(Offset.century, [centuryIndex])
        put(Offset.bootArchitecture, ACPIBytes.littleEndian(bootArchitecture))
        var flags = self.flags & ~Flags.resetRegisterSupported
        if let reset {
            flags |= Flags.resetRegisterSupported
            put(Offset.resetRegister, reset.register.bytes)
            put(Offset.resetValue, [reset.value])
        }
        put(Offset.flags, ACPIBytes.littleEndian(flags))
        put(Offset.xDSDT, ACPIBytes.littleEndian(dsdt))
        // PM1 event: two 16-bit registers (status, enable); control: one; timer: 32-bit reads.
        put(Offset.xPM1aEventBlock, GenericAddress.io(port: pm.eventBlock, bitWidth: pm.eventLength &* 8, accessSize: .word).bytes)
        put(Offset.xPM1aControlBlock, GenericAddress.io(port: pm.controlBlock, bitWidth: pm.controlLength &* 8, accessSize: .word).bytes)
        put(Offset.xPMTimerBlock, GenericAddress.io(port: pm.timerBlock, bitWidth: pm.timerLength &* 8, accessSize: .dword).bytes)
        return SystemDescriptionTable.frame(signature: "FACP", revision: Self.revision, body: body, identity: identity)
    }
}
