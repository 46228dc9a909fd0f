// ReadableErrors: an error a user reads as one line in strerror's words.
// Foundation's file errors print as "Error Domain=NSCocoaErrorDomain Code=260
// ... UserInfo={...}"; the POSIX reason they carry ("No such file or
// directory") is what a command line or a log should show instead.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum ReadableError {
    /// Why `error` happened, one line, no Foundation domain or user info:
    /// `strerror` of the POSIX error a Foundation error wraps (or stands
    /// for), else the error's own description with line breaks folded.
    public static func reason(_ error: any Error) -> String {
        if let posix = error as? POSIXError { return posixReason(posix.code.rawValue) }
        if error is CocoaError || type(of: error) is NSError.Type { return reason(foundation: error as NSError) }
        return oneLine(String(describing: error))
    }

    /// `reason` after the path it concerns: "PATH: No such file or directory".
    public static func line(path: String, _ error: any Error) -> String {
        "\(path): \(reason(error))"
    }

    /// `text` on one line: its lines trimmed and joined with "; ".
    public static func oneLine(_ text: String) -> String {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.joined(separator: "; ")
    }

    private static func posixReason(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    /// By domain: a POSIX error is its errno; a Foundation error the POSIX
    /// error it wraps, or the errno its code stands for.
    private static func reason(foundation error: NSError) -> String {
        if error.domain == NSPOSIXErrorDomain { return posixReason(Int32(truncatingIfNeeded: error.code)) }
        if let underlying = error.userInfo[NSUnderlyingErrorKey] as? any Error { return reason(underlying) }
        if error.domain == NSCocoaErrorDomain {
            let code = CocoaError.Code(rawValue: error.code)
            return posixCode(for: code).map(posixReason) ?? describe(code)
        }
        // Another framework's domain: its message if it has one, never the dump.
        let message = error.userInfo[NSLocalizedDescriptionKey] as? String ?? error.localizedFailureReason
        return message.map(oneLine) ?? "error \(error.code)"
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
        case .propertyListReadCorrupt, .coderReadCorrupt: "the data is damaged or not in the expected format"
        default: code.rawValue < 512 ? "the file could not be read (error \(code.rawValue))"
            : "the file could not be written (error \(code.rawValue))"
        }
    }
}
