// AML.swift — a small AML tree that encodes to bytes: data (integers in
// their smallest encoding, strings, buffers, packages, EISA IDs, resource
// templates, name references) and the namespace objects a DSDT of a PC
// needs (Scope, Device, Name, Method with Return). Every PkgLength and
// count is computed from the encoded contents.
//
// Integers: 0 is ZeroOp, 1 OneOp, all ones OnesOp (64-bit in a table of
// revision 2 or more, which every Deflect DSDT is), then the smallest of
// BytePrefix, WordPrefix, DWordPrefix, QWordPrefix (ACPI 6.5 §20.2.3).

/// An AML term or data object.
public indirect enum AML: Sendable, Equatable {
    /// An integer constant, smallest encoding.
    case integer(UInt64)
    /// `String`: ASCII 0x01–0x7F, NUL-terminated.
    case string(String)
    /// `Buffer`: its size, then the bytes.
    case buffer([UInt8])
    /// `Package`: up to 255 elements.
    case package([AML])
    /// A compressed EISA ID, as `EISAID ("PNP0501")`: a DWord constant.
    case eisaID(String)
    /// `ResourceTemplate`: a buffer of resource descriptors and an End Tag.
    case resourceTemplate([AMLResource])
    /// A reference to a named object (a NameString as a term).
    case reference(String)
    /// `Name (path, object)`.
    case name(String, AML)
    /// `Scope (path) { terms }`.
    case scope(String, [AML])
    /// `Device (path) { terms }`.
    case device(String, [AML])
    /// `Method (path, argCount, Serialized/NotSerialized, syncLevel) { terms }`.
    case method(String, argCount: Int, serialized: Bool, syncLevel: Int, [AML])
    /// `Return (value)`.
    case `return`(AML)

    /// The value 0 (ZeroOp).
    public static let zero = AML.integer(0)
    /// The value 1 (OneOp).
    public static let one = AML.integer(1)
    /// All ones (OnesOp).
    public static let ones = AML.integer(.max)

    /// A method with no arguments, not serialized.
    public static func method(_ path: String, _ terms: [AML]) -> AML {
        .method(path, argCount: 0, serialized: false, syncLevel: 0, terms)
    }

    /// The AML bytes.
    public func encode() throws(AMLError) -> [UInt8] {
        var bytes: [UInt8] = []
        try encode(into: &bytes)
        return bytes
    }

    /// Appends the AML bytes to `bytes`.
    public func encode(into bytes: inout [UInt8]) throws(AMLError) {
        switch self {
        case let .integer(value):
            bytes += Self.integerBytes(value)
        case let .string(text):
            let chars = Array(text.utf8)
            guard chars.allSatisfy({ (0x01...0x7F).contains($0) }) else { throw .invalidString(text) }
            bytes.append(AMLOpcode.stringPrefix)
            bytes += chars
            bytes.append(AMLOpcode.nullChar)
        case let .buffer(content):
            bytes.append(AMLOpcode.bufferOp)
            bytes += try AMLPkgLength.wrap(Self.integerBytes(UInt64(content.count)) + content)
        case let .package(elements):
            guard elements.count <= 255 else { throw .tooLong("Package elements", length: elements.count, limit: 255) }
            var content = [UInt8(elements.count)]
            for element in elements { try element.encode(into: &content) }
            bytes.append(AMLOpcode.packageOp)
            bytes += try AMLPkgLength.wrap(content)
        case let .eisaID(id):
            bytes.append(AMLOpcode.dwordPrefix)
            bytes += try ACPIBytes.littleEndian(EISAID.compress(id))
        case let .resourceTemplate(resources):
            try AML.buffer(AMLResource.template(resources)).encode(into: &bytes)
        case let .reference(path):
            bytes += try AMLName(path).encoded
        case let .name(path, object):
            bytes.append(AMLOpcode.nameOp)
            bytes += try AMLName(path).encoded
            try object.encode(into: &bytes)
        case let .scope(path, terms):
            bytes.append(AMLOpcode.scopeOp)
            bytes += try AMLPkgLength.wrap(AMLName(path).encoded + Self.termList(terms))
        case let .device(path, terms):
            bytes += [AMLOpcode.extOpPrefix, AMLOpcode.deviceOp]
            bytes += try AMLPkgLength.wrap(AMLName(path).encoded + Self.termList(terms))
        case let .method(path, argCount, serialized, syncLevel, terms):
            // MethodFlags: bits 2–0 ArgCount, bit 3 SerializeFlag, bits 7–4 SyncLevel.
            guard (0...7).contains(argCount) else { throw .outOfRange("Method \(path) argument count", value: UInt64(clamping: argCount)) }
            guard (0...15).contains(syncLevel) else { throw .outOfRange("Method \(path) sync level", value: UInt64(clamping: syncLevel)) }
            let flags = UInt8(argCount) | (serialized ? 1 << 3 : 0) | UInt8(syncLevel) << 4
            bytes.append(AMLOpcode.methodOp)
            bytes += try AMLPkgLength.wrap(AMLName(path).encoded + [flags] + Self.termList(terms))
        case let .return(value):
            bytes.append(AMLOpcode.returnOp)
            try value.encode(into: &bytes)
        }
    }

    private static func termList(_ terms: [AML]) throws(AMLError) -> [UInt8] {
        var bytes: [UInt8] = []
        for term in terms { try term.encode(into: &bytes) }
        return bytes
    }

    /// An integer in its smallest encoding.
    static func integerBytes(_ value: UInt64) -> [UInt8] {
        switch value {
        case 0: return [AMLOpcode.zeroOp]
        case 1: return [AMLOpcode.oneOp]
        case .max: return [AMLOpcode.onesOp]
        case ...0xFF: return [AMLOpcode.bytePrefix, UInt8(value)]
        case ...0xFFFF: return [AMLOpcode.wordPrefix] + ACPIBytes.littleEndian(UInt16(value))
        case ...0xFFFF_FFFF: return [AMLOpcode.dwordPrefix] + ACPIBytes.littleEndian(UInt32(value))
        default: return [AMLOpcode.qwordPrefix] + ACPIBytes.littleEndian(value)
        }
    }
}
