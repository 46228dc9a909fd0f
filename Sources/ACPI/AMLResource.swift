// AMLResource.swift — resource descriptors (ACPI 6.5 §6.4, "Resource Data
// Types for ACPI") for the buffer of a `ResourceTemplate`, the value of a
// device's _CRS (§6.2.2). What a PC's DSDT needs: IO and FixedIO ports,
// IRQ/IRQNoFlags (ISA IRQs 0–15), Interrupt (extended, 32-bit GSIs),
// Memory32Fixed, and the Word/DWord/QWord address spaces a PCI host bridge
// produces (bus numbers, I/O and memory windows). The template ends with an
// End Tag whose checksum is 0 ("treat as valid", §6.4.2.9).
//
// Address spaces are given as a range; their length (max − min + 1) is
// computed, and a range whose length does not fit the field is refused.
// They are always MinFixed, MaxFixed, PosDecode, granularity 0 and
// translation 0, as QEMU and cloud-hypervisor describe host-bridge windows.

/// One resource descriptor.
public enum AMLResource: Sendable, Equatable {
    /// Whether the device consumes the range or produces it for its children
    /// (general flags bit 0 of an address space; bit 0 of an extended
    /// interrupt's flags).
    public enum Usage: Sendable {
        case producer, consumer
    }

    /// Interrupt trigger and polarity.
    public enum Trigger: Sendable {
        case edge, level
    }
    public enum Polarity: Sendable {
        case activeHigh, activeLow
    }

    /// Memory attributes of an address space (_MEM, §6.4.3.5 table 6.49).
    public enum Caching: UInt8, Sendable {
        case nonCacheable = 0
        case cacheable = 1
        case writeCombining = 2
        case prefetchable = 3
    }

    /// `IO (Decode16|Decode10, min, max, alignment, length)` (§6.4.2.5).
    case io(decode16: Bool, minimum: UInt16, maximum: UInt16, alignment: UInt8, length: UInt8)
    /// `FixedIO (base, length)` (§6.4.2.6): a 10-bit base.
    case fixedIO(base: UInt16, length: UInt8)
    /// `IRQNoFlags () {irqs}` (§6.4.2.1, 2 bytes): ISA IRQs 0–15, edge,
    /// active high, exclusive.
    case irqNoFlags([UInt8])
    /// `IRQ (trigger, polarity, Shared|Exclusive) {irqs}` (§6.4.2.1, 3 bytes).
    case irq([UInt8], trigger: Trigger, polarity: Polarity, shared: Bool)
    /// `Interrupt (usage, trigger, polarity, Shared|Exclusive) {gsis}` (§6.4.3.6).
    case interrupt([UInt32], usage: Usage, trigger: Trigger, polarity: Polarity, shared: Bool)
    /// `Memory32Fixed (ReadWrite|ReadOnly, base, length)` (§6.4.3.4).
    case memory32Fixed(writable: Bool, base: UInt32, length: UInt32)
    /// `WordBusNumber` (§6.4.3.5.3, resource type 2).
    case wordBusNumber(ClosedRange<UInt16>, usage: Usage)
    /// `WordIO` (§6.4.3.5.3, resource type 1), decoding the entire range
    /// (ISA and non-ISA).
    case wordIO(ClosedRange<UInt16>, usage: Usage)
    /// `DWordMemory` (§6.4.3.5.2, resource type 0).
    case dwordMemory(ClosedRange<UInt32>, usage: Usage, caching: Caching, writable: Bool)
    /// `QWordMemory` (§6.4.3.5.1, resource type 0).
    case qwordMemory(ClosedRange<UInt64>, usage: Usage, caching: Caching, writable: Bool)

    /// Address space resource types (§6.4.3.5, byte 3).
    enum ResourceType: UInt8 {
        case memory = 0, io = 1, busNumber = 2
    }

    /// General flags (§6.4.3.5, byte 4): bit 3 _MAF, bit 2 _MIF, bit 1 _DEC
    /// (0: positive decode), bit 0 consumer (1) or producer (0).
    static func generalFlags(_ usage: Usage) -> UInt8 {
        1 << 3 | 1 << 2 | (usage == .consumer ? 1 : 0)
    }

    /// I/O type-specific flags (table 6.50): _RNG = 3, the entire range.
    static let ioEntireRange: UInt8 = 0x03

    /// Memory type-specific flags (table 6.49): bit 0 _RW, bits 2–1 _MEM.
    static func memoryFlags(_ caching: Caching, writable: Bool) -> UInt8 {
        caching.rawValue << 1 | (writable ? 1 : 0)
    }

