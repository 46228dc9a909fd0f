// KVMTests: eventfds and the KVM requests built on them — a guest's port
// writes signalling an ioeventfd without an exit, an irqfd consuming its
// eventfd, a routing table with MSI entries, and the refusals.
import DeflectTestSupport
import Foundation
import Testing
@testable import KVM

@Suite("KVM ioeventfd, irqfd and GSI routing", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct InterruptRoutingTests {
    @Test func eventFDCountsAndResets() throws {
        let event = try EventFD()
        #expect(try event.take() == 0)
        #expect(!event.wait(milliseconds: 0))
        try event.signal()
        try event.signal()
        #expect(event.wait(milliseconds: 0))
        #expect(try event.take() == 2)
        #expect(try event.take() == 0)
    }

    /// Three `out 0x80, al` then `hlt`: with an ioeventfd on port 0x80 the
    /// vCPU's next exit is the halt, and the eventfd counted the three writes;
    /// once removed, the same write exits to user space again.
    @Test func aPortWriteSignalsTheEventFDWithoutAnExit() throws {
        let system = try KVMSystem()
        let vm = try system.createVM()
        let memory = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 2 << 20)
        let vcpu = try vm.createVCPU(id: 0)
        let event = try EventFD()
        try vm.addIOEventFD(event, space: .port, address: 0x80, length: 1)
        // mov al, 1; out 0x80, al (x3); hlt; out 0x80, al; hlt
        try startRealMode(vcpu, memory, code: [0xB0, 0x01, 0xE6, 0x80, 0xE6, 0x80, 0xE6, 0x80, 0xF4, 0xE6, 0x80, 0xF4], at: 0x1000)
        #expect(try vcpu.run() == .halt)
        #expect(try event.take() == 3)
        try vm.removeIOEventFD(event, space: .port, address: 0x80, length: 1)
        guard case let .io(exit) = try vcpu.run() else { Issue.record("the removed ioeventfd still takes the write"); return }
        #expect(exit.port == 0x80 && exit.direction == .output)
        #expect(try event.take() == 0)
    }

    /// Only writes of the matched value signal; the others exit as before.
    @Test func datamatchSignalsOnlyTheMatchedValue() throws {
        let system = try KVMSystem()
        let vm = try system.createVM()
        let memory = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 2 << 20)
        let vcpu = try vm.createVCPU(id: 0)
        let event = try EventFD()
        try vm.addIOEventFD(event, space: .port, address: 0x80, length: 1, datamatch: 7)
        // mov al, 7; out 0x80, al; mov al, 8; out 0x80, al; hlt
        try startRealMode(vcpu, memory, code: [0xB0, 0x07, 0xE6, 0x80, 0xB0, 0x08, 0xE6, 0x80, 0xF4], at: 0x1000)
        guard case let .io(exit) = try vcpu.run() else { Issue.record("the unmatched write must exit"); return }
        #expect(vcpu.ioValue(exit) == 8)
        #expect(try event.take() == 1)
    }

    @Test func badLengthsAreRefusedBeforeKVM() throws {
        let vm = try KVMSystem().createVM()
        let event = try EventFD()
        for length: UInt32 in [3, 16] {
            #expect(throws: KVMError.self) { try vm.addIOEventFD(event, space: .mmio, address: 0xD000_0000, length: length) }
        }
        #expect(throws: KVMError.self) { try vm.addIOEventFD(event, space: .port, address: 0x80, length: 0) }
    }

    /// With the in-kernel irqchip: a table of the default routes plus MSI
    /// routes is accepted, an irqfd on an MSI GSI consumes what is signalled
    /// (KVM reads the eventfd to inject), and KVM_SIGNAL_MSI answers.
    @Test func msiRoutesAndIRQFDs() throws {
        let vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        _ = try vm.createVCPU(id: 0)
        let msiGSI: UInt32 = 24
        try vm.setGSIRouting(GSIRoute.irqchipDefaults + [.msi(gsi: msiGSI, address: 0xFEE0_0000, data: 0x41)])
        let event = try EventFD()
        try vm.addIRQFD(event, gsi: msiGSI)
        try event.signal()
        usleep(20_000)
        // Polled, not read: a read here would consume the count itself.
        #expect(!event.wait(milliseconds: 0), "KVM reads an irqfd's eventfd when it injects")
        #expect(throws: KVMError.self) { try vm.addIRQFD(event, gsi: msiGSI) }   // one irqfd per eventfd (EBUSY)
        try vm.removeIRQFD(event, gsi: msiGSI)
        try event.signal()
        #expect(try event.take() == 1, "removed: nobody reads the eventfd any more")
        _ = try vm.signalMSI(address: 0xFEE0_0000, data: 0x42)
        #expect(throws: KVMError.self) { try vm.setGSIRouting(Array(repeating: .msi(gsi: 30, address: 0xFEE0_0000, data: 0), count: 5000)) }
    }
}
