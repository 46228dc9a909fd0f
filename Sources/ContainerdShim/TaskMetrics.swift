// ContainerdShim: the task's Stats — the VM process's usage as containerd's
// cgroup v2 metrics (io.containerd.cgroups.v2.Metrics, what `ctr task
// metrics` and the CRI decode), read from /proc/PID/stat and /proc/PID/status.
// A Deflect VM is one process: its threads are what a pids cgroup counts, its
// CPU time is the guest's plus the VMM's, its resident memory holds guest RAM.
import Foundation
import SwiftProtobuf

/// What /proc says about one process.
struct ProcessUsage: Equatable {
    var threads: UInt64 = 0
    /// utime and stime (fields 14 and 15 of /proc/PID/stat), in clock ticks.
    var userTicks: UInt64 = 0
    var systemTicks: UInt64 = 0
    /// VmRSS and its parts (anonymous, file-backed, shared: guest RAM in a memfd is shared), bytes.
    var residentBytes: UInt64 = 0
    var anonymousBytes: UInt64 = 0
    var fileBytes: UInt64 = 0
    var sharedBytes: UInt64 = 0

    /// Parses the two files' text; nil when either does not have the fields (not a process's files).
    init?(stat: String, status: String) {
        // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        userTicks = user
        systemTicks = system
        var values: [Substring: UInt64] = [:]
        for line in status.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "\t" })
            if parts.count >= 2, let value = UInt64(parts[1]) { values[parts[0]] = value }
        }
        guard let threads = values["Threads"], let resident = values["VmRSS"] else { return nil }
        self.threads = threads
        residentBytes = resident * 1024
        anonymousBytes = (values["RssAnon"] ?? 0) * 1024
        fileBytes = (values["RssFile"] ?? 0) * 1024
        sharedBytes = (values["RssShmem"] ?? 0) * 1024
    }

    /// The usage of process `pid`, nil once it has gone.
    static func of(pid: Int32) -> ProcessUsage? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        return ProcessUsage(stat: stat, status: status)
    }
}

enum TaskMetrics {
    /// containerd's name for the type (typeurl: the protobuf name, no type.googleapis.com/ prefix).
    static let typeURL = "io.containerd.cgroups.v2.Metrics"

    /// The cgroup v2 metrics of a VM process. No limits are set (a cgroup
    /// without one reports none), so the limits stay zero.
    static func metrics(_ usage: ProcessUsage, ticksPerSecond: UInt64) -> Io_Containerd_Cgroups_V2_Metrics {
        var metrics = Io_Containerd_Cgroups_V2_Metrics()
        metrics.pids.current = usage.threads
        let microsecondsPerTick = 1_000_000 / max(ticksPerSecond, 1)
        metrics.cpu.userUsec = usage.userTicks * microsecondsPerTick
        metrics.cpu.systemUsec = usage.systemTicks * microsecondsPerTick
        metrics.cpu.usageUsec = metrics.cpu.userUsec + metrics.cpu.systemUsec
        metrics.memory.usage = usage.residentBytes
        metrics.memory.anon = usage.anonymousBytes
        metrics.memory.file = usage.fileBytes
        metrics.memory.shmem = usage.sharedBytes
        return metrics
    }

    /// The metrics as StatsResponse carries them.
    static func any(_ metrics: Io_Containerd_Cgroups_V2_Metrics) throws -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = typeURL
        any.value = try metrics.serializedData()
        return any
    }
}
