// deflect-bench: QEMU as the peer of the snapshot and migration benchmarks.
// Snapshot: Debian's qemu-system-x86_64 with KVM saves a guest of the same
// RAM size with `migrate "exec:cat > FILE"` and restores it with
// `-incoming "exec:cat FILE"`; the guest is SeaBIOS with no boot device (it
// touches little RAM, like Deflect's sequence guest); QEMU skips zero pages
// in its stream as Deflect's memory file leaves them as holes. Live
// migration: the multiboot guest Deflect migrates, booted with -kernel in a
// destination started with `-incoming tcp:127.0.0.1:PORT` and a source told
// to `migrate` there. Both driven over QMP on Unix sockets, so BENCHMARKS.md
// can show both side by side.
import Dispatch
import Foundation
import Glibc
import KVM

struct QEMUSaveRestore {
    var saveMilliseconds: Double
    /// QEMU's own account of the save (`query-migrate` total-time).
    var reportedSaveMilliseconds: Double
    var fileBytes: Int
    /// From starting the QEMU process until QMP reports the VM running.
    var restoreMilliseconds: Double
}

enum QEMUPeer {
    static let binary = "/usr/bin/qemu-system-x86_64"

    /// Why QEMU cannot be measured here, or nil when it can.
    static func unavailableReason() -> String? {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            return "\(binary) is not installed (make bench installs Debian's qemu-system-x86)"
        }
        return nil
    }

    /// Saves and restores a `sizeMiB` guest once; files live in `directory`.
    static func measure(sizeMiB: Int, directory: String) throws -> QEMUSaveRestore {
        let state = directory + "/qemu-\(sizeMiB).state"
        defer { try? FileManager.default.removeItem(atPath: state) }

        let saving = try QEMUProcess(sizeMiB: sizeMiB, socket: directory + "/qmp-save.sock", incoming: nil)
        defer { saving.stop() }
        try saving.qmp.waitUntilRunning(limit: 30)
        usleep(300_000)   // let SeaBIOS reach its idle loop
        let t0 = DispatchTime.now().uptimeNanoseconds
        _ = try saving.qmp.execute("migrate", arguments: ["uri": "exec:cat > \(state)"])
        var reported = 0.0
        while true {
            let status = try saving.qmp.execute("query-migrate")
            let phase = status["status"] as? String ?? ""
            if phase == "completed" { reported = (status["total-time"] as? NSNumber)?.doubleValue ?? 0; break }
            if phase == "failed" || phase == "cancelled" {
                throw BenchError(description: "QEMU's migrate to a file \(phase): \(status["error-desc"] as? String ?? "no reason given")")
            }
            guard Double(DispatchTime.now().uptimeNanoseconds - t0) < 120e9 else { throw BenchError(description: "QEMU's save did not finish in 120 s") }
            usleep(2_000)
        }
        let save = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        saving.stop()
        let bytes = (try? FileManager.default.attributesOfItem(atPath: state)[.size] as? Int) ?? 0

        let t1 = DispatchTime.now().uptimeNanoseconds
        let restoring = try QEMUProcess(sizeMiB: sizeMiB, socket: directory + "/qmp-restore.sock", incoming: "exec:cat \(state)")
        defer { restoring.stop() }
        try restoring.qmp.waitUntilRunning(limit: 60)
        let restore = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e6
        return QEMUSaveRestore(saveMilliseconds: save, reportedSaveMilliseconds: reported, fileBytes: bytes, restoreMilliseconds: restore)
    }
}

extension QEMUPeer {
    /// "QEMU 7.2.22 (Debian ...)", from `-version`.
    static func version() -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["-version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return "(version unknown)" }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let first = text.split(separator: "\n").first.map(String.init) ?? ""
        return first.replacingOccurrences(of: "QEMU emulator version ", with: "")
    }

