// AMLOpcodes.swift — the AML bytes the builder emits, each named once with the
// section of the ACPI 6.5 specification (chapter 20, "ACPI Machine Language
// (AML) Specification") that defines it.

/// AML opcodes and prefixes.
public enum AMLOpcode {
    // §20.2.2 Name Objects Encoding
    /// `RootChar`: `\`, a path from the namespace root.
    public static let rootChar: UInt8 = 0x5C
    /// `ParentPrefixChar`: `^`, one scope up.
    public static let parentPrefixChar: UInt8 = 0x5E
    /// `DualNamePrefix`: two NameSegs follow.
    public static let dualNamePrefix: UInt8 = 0x2E
    /// `MultiNamePrefix`: SegCount (a byte) NameSegs follow.
    public static let multiNamePrefix: UInt8 = 0x2F
    /// `NullName`: a name of no segments.
    public static let nullName: UInt8 = 0x00

    // §20.2.3 Data Objects Encoding
    public static let zeroOp: UInt8 = 0x00
    public static let oneOp: UInt8 = 0x01
    /// `OnesOp`: all bits set (64 of them in a table of revision 2 or more).
    public static let onesOp: UInt8 = 0xFF
    public static let bytePrefix: UInt8 = 0x0A
    public static let wordPrefix: UInt8 = 0x0B
    public static let dwordPrefix: UInt8 = 0x0C
    public static let stringPrefix: UInt8 = 0x0D
    public static let qwordPrefix: UInt8 = 0x0E
    /// `NullChar`: ends a string.
    public static let nullChar: UInt8 = 0x00

    // §20.2.5.1 Namespace Modifier Objects Encoding
    public static let nameOp: UInt8 = 0x08
    public static let scopeOp: UInt8 = 0x10

    // §20.2.5.2 Named Objects Encoding
    public static let methodOp: UInt8 = 0x14
    /// `ExtOpPrefix`: the second byte selects an extended opcode.
    public static let extOpPrefix: UInt8 = 0x5B
    /// `DeviceOp` is `ExtOpPrefix 0x82`; this is its second byte.
    public static let deviceOp: UInt8 = 0x82

    // §20.2.5.3 Statement Opcodes Encoding
    public static let returnOp: UInt8 = 0xA4

    // §20.2.5.4 Expression Opcodes Encoding
    public static let bufferOp: UInt8 = 0x11
    public static let packageOp: UInt8 = 0x12
}

/// Resource descriptor tags (ACPI 6.5 §6.4, "Resource Data Types for ACPI").
/// A small item's tag is `item << 3 | length`; a large item's is `0x80 | item`
/// followed by a 16-bit length.
public enum AMLResourceTag {
    // §6.4.2 Small Resource Data Type
    /// §6.4.2.1 IRQ Descriptor, item 0x04: 2 bytes (no flags) or 3 (flags).
    public static let irqItem: UInt8 = 0x04
    /// §6.4.2.5 I/O Port Descriptor, item 0x08, 7 bytes.
    public static let ioPortItem: UInt8 = 0x08
    /// §6.4.2.6 Fixed Location I/O Port Descriptor, item 0x09, 3 bytes.
    public static let fixedIOPortItem: UInt8 = 0x09
    /// §6.4.2.9 End Tag, item 0x0F, 1 byte (the checksum).
    public static let endTagItem: UInt8 = 0x0F

    // §6.4.3 Large Resource Data Type
    /// Bit 7 set: a large item.
    public static let largeItem: UInt8 = 0x80
    /// §6.4.3.4 32-Bit Fixed Memory Range Descriptor, item 0x06.
    public static let memory32FixedItem: UInt8 = 0x06
    /// §6.4.3.5.2 DWord Address Space Descriptor, item 0x07.
    public static let dwordAddressItem: UInt8 = 0x07
    /// §6.4.3.5.3 Word Address Space Descriptor, item 0x08.
    public static let wordAddressItem: UInt8 = 0x08
    /// §6.4.3.6 Extended Interrupt Descriptor, item 0x09.
    public static let extendedInterruptItem: UInt8 = 0x09
    /// §6.4.3.5.1 QWord Address Space Descriptor, item 0x0A.
    public static let qwordAddressItem: UInt8 = 0x0A

    /// A small item's tag byte.
    static func small(_ item: UInt8, length: Int) -> UInt8 {
        item << 3 | UInt8(length & 0x7)
    }
}
