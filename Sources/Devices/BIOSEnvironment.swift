// BIOSEnvironment.swift — what SeaBIOS leaves behind for a kernel that drops
// to real mode, minus the BIOS services: the interrupt vector table, a few
// BIOS data area fields, tiny interrupt handlers in the F segment, and the
// 8259/8254 programming (as values; the machine loads them into KVM's
// in-kernel PICs and PIT). Pure data, no KVM.
//
// Handlers (16-bit code at F000:xxxx, in the read-only BIOS area, far from
// the ACPI tables at 0xE0000 and the RSDP at 0xF0000):
//   F000:FEA5  IRQ 0 (vector 0x08), SeaBIOS's entry_08 address: counts the
//              BDA tick at 0x46C (midnight rollover to 0x470 at 0x1800B0
//              ticks), calls INT 1Ch, EOI to the master PIC, IRET
//   F000:FEDE  IRQ 1–7 (vectors 0x09–0x0F): EOI to the master, IRET
//              (SeaBIOS's handle_hwpic1); the same code at F000:E987 for
//              vector 0x09, the keyboard entry's fixed address there
//   F000:FEE5  IRQ 8–15 (vectors 0x70–0x77): EOI to slave and master, IRET
//              (handle_hwpic2)
//   F000:FF53  every other vector: IRET (the IBM BIOS's dummy handler address)
// so an `int n` returns with registers unchanged and a hardware interrupt
// taken in real mode is acknowledged.

/// The real-mode BIOS environment of the PC platform.
public enum BIOSEnvironment {
    /// Segment of the handlers.
    public static let handlerSegment: UInt16 = 0xF000
    public static let irq0HandlerOffset: UInt16 = 0xFEA5
    public static let masterIRQHandlerOffset: UInt16 = 0xFEDE
    public static let keyboardIRQHandlerOffset: UInt16 = 0xE987
    public static let slaveIRQHandlerOffset: UInt16 = 0xFEE5
    public static let iretHandlerOffset: UInt16 = 0xFF53

    /// PIC vector bases SeaBIOS programs (BIOS_HWIRQ0_VECTOR, BIOS_HWIRQ8_VECTOR).
    public static let masterVectorBase: UInt8 = 0x08
    public static let slaveVectorBase: UInt8 = 0x70

    /// Interrupt masks (1 = masked), as a multiboot kernel finds them under
    /// QEMU 7.2 with SeaBIOS (machine pc): SeaBIOS's pic_setup masks all but
    /// the cascade (IRQ 2), then its device setup unmasks IRQ 0 and 8 (clock),
    /// 1 and 12 (PS/2), 6 (floppy), 13 (FPU) and 14 (ATA): 0xB8 / 0x8E.
    /// Deflect raises none of those but IRQ 0, so the extra open lines are
    /// inert. On S3 resume SeaBIOS runs pic_setup only.
    public static let masterMaskAtBoot: UInt8 = 0xB8
    public static let slaveMaskAtBoot: UInt8 = 0x8E
    public static let masterMaskAfterResume: UInt8 = 0xFB
    public static let slaveMaskAfterResume: UInt8 = 0xFF

    /// PIT channel 0 at boot: mode 2 (rate generator), count 0 = 65536,
    /// 1193182 / 65536 = 18.2 Hz (SeaBIOS's pit_setup). After an S3 wake the
    /// PIT is as QEMU's reset leaves it: mode 3, the same count.
    public static let pitModeAtBoot: UInt8 = 2
    public static let pitModeAfterReset: UInt8 = 3
    public static let pitReloadCount: UInt32 = 65536

    /// BIOS data area fields (segment 0x40).
    public enum DataArea {
        public static let com1Port: UInt64 = 0x400
        public static let equipment: UInt64 = 0x410
        public static let baseMemoryKiB: UInt64 = 0x413
        public static let ebdaSegment: UInt64 = 0x40E
        public static let tickCount: UInt64 = 0x46C
        public static let midnightFlag: UInt64 = 0x470
    }
    /// The EBDA: 1 KiB below 640 KiB (the multiboot memory map reserves it).
    public static let ebdaAddress: UInt64 = 0x9_FC00
    /// PIT interrupts per day, SeaBIOS's TICKS_PER_DAY.
    public static let ticksPerDay: UInt32 = 0x18_00B0

