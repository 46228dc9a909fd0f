// VMMTests: the serial control path under KVM: while a migration owns the
// machine, every other control request is refused instead of changing the
// state under it, and a failed migration gives the machine back running.
import DeflectTestSupport
import Foundation
import KVM
import MSRPolicy
import Synchronization
import Testing
@testable import VMM

@Suite("The control path under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct ControlPathTests {
    @Test func aMigrationOwnsTheMachineUntilItEnds() throws {
        let directory = NSTemporaryDirectory() + "deflect-path-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A receiver that never accepts: the sender's hello waits for an answer until its I/O timeout.
        let listener = try MigrationTransport.listen(on: .unix(path: directory + "/m.sock"))
        defer { withExtendedLifetime(listener) {} }

        var config = MachineConfiguration(image: try GuestImages.bytes("long/counter_pair.bin"), mode: .long,
                                          memoryMiB: 16, timeoutSeconds: 120)
        config.msr = .policy(MSRPolicy(rules: [MSRRule(0x2474, .emulate(Emulation()))]))
        let output = CaptureSink()
        let run = BackgroundRun(try Machine(configuration: config, serialOutput: output), output: output)
        let machine = run.machine
        #expect(run.waitForOutput("COUNTING"))

        var options = MigrationOptions(destination: .unix(path: directory + "/m.sock"))
        options.ioTimeoutSeconds = 3
        try machine.beginMigration(options)
        #expect(machine.state == .migrating)
        let accepted = options
        let ended = DispatchSemaphore(value: 0)
        let failure = Mutex<String?>(nil)
        let migration = Thread {
            do {
                try machine.migrate(accepted)
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            ended.signal()
        }
        migration.start()

        // Nothing else changes the machine meanwhile.
        #expect(throws: LifecycleError.conflict("the VM is migrating; only a running VM can be paused")) { try machine.pause() }
        #expect(throws: LifecycleError.conflict("the VM is migrating; only a paused VM can be resumed")) { try machine.resume() }
        #expect(throws: MachineError.self) { try machine.replacePolicy(MSRPolicy(rules: [MSRRule(0x2474, .deny)])) }
        #expect(throws: SnapshotRequestError.self) {
            try machine.snapshot(to: directory + "/s.snap", diff: false, then: .resume)
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/s.snap"))
        #expect(throws: LifecycleError.self) { try machine.registers(vcpu: 0) }
        do {
            try machine.beginMigration(options)
            Issue.record("a second migration was accepted")
        } catch {
            #expect("\(error)".contains("already in progress"), "\(error)")
        }
        #expect(machine.state == .migrating)

        // The migration fails at its I/O timeout and gives the machine back, running.
        #expect(ended.wait(timeout: .now() + 60) == .success)
        #expect(failure.withLock { $0 } != nil)
        #expect(machine.state == .running)
        #expect(machine.migrationProgress.phase == .failed)
        try machine.pause()
        let before = try #require(try machine.registers(vcpu: 0)).0.rbx
        try machine.resume()
        Thread.sleep(forTimeInterval: 0.05)
        try machine.pause()
        let after = try #require(try machine.registers(vcpu: 0)).0.rbx
        #expect(after > before, "the guest did not count on after the failed migration")
        machine.requestStop()
        #expect(run.finish()?.outcome == .interruptedByUser)
    }
}
