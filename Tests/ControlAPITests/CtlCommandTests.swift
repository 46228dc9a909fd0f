// ControlAPITests: the `deflect ctl` executable against a live control
// server backed by the scripted VM: output, statuses and one-line errors.
@testable import ControlAPI
import Foundation
import Testing

/// The `deflect` binary built beside this test bundle, if there is one.
private let deflectBinary: String? = {
    let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("deflect").path
    if FileManager.default.isExecutableFile(atPath: beside) { return beside }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let built = root.appendingPathComponent(".build/debug/deflect").path
    return FileManager.default.isExecutableFile(atPath: built) ? built : nil
}()

struct CtlResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `deflect ctl --socket socket arguments…` without blocking a
/// concurrency thread (the server answering it runs in this process). Both
/// pipes are drained at once, so a chatty stderr cannot stall the child.
private func ctl(_ socket: String, _ arguments: [String], limit: Duration = .seconds(30)) async throws -> CtlResult {
    guard let deflectBinary else { throw TestFailure("no deflect binary: run swift build first") }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: deflectBinary)
    process.arguments = ["ctl", "--socket", socket] + arguments
    process.standardInput = FileHandle.nullDevice
    let pipes = (out: Pipe(), err: Pipe())
    (process.standardOutput, process.standardError) = (pipes.out, pipes.err)
    try process.run()
    let watchdog = Task {
        try await Task.sleep(for: limit)
        process.terminate()
    }
    defer { watchdog.cancel() }
    async let stdout = onOwnThread { String(decoding: pipes.out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
    async let stderr = onOwnThread { String(decoding: pipes.err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
    let (output, errors) = await (stdout, stderr)
    await onOwnThread { process.waitUntilExit() }
    return CtlResult(status: process.terminationStatus, stdout: output, stderr: errors)
}

/// Runs blocking `work` on a thread of its own: blocked Dispatch workers
/// would starve the concurrency pool (and Process's own termination
/// monitoring) on a 2-core machine.
private func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}

@Suite("deflect ctl", .enabled(if: deflectBinary != nil, "the deflect binary is not built"))
struct CtlCommandTests {
    @Test func pauseRegistersResumeAndShutdown() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let running = try await ctl(socket, ["registers", "0"])
            #expect(running.status == 66)
            #expect(running.stderr == "deflect: error: vCPU registers can be read only while the VM is paused\n")
            let pause = try await ctl(socket, ["pause"])
            #expect(pause.status == 0)
            #expect(pause.stdout == "state paused, up 12.5 s, paused 1.3 s in all\n")
            let registers = try await ctl(socket, ["registers", "1"])
            #expect(registers.status == 0)
            #expect(registers.stdout.hasPrefix("vcpu 1\nrax 0000000000001234"))
            let json = try await ctl(socket, ["registers", "1", "--json"])
            #expect(try ControlJSON.decoder().decode(VCPURegistersReport.self, from: Data(json.stdout.utf8)) == FakeVM.registers(vcpu: 1))
            #expect(try await ctl(socket, ["registers", "5"]).stderr == "deflect: error: no vCPU 5: the VM has 2 vCPUs\n")
            #expect(try await ctl(socket, ["resume"]).stdout.hasPrefix("state running"))
            #expect(try await ctl(socket, ["shutdown"]).stdout.hasPrefix("state stopping"))
            #expect(vm.recorded.withLock { $0.stateRequests } == [.paused, .running])
        }
    }

    @Test func statsMetricsAndEvents() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let table = try await ctl(socket, ["stats"])
            #expect(table.status == 0)
            #expect(table.stdout.hasPrefix("state running, up 12.5 s, 1500 exits\n\nexits"))
            let json = try await ctl(socket, ["stats", "--json"])
            #expect(try ControlJSON.decoder().decode(StatsReport.self, from: Data(json.stdout.utf8)) == FakeVM.stats(state: .running))
            let msrs = try await ctl(socket, ["msrs"])
            #expect(msrs.stdout.hasPrefix("msr "))
            #expect(msrs.stdout.contains("IA32_APIC_BASE"))
            let msrsJSON = try await ctl(socket, ["msrs", "--json"])
            #expect(try ControlJSON.decoder().decode(MSRTableReport.self, from: Data(msrsJSON.stdout.utf8)) == FakeVM.msrTable)
            let metrics = try await ctl(socket, ["metrics"])
            #expect(metrics.stdout.contains("# TYPE deflect_exits_total counter"))

            async let events = ctl(socket, ["events"])
            #expect(await eventually { vm.broadcaster.subscriberCount == 1 })
            vm.broadcaster.publish(#"{"event":"msr","n":1}"#)
            vm.broadcaster.publish(#"{"event":"msr","n":2}"#)
            vm.broadcaster.finish()
            let streamed = try await events
            #expect(streamed.status == 0)
            #expect(streamed.stdout == "{\"event\":\"msr\",\"n\":1}\n{\"event\":\"msr\",\"n\":2}\n")
        }
    }

    @Test func policyIsSentAndItsErrorsLocated() async throws {
        let vm = FakeVM()
        let directory = try TemporaryDirectory()
        let good = directory.path + "/good.toml", bad = directory.path + "/bad.toml"
        try Data("default = \"kernel\"\n".utf8).write(to: URL(fileURLWithPath: good))
        try Data("x = 1\n\nbogus = 2\n".utf8).write(to: URL(fileURLWithPath: bad))
        try await withServer(vm) { _, socket in
            let ok = try await ctl(socket, ["policy", good])
            #expect(ok.status == 0)
            #expect(ok.stdout == "policy \(good) installed\n")
            let refused = try await ctl(socket, ["policy", bad])
            #expect(refused.status == 66)
            #expect(refused.stderr == "\(bad):3:1: error: unknown key bogus\n\(bad): error: no default action\n")
            let missing = try await ctl(socket, ["policy", directory.path + "/none.toml"])
            #expect(missing.status == 66)
            #expect(missing.stderr == "deflect: error: policy \(directory.path)/none.toml does not exist\n")
            #expect(vm.recorded.withLock { $0.policies } == ["default = \"kernel\"\n"])
        }
    }

    @Test func unreachableSocketIsOneLineAndStatus70() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/api.sock"
        let none = try await ctl(path, ["pause"])
        #expect(none.status == 70)
        #expect(none.stderr == "deflect: error: no API socket at \(path) (is the VM running with --api-socket \(path)?)\n")
        try await makeStaleSocket(at: path)
        let dead = try await ctl(path, ["stats"])
        #expect(dead.status == 70)
        #expect(dead.stderr == "deflect: error: nothing is serving the API socket \(path) (the VM has stopped)\n")
    }
}