    /// The IVT: 256 far pointers (offset, segment).
    public static func interruptVectorTable() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1024)
        for vector in 0..<256 {
            let offset: UInt16
            switch vector {
            case Int(masterVectorBase): offset = irq0HandlerOffset
            case Int(masterVectorBase) + 1: offset = keyboardIRQHandlerOffset
            case Int(masterVectorBase) + 1...Int(masterVectorBase) + 7: offset = masterIRQHandlerOffset
            case Int(slaveVectorBase)...Int(slaveVectorBase) + 7: offset = slaveIRQHandlerOffset
            default: offset = iretHandlerOffset
            }
            bytes += littleEndianBytes(offset) + littleEndianBytes(handlerSegment)
        }
        return bytes
    }

    /// The handler code, placed at F000:FEA5 (see the file header).
    static let masterEOIHandler: [UInt8] = [
        0x50,                               // push ax
        0xB0, 0x20,                         // mov al, 0x20
        0xE6, 0x20,                         // out 0x20, al
        0x58,                               // pop ax
        0xCF,                               // iret
    ]

    static let handlerCode: [UInt8] = [
        // F000:FEA5 IRQ 0
        0x1E,                               // push ds
        0x50,                               // push ax
        0x31, 0xC0,                         // xor ax, ax
        0x8E, 0xD8,                         // mov ds, ax
        0x83, 0x06, 0x6C, 0x04, 0x01,       // add word [0x46c], 1
        0x83, 0x16, 0x6E, 0x04, 0x00,       // adc word [0x46e], 0
        0x83, 0x3E, 0x6E, 0x04, 0x18,       // cmp word [0x46e], 0x18
        0x75, 0x19,                         // jne .eoi
        0x81, 0x3E, 0x6C, 0x04, 0xB0, 0x00, // cmp word [0x46c], 0xb0
        0x75, 0x11,                         // jne .eoi
        0xC7, 0x06, 0x6C, 0x04, 0x00, 0x00, // mov word [0x46c], 0
        0xC7, 0x06, 0x6E, 0x04, 0x00, 0x00, // mov word [0x46e], 0
        0xC6, 0x06, 0x70, 0x04, 0x01,       // mov byte [0x470], 1
        0xCD, 0x1C,                         // .eoi: int 0x1c
        0xB0, 0x20,                         // mov al, 0x20
        0xE6, 0x20,                         // out 0x20, al
        0x58,                               // pop ax
        0x1F,                               // pop ds
        0xCF,                               // iret
    ] + masterEOIHandler + [                // F000:FEDE IRQ 1–7
        // F000:FEE5 IRQ 8–15
        0x50,                               // push ax
        0xB0, 0x20,                         // mov al, 0x20
        0xE6, 0xA0,                         // out 0xa0, al
        0xE6, 0x20,                         // out 0x20, al
        0x58,                               // pop ax
        0xCF,                               // iret
    ]

    static func physical(_ offset: UInt16) -> UInt64 {
        UInt64(handlerSegment) << 4 + UInt64(offset)
    }

    /// The handlers: copied once into the read-only BIOS area.
    public static func handlerBlobs() -> [(address: UInt64, bytes: [UInt8])] {
        [(address: physical(keyboardIRQHandlerOffset), bytes: masterEOIHandler),
         (address: physical(irq0HandlerOffset), bytes: handlerCode),
         (address: physical(iretHandlerOffset), bytes: [0xCF])]
    }

    /// The IVT at 0, the BIOS data area fields and the EBDA size word, as
    /// SeaBIOS sets them: COM1 at 0x3F8 (equipment word: one serial port and
    /// the FPU; QEMU's also lists a floppy, a mouse, a parallel port and a
    /// colour display, which Deflect does not have), 639 KiB of base memory, the EBDA at segment 0x9FC0, and the tick
    /// count of `secondsSinceMidnight` (SeaBIOS starts it from the RTC).
    public static func lowMemoryBlobs(secondsSinceMidnight: Int) -> [(address: UInt64, bytes: [UInt8])] {
        let seconds = UInt64(max(0, min(secondsSinceMidnight, 86_399)))
        let ticks = UInt32(seconds * 1_193_182 / 65_536) % ticksPerDay
        return [
            (address: 0, bytes: interruptVectorTable()),
            (address: DataArea.com1Port, bytes: littleEndianBytes(UInt16(0x3F8))),
            (address: DataArea.ebdaSegment, bytes: littleEndianBytes(UInt16(ebdaAddress >> 4))),
            (address: DataArea.equipment, bytes: littleEndianBytes(UInt16(1 << 9 | 1 << 1))),
            (address: DataArea.baseMemoryKiB, bytes: littleEndianBytes(UInt16(ebdaAddress >> 10))),
            (address: DataArea.tickCount, bytes: littleEndianBytes(ticks)),
            (address: ebdaAddress, bytes: littleEndianBytes(UInt16(1))),
        ]
    }
}