    /// The descriptor's bytes.
    public func encode() throws(AMLError) -> [UInt8] {
        switch self {
        case let .io(decode16, minimum, maximum, alignment, length):
            if !decode16, maximum > 0x3FF { throw .outOfRange("IO Decode10 maximum", value: UInt64(maximum)) }
            guard minimum <= maximum else { throw .outOfRange("IO maximum below minimum", value: UInt64(maximum)) }
            var bytes: [UInt8] = [AMLResourceTag.small(AMLResourceTag.ioPortItem, length: 7), decode16 ? 1 : 0]
            bytes += ACPIBytes.littleEndian(minimum)
            bytes += ACPIBytes.littleEndian(maximum)
            bytes += [alignment, length]
            return bytes
        case let .fixedIO(base, length):
            guard base <= 0x3FF else { throw .outOfRange("FixedIO base (10 bits)", value: UInt64(base)) }
            var bytes = [AMLResourceTag.small(AMLResourceTag.fixedIOPortItem, length: 3)]
            bytes += ACPIBytes.littleEndian(base)
            bytes.append(length)
            return bytes
        case let .irqNoFlags(irqs):
            let mask = try Self.irqMask(irqs)
            return [AMLResourceTag.small(AMLResourceTag.irqItem, length: 2)] + ACPIBytes.littleEndian(mask)
        case let .irq(irqs, trigger, polarity, shared):
            let mask = try Self.irqMask(irqs)
            // Flags: bit 0 _HE (edge), bit 3 _LL (active low), bit 4 _SHR.
            var flags: UInt8 = trigger == .edge ? 1 : 0
            if polarity == .activeLow { flags |= 1 << 3 }
            if shared { flags |= 1 << 4 }
            return [AMLResourceTag.small(AMLResourceTag.irqItem, length: 3)] + ACPIBytes.littleEndian(mask) + [flags]
        case let .interrupt(gsis, usage, trigger, polarity, shared):
            guard (1...255).contains(gsis.count) else { throw .outOfRange("Interrupt count (1–255)", value: UInt64(gsis.count)) }
            // Flags: bit 0 consumer, bit 1 _HE, bit 2 _LL, bit 3 _SHR.
            var flags: UInt8 = usage == .consumer ? 1 : 0
            if trigger == .edge { flags |= 1 << 1 }
            if polarity == .activeLow { flags |= 1 << 2 }
            if shared { flags |= 1 << 3 }
            var body: [UInt8] = [flags, UInt8(gsis.count)]
            for gsi in gsis { body += ACPIBytes.littleEndian(gsi) }
            return Self.large(AMLResourceTag.extendedInterruptItem, body)
        case let .memory32Fixed(writable, base, length):
            guard UInt64(base) + UInt64(length) <= 1 << 32 else {
                throw .outOfRange("Memory32Fixed end", value: UInt64(base) + UInt64(length))
            }
            var body: [UInt8] = [writable ? 1 : 0]
            body += ACPIBytes.littleEndian(base)
            body += ACPIBytes.littleEndian(length)
            return Self.large(AMLResourceTag.memory32FixedItem, body)
        case let .wordBusNumber(range, usage):
            return try Self.address(.busNumber, UInt64(range.lowerBound)...UInt64(range.upperBound), fieldSize: 2,
                                    usage: usage, typeFlags: 0)
        case let .wordIO(range, usage):
            return try Self.address(.io, UInt64(range.lowerBound)...UInt64(range.upperBound), fieldSize: 2,
                                    usage: usage, typeFlags: Self.ioEntireRange)
        case let .dwordMemory(range, usage, caching, writable):
            return try Self.address(.memory, UInt64(range.lowerBound)...UInt64(range.upperBound), fieldSize: 4,
                                    usage: usage, typeFlags: Self.memoryFlags(caching, writable: writable))
        case let .qwordMemory(range, usage, caching, writable):
            return try Self.address(.memory, range, fieldSize: 8,
                                    usage: usage, typeFlags: Self.memoryFlags(caching, writable: writable))
        }
    }

    /// A buffer's worth of descriptors followed by the End Tag (checksum 0).
    public static func template(_ resources: [AMLResource]) throws(AMLError) -> [UInt8] {
        var bytes: [UInt8] = []
        for resource in resources { bytes += try resource.encode() }
        return bytes + [AMLResourceTag.small(AMLResourceTag.endTagItem, length: 1), 0]
    }

    /// A Word (2-byte fields), DWord (4) or QWord (8) address space: type,
    /// general flags, type-specific flags, then granularity, minimum,
    /// maximum, translation offset and length, each `fieldSize` bytes.
    /// The length is max − min + 1, refused when the field cannot hold it.
    private static func address(_ type: ResourceType, _ range: ClosedRange<UInt64>, fieldSize: Int,
                                usage: Usage, typeFlags: UInt8) throws(AMLError) -> [UInt8] {
        let limit: UInt64 = fieldSize == 8 ? .max : (1 << (8 * UInt64(fieldSize))) - 1
        let (span, overflow) = (range.upperBound - range.lowerBound).addingReportingOverflow(1)
        guard !overflow, span <= limit else {
            throw .outOfRange("address space length of 0x\(String(range.lowerBound, radix: 16))–0x\(String(range.upperBound, radix: 16))",
                              value: range.upperBound)
        }
        var body: [UInt8] = [type.rawValue, generalFlags(usage), typeFlags]
        for field in [0, range.lowerBound, range.upperBound, 0, span] {
            body += ACPIBytes.littleEndian(field, count: fieldSize)
        }
        let item: UInt8
        switch fieldSize {
        case 2: item = AMLResourceTag.wordAddressItem
        case 4: item = AMLResourceTag.dwordAddressItem
        default: item = AMLResourceTag.qwordAddressItem
        }
        return large(item, body)
    }

    /// A large item: tag, 16-bit length, body.
    private static func large(_ item: UInt8, _ body: [UInt8]) -> [UInt8] {
        [AMLResourceTag.largeItem | item] + ACPIBytes.littleEndian(UInt16(clamping: body.count)) + body
    }

    /// The 16-bit mask of ISA IRQs.
    private static func irqMask(_ irqs: [UInt8]) throws(AMLError) -> UInt16 {
        var mask: UInt16 = 0
        for irq in irqs {
            guard irq < 16 else { throw .outOfRange("ISA IRQ (0–15)", value: UInt64(irq)) }
            mask |= 1 << irq
        }
        return mask
    }
}
