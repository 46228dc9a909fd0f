// MachineControlTests: snapshots taken while other clients pause, resume,
// snapshot and replace the policy in loops are each of one moment. The guest
// (Guests/long/counter_pair.S) keeps one counter in RBX and in RAM; a
// snapshot whose registers and RAM come from different moments restores a
// guest that sees them differ.
import ControlAPI
import DeflectTestSupport
import Foundation
import KVM
import MachineControl
import MSRPolicy
import Synchronization
import Testing
import VMM

@Suite("Snapshots under racing control clients",
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct SnapshotRaceTests {
    /// The counter_pair guest's exit value when its two counters differ.
    static let tornExitValue: UInt32 = 0x3d

    @Test func snapshotsTakenWhileOthersRaceAreNeverTorn() async throws {
        let image = try GuestImages.bytes("long/counter_pair.bin")
        // `counter` is the image's last quadword; flat long-mode images load at 1 MiB.
        let counterAddress = UInt64(0x10_0000 + image.count - 8)
        var config = MachineConfiguration(image: image, mode: .long, memoryMiB: 16, timeoutSeconds: 300)
        config.msr = .policy(MSRPolicy(rules: [MSRRule(0x2474, .emulate(Emulation()))]))
        let output = CaptureSink()
        let machine = try Machine(configuration: config, serialOutput: output)
        let control = MachineControl(machine: machine, configuration: VMConfiguration(
            image: "long/counter_pair.bin", mode: "long", memoryMib: 16, vcpus: 1, platform: "minimal", policyPath: nil))
        let done = DispatchSemaphore(value: 0)
        let report = Mutex<RunReport?>(nil)
        let runner = Thread {
            let finished = machine.run()
            report.withLock { $0 = finished }
            done.signal()
        }
        runner.start()
        let deadline = ContinuousClock.now + .seconds(60)
        while !output.text.contains("COUNTING"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(output.text.contains("COUNTING"), "the guest did not start: \(output.text)")

        let directory = NSTemporaryDirectory() + "deflect-race-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        // The racing clients, each in a loop until the snapshots are taken.
        let racing = RaceFlag()
        let policies = ["[[rule]]\nmsr = 0x2474\naction = \"emulate\"\n",
                        "[[rule]]\nmsr = 0x2474\naction = \"ignore\"\nvalue = 3\n"]
        let racers: [Task<Int, Never>] = [
            Task {
                var n = 0
                while racing.isOn { _ = try? await control.setState(.running); n += 1 }
                return n
            },
            Task {
                var n = 0
                while racing.isOn { _ = try? await control.setState(.paused); n += 1 }
                return n
            },
            Task {
                var n = 0
                while racing.isOn {
                    _ = try? await control.snapshot(SnapshotRequest(path: directory + "/scratch.snap"))
                    n += 1
                }
                return n
            },
            Task {
                var n = 0
                while racing.isOn {
                    _ = try? await control.replacePolicy(text: policies[n % 2])
                    n += 1
                }
                return n
            },
        ]

        var taken: [String] = []
        for i in 0..<20 {
            let path = directory + "/\(i).snap"
            do {
                _ = try await control.snapshot(SnapshotRequest(path: path))
                taken.append(path)
            } catch {
                Issue.record("snapshot \(i) failed while others raced: \(error)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        racing.turnOff()
        var rounds: [Int] = []
        for racer in racers { rounds.append(await racer.value) }
        #expect(rounds.allSatisfy { $0 > 0 }, "every racing client ran: \(rounds)")

        machine.requestStop()
        let stopped = await withCheckedContinuation { c in
            DispatchQueue.global().async { c.resume(returning: done.wait(timeout: .now() + 60) == .success) }
        }
        #expect(stopped)
        #expect(report.withLock { $0?.outcome } == .interruptedByUser)

        // Each snapshot, restored in a new machine: RBX and RAM hold the same
        // count (RBX one ahead between the two increments), and the guest,
        // let run, finds them equal at every check.
        let host = try RestoreHost.current(try KVMSystem())
        var torn: [String] = []
        for path in taken {
            let restored = try Machine(restoring: try LoadedSnapshot.load(path, on: host), timeout: 0.3,
                                       serialOutput: CaptureSink())
            let rbx = try restored.vcpus[0].registers().rbx
            let ram = try restored.ram.read(at: counterAddress, count: 8)
            let counter = ram.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            let outcome = restored.run().outcome
            if rbx &- counter > 1 || outcome == .guestExit(value: Self.tornExitValue, status: 123) {
                torn.append("\((path as NSString).lastPathComponent): RBX \(rbx), RAM \(counter), \(outcome.report.prefix(60))")
            } else if case .timeout = outcome {
                // The guest counted on for the whole run: consistent.
            } else {
                Issue.record("restored \(path) ended unexpectedly: \(outcome.report)")
            }
        }
        #expect(taken.count == 20)
        #expect(torn.isEmpty, "\(torn.count) of \(taken.count) snapshots are torn:\n\(torn.joined(separator: "\n"))")
    }
}

/// Whether the racing clients go on.
private final class RaceFlag: Sendable {
    private let on = Atomic<Bool>(true)
    var isOn: Bool { on.load(ordering: .relaxed) }
    func turnOff() { on.store(false, ordering: .relaxed) }
}