    /// Live-migrates the multiboot `kernel` (command line `append`) between
    /// two QEMU processes over loopback TCP, with the downtime limit Deflect
    /// uses by default; cancelled when not converged after `timeout` seconds.
    static func migrate(kernel: String, sizeMiB: Int, append: String, directory: String, timeout: Double) throws -> MigrationRun {
        let port = try freeLoopbackPort()
        let guest = ["-kernel", kernel, "-append", append]
        let destinationSerial = directory + "/qemu-destination.serial"
        let sourceSerial = directory + "/qemu-source.serial"
        for file in [destinationSerial, sourceSerial] { try? FileManager.default.removeItem(atPath: file) }
        let destination = try QEMUProcess(sizeMiB: sizeMiB, socket: directory + "/qmp-destination.sock",
                                          incoming: "tcp:127.0.0.1:\(port)", serial: destinationSerial, extra: guest)
        defer { destination.stop() }
        let source = try QEMUProcess(sizeMiB: sizeMiB, socket: directory + "/qmp-source.sock", incoming: nil,
                                     serial: sourceSerial, extra: guest)
        defer { source.stop() }
        // SeaBIOS runs through the nested host's instruction emulator: booting takes tens of seconds here.
        let booted = Date().addingTimeInterval(300)
        while !((try? String(contentsOfFile: sourceSerial, encoding: .utf8))?.contains("DIRTY") ?? false) {
            guard Date() < booted else { throw BenchError(description: "QEMU's guest did not print DIRTY within 300 s") }
            usleep(10_000)
        }
        usleep(300_000)   // the dirty rate settles, as for Deflect
        try source.qmp.execute("migrate-set-parameters", arguments: ["downtime-limit": 300, "max-bandwidth": 100 << 30])
        let begin = DispatchTime.now().uptimeNanoseconds
        try source.qmp.execute("migrate", arguments: ["uri": "tcp:127.0.0.1:\(port)"])
        var dirtyPagesPerSecond = 0.0
        var status: [String: Any] = [:]
        var failure: String?
        polling: while true {
            status = try source.qmp.execute("query-migrate")
            let ram = status["ram"] as? [String: Any] ?? [:]
            if let rate = (ram["dirty-pages-rate"] as? NSNumber)?.doubleValue, rate > 0 { dirtyPagesPerSecond = rate }
            switch status["status"] as? String ?? "" {
            case "completed": break polling
            case "failed", "cancelled":
                failure = "QEMU's migration \(status["status"] as? String ?? ""): \(status["error-desc"] as? String ?? "no reason given")"
                break polling
            default: break
            }
            if Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9 > timeout {
                _ = try? source.qmp.execute("migrate_cancel")
                failure = "did not converge in \(Int(timeout)) s"
                break polling
            }
            usleep(2_000)
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
        let ram = status["ram"] as? [String: Any] ?? [:]
        let pageSize = (ram["page-size"] as? NSNumber)?.doubleValue ?? 4096
        var run = MigrationRun(failure: failure, totalSeconds: wall,
                               rounds: (ram["dirty-sync-count"] as? NSNumber)?.intValue ?? 0,
                               bytesSent: (ram["transferred"] as? NSNumber)?.doubleValue ?? 0,
                               dirtyBytesPerSecond: dirtyPagesPerSecond * pageSize)
        guard failure == nil else { return run }
        run.totalSeconds = ((status["total-time"] as? NSNumber)?.doubleValue ?? wall * 1000) / 1000
        run.downtimeMilliseconds = (status["downtime"] as? NSNumber)?.doubleValue
        try destination.qmp.waitUntilRunning(limit: 60)
        // The guest prints the migration's gap on its first loop iteration on the destination.
        let until = Date().addingTimeInterval(2)
        repeat {
            run.guestGapMilliseconds = firstGuestGapMilliseconds((try? String(contentsOfFile: destinationSerial, encoding: .utf8)) ?? "")
            if run.guestGapMilliseconds == nil { usleep(10_000) }
        } while run.guestGapMilliseconds == nil && Date() < until
        return run
    }

    /// A loopback TCP port nobody listens on now (the kernel's choice for port 0).
    private static func freeLoopbackPort() throws -> Int {
        let listener = try StreamSocket.listenTCP(host: "127.0.0.1", port: 0)
        return Int(listener.localPort)   // closed when `listener` goes
    }
}

/// One QEMU process with a QMP socket; killed when stopped.
private final class QEMUProcess {
    let process = Process()
    let qmp: QMPConnection

