// KVM: an exclusive lock named by a path, held while one writer replaces a
// set of files (a snapshot's state and memory file): flock(2) on a hidden
// lock file, taken without waiting, released by the kernel when the holder
// dies (even by `kill -9`). The holder removes the lock file when it is
// done; a lock file left by a killed holder is unlocked and is taken over
// (and removed) by the next writer.
import Glibc

public final class FileLock {
    public let path: String
    private let fd: CInt

    private init(path: String, fd: CInt) {
        self.path = path
        self.fd = fd
    }

    /// Unlinks the lock file while still holding it, then releases it: a
    /// writer that opened it meanwhile finds it unlinked and starts over.
    deinit {
        _ = unlink(path)
        _ = Glibc.close(fd)
    }

    /// Takes the lock at `path` (creating the file, mode 0600), or nil when
    /// another process holds it.
    public static func acquire(_ path: String) throws(FileError) -> FileLock? {
        // A few rounds: each lost race means another writer just finished
        // and removed the file this one opened.
        for _ in 0..<16 {
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .system("create", path) }
            var opened = stat()
            guard fstat(fd, &opened) == 0, FileKind.kind(mode: opened.st_mode) == .regular else {
                _ = Glibc.close(fd)
                throw FileError(operation: "lock", path: path, reason: "it is not a regular file")
            }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                let code = Glibc.errno
                _ = Glibc.close(fd)
                if code == EWOULDBLOCK { return nil }
                throw .system("lock", path, code)
            }
            // Still the file at `path`? (Not unlinked by the holder before us.)
            var named = stat()
            if stat(path, &named) == 0, named.st_dev == opened.st_dev, named.st_ino == opened.st_ino {
                return FileLock(path: path, fd: fd)
            }
            _ = Glibc.close(fd)
        }
        throw FileError(operation: "lock", path: path, reason: "it keeps being replaced")
    }
}
