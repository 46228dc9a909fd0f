// KVM: OS threads for the loops that block for a VM's lifetime (vCPUs, the
// machine, the stdin pump, S3's wake poller, a migration) — pthreads started
// directly, so the run path needs neither Foundation's `Thread` nor the
// library Foundation loads with it (ICU and its data: 5.8 MiB of a trivial
// run's memory). A start that fails is an error the caller answers, where
// Foundation's `Thread.start()` gave no way to see it.
import Glibc

public enum HostThread {
    /// pthread_create refused (EAGAIN: the process or user is out of threads
    /// or memory for a stack).
    public struct StartError: Error, Equatable, Sendable, CustomStringConvertible {
        public var name: String
        public var errno: Int32
        public var description: String {
            "cannot start thread \(name): \(String(cString: strerror(errno)))"
        }
    }

    /// Runs `body` on a new detached thread named `name` (as `top -H` and
    /// `/proc/PID/task/*/comm` show it, cut to 15 bytes). `stackBytes`
    /// nil is glibc's default (the `ulimit -s` size).
    public static func start(name: String, stackBytes: Int? = nil,
                             _ body: @escaping @Sendable () -> Void) throws(StartError) {
        let rc = create(ThreadStart(name: name, body: body), stackBytes: stackBytes)
        if rc != 0 { throw StartError(name: name, errno: rc) }
    }

    /// pthread_create of a detached thread that runs `start`; 0 or the errno.
    private static func create(_ start: ThreadStart, stackBytes: Int?) -> Int32 {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        if let stackBytes {
            let rc = pthread_attr_setstacksize(&attributes, max(stackBytes, Int(PTHREAD_STACK_MIN)))
            if rc != 0 { return rc }
        }
        let context = Unmanaged.passRetained(start).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, runThreadStart, context)
        // SAFETY: no thread took `context`; give back the reference passed to it.
        if rc != 0 { Unmanaged<ThreadStart>.fromOpaque(context).release() }
        return rc
    }

    /// Names the calling thread (`/proc/thread-self/comm`: pthread_setname_np
    /// needs _GNU_SOURCE, which Swift's Glibc module does not define).
    static func nameCurrentThread(_ name: String) {
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Sleeps the calling thread for `seconds` (nanosleep, resumed after a
    /// signal until the whole time has passed). Negative or NaN sleeps none.
    public static func sleep(seconds: Double) {
        guard seconds > 0 else { return }
        let whole = min(seconds, Double(Int32.max)).rounded(.down)
        var request = timespec(tv_sec: Int(whole), tv_nsec: Int(((seconds - whole) * 1e9).rounded(.down)))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
    }
}

/// A new thread's entry: takes back its ThreadStart, names itself, runs the body.
private func runThreadStart(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let context else { return nil }
    // SAFETY: `context` is the ThreadStart retained by `create` for this
    // thread; it is taken back exactly once, here.
    let start = Unmanaged<ThreadStart>.fromOpaque(context).takeRetainedValue()
    HostThread.nameCurrentThread(start.name)
    start.body()
    return nil
}

/// What a new thread runs, handed over through pthread_create's argument.
private final class ThreadStart: Sendable {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}
