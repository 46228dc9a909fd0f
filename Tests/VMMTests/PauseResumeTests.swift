// VMMTests: pause and resume at a consistent point: guests that would show a
// lost or repeated UART line or MSR write, state that does not move while
// paused (output, emulated MSRs, guest clock), and the state machine's rules.
import DeflectTestSupport
import Foundation
import KVM
import MSRPolicy
import Testing
@testable import VMM

private let emulatedCounter = MSRPolicy(rules: [MSRRule(0x2474, .emulate(Emulation()))])

@Suite("Pause and resume under KVM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct PauseResumeTests {
    @Test func noUARTLineIsLostOrRepeatedAcrossPauses() throws {
        let run = try BackgroundRun("long/sequence.bin")
        #expect(run.waitForOutput("SEQ 100\n"))
        for _ in 0..<10 {
            try run.machine.pause()
            #expect(run.machine.state == .paused)
            let before = run.output.bytes.count
            // The registers are readable, and nothing runs, while paused.
            #expect(try run.machine.vcpus[0].registers().rip >= 0x100000)
            Thread.sleep(forTimeInterval: 0.03)
            #expect(run.output.bytes.count == before)
            try run.machine.resume()
            #expect(run.machine.state == .running)
            Thread.sleep(forTimeInterval: 0.02)
        }
        let report = try #require(run.finish())
        #expect(report.outcome == .guestExit(value: 0x11, status: 35))
        let expected = (0..<2000).map { "SEQ \($0)\n" }.joined() + "END\n"
        #expect(run.output.text == expected)
    }

    @Test func noEmulatedMSRWriteIsLostOrRepeatedAcrossPauses() throws {
        let run = try BackgroundRun("long/msr_counter.bin", msr: .policy(emulatedCounter))
        let runtime = try #require(run.machine.msrRuntime)
        func value() -> UInt64 { runtime.emulatedValues().first { $0.index == 0x2474 }?.value ?? 0 }
        var seen: [UInt64] = []
        for _ in 0..<8 {
            Thread.sleep(forTimeInterval: 0.02)
            guard (try? run.machine.pause()) != nil else { break }   // the guest may already have finished
            let paused = value()
            Thread.sleep(forTimeInterval: 0.02)
            #expect(value() == paused, "an MSR write happened while paused")
            seen.append(paused)
            try run.machine.resume()
        }
        // At least one pause found the guest still counting: otherwise nothing was checked.
        #expect(!seen.isEmpty, "no pause succeeded before the guest finished")
        let report = try #require(run.finish())
        #expect(run.output.text == "COUNT 30000\n", "\(run.output.text)")
        #expect(report.outcome == .guestExit(value: 0x12, status: 37))
        #expect(value() == 30000)
        #expect(seen == seen.sorted())
    }

    @Test func guestClockStopsWhilePausedAndKVMClockIsRestored() throws {
        let run = try BackgroundRun("long/sequence.bin")
        #expect(run.waitForOutput("SEQ 10\n"))
        try run.machine.pause()
        let frozen = run.machine.guestClock.now()
        let kvmclock = try run.machine.vm.clock().clock
        Thread.sleep(forTimeInterval: 0.1)
        #expect(run.machine.guestClock.now() == frozen)
        #expect(run.machine.guestClock.pausedNanoseconds >= 100_000_000)
        try run.machine.resume()
        // KVM_SET_CLOCK put the base back: the kvmclock did not advance over
        // the pause. It may read a little behind the value read after the
        // pause (the base was saved just before), never 80 ms off either way.
        let after = try run.machine.vm.clock().clock
        let moved = Int64(bitPattern: after &- kvmclock)
        #expect(abs(moved) < 80_000_000, "kvmclock moved \(moved) ns over a 100 ms pause")
        #expect(run.machine.guestClock.now() >= frozen)
        run.machine.requestStop()
        _ = run.finish()
    }

    @Test func aPausedRunCanBeStoppedAndStatesAreChecked() throws {
        var config = MachineConfiguration(image: try GuestImages.bytes("long/sequence.bin"), mode: .long, memoryMiB: 16)
        config.timeoutSeconds = 60
        let idle = try Machine(configuration: config, serialOutput: CaptureSink())
        #expect(idle.state == .created)
        #expect(throws: LifecycleError.self) { try idle.pause() }

        let run = try BackgroundRun("long/sequence.bin", vcpus: 2)
        #expect(run.waitForBytes(50))
        #expect(try run.machine.resume() == 0)   // running: resume is a no-op
        try run.machine.pause()
        #expect(try run.machine.pause() == 0)    // paused: pause is a no-op
        run.machine.requestStop()
        let report = try #require(run.finish(limit: 20))
        #expect(report.outcome == .interruptedByUser)
        #expect(report.stuckVCPUs.isEmpty)
        #expect(run.machine.state == .stopped)
        #expect(throws: LifecycleError.self) { try run.machine.resume() }
    }
}
