// ContainerdShim: one line for an error that reaches containerd. Foundation's
// file and process errors print as `Error Domain=NSCocoaErrorDomain Code=…
// "(null)"`; what the reader needs is the system's reason (strerror of the
// errno underneath), so that is what the shim's errors say.
import Foundation

public enum SystemErrorText {
    public static func describe(_ error: any Error) -> String {
        // The shim's own errors say what they mean; only Foundation's need translating.
        if !(type(of: error) is NSError.Type) { return String(describing: error) }
        let nsError = error as NSError
        if nsError.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(nsError.code))) }
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError { return describe(underlying) }
        switch CocoaError.Code(rawValue: nsError.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
        case .fileReadInvalidFileName, .fileWriteInvalidFileName: return "invalid file name"
        case .fileWriteFileExists: return String(cString: strerror(EEXIST))
        case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
        case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
        case .fileReadTooLarge: return "file too large"
        default: return "the system call failed (\(nsError.domain == NSCocoaErrorDomain ? "file error" : nsError.domain) \(nsError.code))"
        }
    }
}
