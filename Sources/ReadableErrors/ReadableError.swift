// ReadableErrors: an error a user reads as one line in strerror's words.
// Foundation's file errors print as "Error Domain=NSCocoaErrorDomain Code=260
// ... UserInfo={...}"; the POSIX reason they carry ("No such file or
// directory") is what a command line or a log should show instead.
// Only FoundationEssentials: errors of the full Foundation (NSError, as
// FileHandle throws them in the shim) are read through what every Swift
// error has (`_domain`, `_code`) and the CocoaError cast the runtime makes
// for any NSError, so a deflect run never loads Foundation for this.
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

public enum ReadableError {
    /// Why `error` happened, one line, no Foundation domain or user info:
    /// `strerror` of the POSIX error a Foundation error wraps (or stands
    /// for), else the error's own description with line breaks folded.
    public static func reason(_ error: any Error) -> String {
        if let posix = error as? POSIXError { return posixReason(posix.code.rawValue) }
        if error._domain == "NSPOSIXErrorDomain" { return posixReason(Int32(truncatingIfNeeded: error._code)) }
        // FoundationEssentials' CocoaError is one; any NSError casts to one too.
        guard let cocoa = error as? CocoaError else { return oneLine(String(describing: error)) }
        if let underlying = cocoa.underlying { return reason(underlying) }
        if type(of: error) == CocoaError.self || error._domain == "NSCocoaErrorDomain" {
            return posixCode(for: cocoa.code).map(posixReason) ?? describe(cocoa.code)
        }
        // An NSError of another framework's domain: its message if it has
        // one, never the dump.
        let message = cocoa.userInfo["NSLocalizedDescription"] as? String
            ?? cocoa.userInfo["NSLocalizedFailureReason"] as? String
        return message.map(oneLine) ?? "error \(error._code)"
    }

    /// `reason` after the path it concerns: "PATH: No such file or directory".
    public static func line(path: String, _ error: any Error) -> String {
        "\(path): \(reason(error))"
    }

    /// `text` on one line: its lines trimmed and joined with "; ".
    public static func oneLine(_ text: String) -> String {
        let lines = text.split(whereSeparator: \.isNewline).map(trimmed).filter { !$0.isEmpty }
        return lines.joined(separator: "; ")
    }

    /// `text` without the spaces and tabs around it.
    public static func trimmed(_ text: some StringProtocol) -> String {
        String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }

    private static func posixReason(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// The errno a Foundation file error without an underlying error stands for.
    private static func posixCode(for code: CocoaError.Code) -> Int32? {
        switch code {
        case .fileNoSuchFile, .fileReadNoSuchFile: ENOENT
        case .fileReadNoPermission, .fileWriteNoPermission: EACCES
        case .fileWriteOutOfSpace: ENOSPC
        case .fileWriteVolumeReadOnly: EROFS
        case .fileWriteFileExists: EEXIST
        case .fileReadTooLarge: EFBIG
        default: nil
        }
    }

    private static func describe(_ code: CocoaError.Code) -> String {
        switch code {
        case .fileLocking: "the file is locked"
        case .fileReadInvalidFileName, .fileWriteInvalidFileName: "the file name is not valid"
        case .fileReadCorruptFile: "the file is damaged or not in the expected format"
        case .fileReadUnknownStringEncoding, .fileReadInapplicableStringEncoding, .fileWriteInapplicableStringEncoding:
            "the text is not in the expected encoding"
        case .fileReadUnsupportedScheme, .fileWriteUnsupportedScheme: "not a file path"
        // 4864 is coderReadCorrupt, which only the full Foundation names.
        case .propertyListReadCorrupt, CocoaError.Code(rawValue: 4864): "the data is damaged or not in the expected format"
        default: code.rawValue < 512 ? "the file could not be read (error \(code.rawValue))"
            : "the file could not be written (error \(code.rawValue))"
        }
    }
}
