// VMM: the process's standard streams and file output for the serial port.
// Unbuffered writes to fds go through here, once.
import Devices
import Glibc

public enum StandardStreams {
    /// Writes all of `text` to standard error.
    public static func writeError(_ text: String) {
        var bytes = Array(text.utf8)
        _ = writeAll(fd: 2, &bytes)
    }

    /// Writes all of `text` to standard output; false when it could not be
    /// written (a closed pipe, a full disk).
    @discardableResult
    public static func writeOutput(_ text: String) -> Bool {
        var bytes = Array(text.utf8)
        return writeAll(fd: 1, &bytes)
    }

    /// Loops over short writes and EINTR. Returns false on a write error.
    @discardableResult
    static func writeAll(fd: CInt, _ bytes: inout [UInt8]) -> Bool {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.write(fd, base + written, raw.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            written += n
        }
        return true
    }
}

/// A byte sink writing to a file descriptor, buffered: flushed at a newline,
/// when 4 KiB accumulate, and when the machine asks (end of run). The first
/// failed write (a full disk, `/dev/full`, a closed pipe) is reported once to
/// `onFailure` with a line naming `label` and the cause; later output is dropped.
public final class FileDescriptorSink: ByteSink, @unchecked Sendable {
    // Used under the machine's device lock (serial) or the event sink's lock only.
    private let fd: CInt
    private let ownsDescriptor: Bool
    private var buffer: [UInt8] = []
    /// What the user called this output, e.g. "--serial out.txt".
    public let label: String
    /// Why writing failed, once it has.
    public private(set) var failure: String?
    /// Called once, on the first failed write.
    public var onFailure: (@Sendable (String) -> Void)?

    /// Standard output.
    public static func standardOutput(label: String = "standard output") -> FileDescriptorSink {
        FileDescriptorSink(fd: 1, owns: false, label: label)
    }

    /// Creates or truncates `path`; `label` names it in errors (the option and path).
    public static func file(_ path: String, label: String) throws(MachineError) -> FileDescriptorSink {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .output("cannot open \(label): \(String(cString: strerror(errno)))")
        }
        return FileDescriptorSink(fd: fd, owns: true, label: label)
    }

    private init(fd: CInt, owns: Bool, label: String) {
        self.fd = fd
        self.ownsDescriptor = owns
        self.label = label
        buffer.reserveCapacity(4096)
    }

    deinit {
        flush()
        if ownsDescriptor { _ = Glibc.close(fd) }
    }

    public func write(_ byte: UInt8) {
        guard failure == nil else { return }
        buffer.append(byte)
        if byte == 0x0A || buffer.count >= 4096 { flush() }
    }

    public func flush() {
        guard !buffer.isEmpty, failure == nil else { buffer.removeAll(keepingCapacity: true); return }
        if !StandardStreams.writeAll(fd: fd, &buffer) {
            let message = "cannot write \(label): \(String(cString: strerror(errno)))"
            failure = message
            onFailure?(message)
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
