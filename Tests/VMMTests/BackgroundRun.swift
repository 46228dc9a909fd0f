// VMMTests: a machine running on a thread of its own, whose serial output a
// test can wait on while it pauses, snapshots or stops the machine.
import DeflectTestSupport
import Foundation
import VMM

final class BackgroundRun: @unchecked Sendable {
    // `report` is written by the run's thread before `done` is signalled and
    // read only after waiting on `done`: hence @unchecked.
    let machine: Machine
    let output: CaptureSink
    private let done = DispatchSemaphore(value: 0)
    private var report: RunReport?

    /// Runs `machine`, whose serial output goes to `output`.
    init(_ machine: Machine, output: CaptureSink, startingPaused: Bool = false) {
        self.machine = machine
        self.output = output
        let thread = Thread { [self] in
            report = machine.run(startingPaused: startingPaused)
            done.signal()
        }
        thread.start()
    }

    /// Builds and runs a long-mode machine for `guest` (16 MiB, minimal platform).
    convenience init(_ guest: String, msr: MSRSetup = .kernelOnly, vcpus: Int = 1, timeout: Double = 120) throws {
        var config = MachineConfiguration(image: try GuestImages.bytes(guest), mode: .long, memoryMiB: 16,
                                          vcpuCount: vcpus, timeoutSeconds: timeout)
        config.msr = msr
        let output = CaptureSink()
        self.init(try Machine(configuration: config, serialOutput: output), output: output)
    }

    /// Waits until the output contains `text` (false after `limit` seconds: a hang guard).
    func waitForOutput(_ text: String, limit: Double = 60) -> Bool {
        wait(limit) { output.text.contains(text) }
    }

    /// Waits until the guest wrote at least `count` bytes (vCPUs printing at once interleave).
    func waitForBytes(_ count: Int, limit: Double = 60) -> Bool {
        wait(limit) { output.bytes.count >= count }
    }

    /// The run's report once it ended (nil after `limit` seconds).
    func finish(limit: Double = 120) -> RunReport? {
        guard done.wait(timeout: .now() + limit) == .success else { return nil }
        return report
    }

    private func wait(_ limit: Double, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(limit)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.005)
        }
        return false
    }
}
