// ContainerdShim: the process that holds a Kubernetes pod's sandbox in place of
// the pause container (`containerd-shim-deflect-v1 -id SANDBOX pause`). It does
// what the pause binary does for the CRI — runs until SIGTERM or SIGINT (exit
// 0), dies on SIGKILL (137), stops and continues on SIGSTOP/SIGCONT — and never
// outlives its shim: its stdin is a socket whose only peer is the shim, so the
// shim's end (by SIGKILL too) is end-of-file here.
//
// Why a pipe and not prctl(PR_SET_PDEATHSIG): the death signal follows the
// *thread* that spawned the child, and the shim spawns from whichever worker
// thread serves the Start call; such a thread may end while the shim lives.
import Foundation

public enum SandboxPlaceholder {
    /// The placeholder's arguments after the shim binary.
    public static func arguments(sandboxID: String) -> [String] { ["-id", sandboxID, "pause"] }

    /// Runs the placeholder; never returns.
    public static func hold() -> Never {
        closeInheritedDescriptors()
        signal(SIGTERM) { _ in _exit(0) }
        signal(SIGINT) { _ in _exit(0) }
        // The spawning thread's signal mask is inherited: SIGTERM and SIGINT must not stay blocked.
        var wanted = sigset_t()
        sigemptyset(&wanted)
        sigaddset(&wanted, SIGTERM)
        sigaddset(&wanted, SIGINT)
        sigprocmask(SIG_UNBLOCK, &wanted, nil)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        // Wait for the shim's end of the lifeline to close (read returns 0) or fail.
        var byte: UInt8 = 0
        while true {
            let count = read(STDIN_FILENO, &byte, 1)
            if count == 0 || (count < 0 && errno != EINTR) { exit(0) }
        }
    }

    /// Waits (at most `limit` seconds) until process `pid` has a handler for
    /// `signal`, as /proc/PID/status's SigCgt says; at once for a signal the
    /// placeholder does not catch, or once the process has gone.
    static func waitUntilCatching(pid: Int32, signal: Int32, limit: Double) {
        guard signal == SIGTERM || signal == SIGINT else { return }
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  !catches(signal, status: status) else { return }
            usleep(5_000)
        }
    }

    /// Whether the SigCgt mask in a /proc/PID/status text has `signal`'s bit (bit N-1).
    static func catches(_ signal: Int32, status: String) -> Bool {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
              let mask = UInt64(line.dropFirst("SigCgt:".count).trimmingCharacters(in: .whitespaces), radix: 16),
              signal >= 1, signal <= 64 else { return false }
        return mask & (UInt64(1) << UInt64(signal - 1)) != 0
    }

    /// Everything but stdin, stdout and stderr: the placeholder holds nothing of its shim's.
    private static func closeInheritedDescriptors() {
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > STDERR_FILENO { close(fd) }
    }
}