    /// `serial`: a file for COM1 (none when nil); `extra`: more arguments (the guest).
    init(sizeMiB: Int, socket: String, incoming: String?, serial: String? = nil, extra: [String] = []) throws {
        try? FileManager.default.removeItem(atPath: socket)
        process.executableURL = URL(fileURLWithPath: QEMUPeer.binary)
        process.arguments = ["-accel", "kvm", "-m", "\(sizeMiB)", "-smp", "1", "-nodefaults", "-no-user-config",
                             "-display", "none", "-serial", serial.map { "file:\($0)" } ?? "none", "-monitor", "none",
                             "-qmp", "unix:\(socket),server=on,wait=off"] + (incoming.map { ["-incoming", $0] } ?? []) + extra
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        do {
            qmp = try QMPConnection(path: socket, limit: 20, process: process)
        } catch {
            process.terminate()
            process.waitUntilExit()
            let text = String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
            throw BenchError(description: "QEMU did not start: \(error) \(text.split(separator: "\n").first ?? "")")
        }
    }

    func stop() {
        guard process.isRunning else { return }
        _ = try? qmp.execute("quit")
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A QMP client: JSON lines over a Unix socket, every read bounded in time.
private final class QMPConnection {
    private let fd: CInt
    private var pending: [UInt8] = []

    init(path: String, limit: Double, process: Process) throws {
        let deadline = Date().addingTimeInterval(limit)
        var connected: CInt = -1
        while connected < 0 {
            guard process.isRunning else { throw BenchError(description: "QEMU exited with status \(process.terminationStatus)") }
            guard Date() < deadline else { throw BenchError(description: "no QMP socket at \(path) within \(limit) s") }
            connected = Self.connect(path)
            if connected < 0 { usleep(5_000) }
        }
        fd = connected
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = try readMessage()                        // the greeting
        _ = try execute("qmp_capabilities")
    }

    deinit { close(fd) }

    private static func connect(_ path: String) -> CInt {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { close(fd); return -1 }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else { close(fd); return -1 }
        return fd
    }

    /// Sends a command and returns its "return" object (events are skipped).
    @discardableResult
    func execute(_ command: String, arguments: [String: Any]? = nil) throws -> [String: Any] {
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        let data = try JSONSerialization.data(withJSONObject: message) + Data("\n".utf8)
        let sent = data.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == data.count else { throw BenchError(description: "QMP \(command): send failed") }
        while true {
            let reply = try readMessage()
            if let error = reply["error"] as? [String: Any] {
                throw BenchError(description: "QMP \(command): \(error["desc"] as? String ?? "error")")
            }
            if reply["return"] != nil { return reply["return"] as? [String: Any] ?? [:] }
        }
    }

    func waitUntilRunning(limit: Double) throws {
        let deadline = Date().addingTimeInterval(limit)
        while try execute("query-status")["running"] as? Bool != true {
            guard Date() < deadline else { throw BenchError(description: "QEMU's VM was not running within \(limit) s") }
            usleep(1_000)
        }
    }

    private func readMessage() throws -> [String: Any] {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw BenchError(description: "QMP sent something that is not a JSON object")
                }
                return object
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &chunk, chunk.count, 0)
            guard n > 0 else { throw BenchError(description: "QMP connection closed or timed out") }
            pending += chunk[..<n]
        }
    }
}
