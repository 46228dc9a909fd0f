// DeflectTestSupport: a regular file this process may not read, for the
// tests of "permission denied" messages (root reads any file of mode 0).
import Foundation

public enum UnreadableFile {
    /// A write-only sysfs attribute when running as root (kernfs refuses
    /// reading it even to root), else a fresh file of mode 0; nil when
    /// neither exists here.
    public static func path() throws -> String? {
        if geteuid() == 0 {
            return ["/sys/bus/pci/rescan", "/sys/kernel/mm/page_idle/bitmap", "/sys/power/wakeup_count"].first(where: refusesReading)
        }
        let path = NSTemporaryDirectory() + "deflect-unreadable-\(UUID().uuidString)"
        try Data("secret".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0)
        return path
    }

    /// A regular file whose open for reading fails with EACCES.
    private static func refusesReading(_ path: String) -> Bool {
        var status = stat()
        guard stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { return false }
        let fd = open(path, O_RDONLY)
        if fd >= 0 {
            close(fd)
            return false
        }
        return errno == EACCES
    }
}
