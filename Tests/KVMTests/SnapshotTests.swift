// KVMTests: vCPU and VM state capture and restore, memory files and dirty
// logging, against the real /dev/kvm (skipped where it is not usable), and
// the MSR selection rules (no KVM needed).
import DeflectTestSupport
import Foundation
import Glibc
import Testing
@testable import KVM

private let kvmUsable = KVMAvailability.usable
private let skip = Comment(rawValue: KVMAvailability.skipComment)

/// KVM_GET_CLOCK reports the host realtime with the clock (a master clock).
private let clockReportsRealtime: Bool = {
    guard let vm = try? KVMSystem().createVM(), let clock = try? vm.clock(),
          let adjust = try? vm.check(.adjustClock) else { return false }
    return clock.flags & UInt32(bitPattern: adjust) & KVMClockData.realtimeValid != 0
}()

private struct SnapshotTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A VM with an in-kernel irqchip and PIT, `ramSize` bytes of RAM at 0 from
/// `backing`, and one vCPU.
private struct TestMachine {
    let system: KVMSystem
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpu: VCPU

    init(ramSize: UInt64 = 2 << 20, backing: GuestMemoryBacking = .anonymous, logDirtyPages: Bool = false,
         manualProtect: Bool = false) throws {
        system = try KVMSystem()
        vm = try system.createVM()
        try vm.createIRQChip()
        try vm.createPIT2()
        if manualProtect { try vm.enableManualDirtyLogProtect() }
        memory = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: ramSize, backing: backing,
                                  logDirtyPages: logDirtyPages)
        vcpu = try vm.createVCPU(id: 0)
        try vcpu.setCPUID(try system.supportedCPUID())
    }

    /// Loads a real-mode guest at 0x7c00 and points the vCPU at it.
    func loadRealMode(_ guest: String) throws {
        try startRealMode(vcpu, memory, code: try GuestImages.bytes(guest), at: 0x7C00)
    }

    /// Runs until an OUT to `port`; returns the byte written. Fails on any
    /// other exit, or after `limit` exits.
    func runUntilOut(_ port: UInt16, limit: Int = 1000) throws -> UInt8 {
        for _ in 0..<limit {
            let exit = try vcpu.run()
            switch exit {
            case let .io(io) where io.direction == .output && io.port == port:
                return UInt8(truncatingIfNeeded: vcpu.ioValue(io))
            case .interrupted:
                continue
            default:
                throw SnapshotTestError( "unexpected exit \(exit) waiting for OUT to 0x\(String(port, radix: 16))")
            }
        }
        throw SnapshotTestError( "no OUT to 0x\(String(port, radix: 16)) in \(limit) exits")
    }

    func msrIndices() throws -> [UInt32] {
        try system.saveableMSRs(cpuid: try vcpu.cpuid())
    }
}

/// A temporary file removed at the end of the test.
private final class TemporaryFile {
    let path: String
    let fd: CInt

    init() throws {
        var template = Array("\(NSTemporaryDirectory())/deflect-snapshot-XXXXXX".utf8CString)
        fd = mkstemp(&template)
        guard fd >= 0 else { throw SnapshotTestError( "mkstemp failed: errno \(errno)") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        close(fd)
        unlink(path)
    }

    var allocatedBytes: Int {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_blocks) * 512 : -1
    }

    var size: Int {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_size) : -1
    }
}

/// The saved MSRs without IA32_TSC, which runs on between two captures.
private func withoutTSC(_ snapshot: VCPUSnapshot) -> VCPUSnapshot {
    var copy = snapshot
    copy.msrs.removeAll { $0.index == SaveableMSRs.tsc }
    return copy
}

@Suite("Saveable MSR rules")
struct SaveableMSRRuleTests {
    private let intel = CPUIDEntry(function: 0, eax: 0xD, ebx: 0x756E_6547, ecx: 0x6C65_746E, edx: 0x4965_6E69)

    @Test func mtrrsAreAddedToTheIndexList() {
        let (kept, _) = SaveableMSRs.select(indexList: [0x174, 0x10], cpuid: [intel])
        for mtrr in [0xFE, 0x2FF, 0x200, 0x20F, 0x250, 0x258, 0x259, 0x268, 0x26F] as [UInt32] {
            #expect(kept.contains(mtrr), "MTRR 0x\(String(mtrr, radix: 16))")
        }
        #expect(kept.contains(0x174) && kept.contains(0x10))
        #expect(kept == kept.sorted())
    }

    @Test func pmuCountersFollowCPUIDLeafA() {
        let twoCounters = CPUIDEntry(function: 0xA, eax: 2 | 2 << 8, edx: 1)
        let list: [UInt32] = [0xC1, 0xC2, 0xC3, 0x186, 0x188, 0x309, 0x30A, 0x38F]
        let (kept, dropped) = SaveableMSRs.select(indexList: list, cpuid: [intel, twoCounters])
        #expect(kept.filter { list.contains($0) } == [0xC1, 0xC2, 0x186, 0x309, 0x38F])
        #expect(Set(dropped.map(\.index)) == [0xC3, 0x188, 0x30A])
        let (keptWithoutPMU, _) = SaveableMSRs.select(indexList: list, cpuid: [intel])
        #expect(keptWithoutPMU.filter { list.contains($0) }.isEmpty)
    }

    @Test func amdAndParavirtualMSRsNeedTheirCPUID() {
        let list: [UInt32] = [0xC001_0000, 0xC001_0200, 0x4B56_4D00, 0x4000_0000, 0x6E0]
        let (kept, dropped) = SaveableMSRs.select(indexList: list, cpuid: [intel])
        #expect(kept.filter { list.contains($0) }.isEmpty)
        #expect(dropped.allSatisfy { !$0.reason.isEmpty })
        let kvmLeaf = CPUIDEntry(function: 0x4000_0000, ebx: 0x4B4D_564B, ecx: 0x564B_4D56, edx: 0x4D)
        let deadline = CPUIDEntry(function: 1, ecx: 1 << 24)
        let (keptWithLeaves, _) = SaveableMSRs.select(indexList: list, cpuid: [intel, kvmLeaf, deadline])
        #expect(keptWithLeaves.filter { list.contains($0) } == [0x6E0, 0x4B56_4D00])
    }

    @Test func tscDeadlineIsRestoredAfterTheTSC() {
        #expect(SaveableMSRs.restoreOrder([0x6E0, 0x10, 0x174]) == [0x10, 0x174, 0x6E0])
    }
}

@Suite("vCPU and VM snapshots", .enabled(if: kvmUsable, skip))
struct SnapshotTests {
    @Test func saveableMSRsOnThisHostIncludeTheMTRRsAndAreAllReadable() throws {
        let machine = try TestMachine()
        let indices = try machine.msrIndices()
        #expect(Set(SaveableMSRs.mtrrs).isSubset(of: Set(indices)))
        let snapshot = try VCPUSnapshot.capture(machine.vcpu, msrIndices: indices)
        #expect(snapshot.refusedMSRs == [], "KVM refused MSRs the rules kept: \(snapshot.refusedMSRs.map { String($0, radix: 16) })")
        #expect(snapshot.msrs.count + snapshot.refusedMSRs.count == indices.count)
        #expect(snapshot.msrs.last?.index == SaveableMSRs.tscDeadline || !indices.contains(SaveableMSRs.tscDeadline))
    }

    @Test func aRefusedMSRIsReportedByIndexAndTheRestSaved() throws {
        let machine = try TestMachine()
        let bogus: UInt32 = 0x0BAD_0000   // no MSR KVM knows; host reads stop at it
        let indices: [UInt32] = [0x174, bogus, 0x175, 0x10]
        #expect(throws: KVMError.partialMSRAccess(request: "KVM_GET_MSRS", processed: 1, requested: 4, failedIndex: bogus)) {
            _ = try machine.vcpu.readMSRs(indices)
        }
        let snapshot = try VCPUSnapshot.capture(machine.vcpu, msrIndices: indices)
        #expect(snapshot.refusedMSRs == [bogus])
        #expect(snapshot.msrs.map(\.index) == [0x174, 0x175, 0x10])
    }

    @Test func debugRegistersRoundTrip() throws {
        let machine = try TestMachine()
        let registers = DebugRegisters(breakpoints: [0x1000, 0x2000, 0x3000, 0x4000], dr6: 0xFFFF_0FF1, dr7: 0x0000_0401 | 0x10_0000)
        try machine.vcpu.setDebugRegisters(registers)
        let back = try machine.vcpu.debugRegisters()
        #expect(back.breakpoints == registers.breakpoints)
        #expect(back.dr7 == registers.dr7)
        #expect(back.dr6 & 0xF == 1)
    }

    @Test func vcpuEventsRoundTrip() throws {
        let machine = try TestMachine()
        var events = try machine.vcpu.events()
        #expect(events.nmiPending == false)
        events.nmiPending = true
        events.nmiMasked = true
        events.interruptShadow = 1
        try machine.vcpu.setEvents(events)
        let back = try machine.vcpu.events()
        #expect(back.nmiPending == true)
        #expect(back.nmiMasked == true)
        #expect(back.interruptShadow == 1)
    }

    @Test(.enabled(if: KVMAvailability.supports(.sregs2), Comment(rawValue: KVMAvailability.missing(.sregs2))))
    func sregs2CarriesThePDPTRs() throws {
        let machine = try TestMachine()
        #expect(machine.vcpu.hasSREGS2)
        #expect(try machine.vcpu.specialRegisterImage().format == .sregs2)
        // 32-bit PAE paging: CR0.PE|PG, CR4.PAE, CR3 at a PDPT in RAM.
        var sregs = try machine.vcpu.specialRegisters()
        sregs.cr0 = 0x8000_0011
        sregs.cr4 = 0x20
        sregs.cr3 = 0x4000
        sregs.efer = 0
        sregs.cs.db = true; sregs.cs.s = true; sregs.cs.type = 0xB; sregs.cs.present = true
        sregs.cs.g = true; sregs.cs.limit = 0xFFFF_FFFF
        let image = try SpecialRegisterImage(sregs2: sregs, pdptrs: [0x5001, 0x6001, 0x7001, 0x8001])
        try machine.vcpu.setSpecialRegisterImage(image)
        let back = try machine.vcpu.specialRegisterImage()
        #expect(back.format == .sregs2)
        // KVM reports PDPTRs only while the vCPU is in PAE paging; this nested
        // host (kvm_pvm) drops CR0.PG outside long mode, so there it has none.
        if try machine.vcpu.specialRegisters().cr0 & 0x8000_0000 != 0 {
            #expect(back.pdptrs == [0x5001, 0x6001, 0x7001, 0x8001])
        } else {
            #expect(back.pdptrs == nil)
        }
        #expect(back.cr3 == 0x4000)
    }

    @Test func irqchipAndPITRoundTrip() throws {
        let machine = try TestMachine()
        var master = try machine.vm.pic(.master)
        master.imr = 0xA5
        master.irqBase = 0x20
        try machine.vm.setPIC(.master, master)
        #expect(try machine.vm.pic(.master) == master)
        var ioapic = try machine.vm.ioapic()
        #expect(ioapic.redirectionTable.count == 24)
        ioapic.redirectionTable[2] = 0x0300_0000_0000_0031   // vector 0x31, unmasked, destination 3
        ioapic.redirectionTable[23] = 0x0001_0042            // masked, vector 0x42
        try machine.vm.setIOAPIC(ioapic)
        #expect(try machine.vm.ioapic().redirectionTable == ioapic.redirectionTable)
        var pit = try machine.vm.pitState()
        pit.channels[2].count = 0x1234
        pit.channels[2].mode = 3
        pit.channels[2].rwMode = 3
        try machine.vm.setPITState(pit)
        let back = try machine.vm.pitState()
        #expect(back.channels[2].count == 0x1234)
        #expect(back.channels[2].mode == 3)
        #expect(back.flags == pit.flags)

        // Into a fresh VM: equal except what moves with time (the clock, the
        // PIT's reload timestamps: KVM_SET_PIT2 reloads every channel now).
        let saved = try VMSnapshot.capture(machine.vm)
        let fresh = try TestMachine()
        try saved.restore(to: fresh.vm)
        var again = try VMSnapshot.capture(fresh.vm)
        #expect(again.irqchip == saved.irqchip)
        #expect(again.clock.clock >= saved.clock.clock)
        again.clock = saved.clock
        for i in 0..<3 { again.pit?.channels[i].countLoadTime = saved.pit?.channels[i].countLoadTime ?? 0 }
        #expect(again == saved)
    }

    @Test(.enabled(if: clockReportsRealtime,
                   "KVM_GET_CLOCK does not report KVM_CLOCK_REALTIME here (no master clock on this host)"))
    func aRestoreCanAdvanceTheClockByTheRealtimeElapsed() throws {
        let machine = try TestMachine()
        let saved = try VMSnapshot.capture(machine.vm)
        usleep(200_000)
        let migrated = try TestMachine()
        try saved.restore(to: migrated.vm, advanceClockByElapsedRealtime: true)
        #expect(try migrated.vm.clock().clock - saved.clock.clock >= 200_000_000)
    }

    @Test func withoutRealtimeTheClockResumesWhereItStopped() throws {
        let machine = try TestMachine()
        var saved = try VMSnapshot.capture(machine.vm)
        saved.clock.flags &= ~KVMClockData.realtimeValid
        usleep(200_000)
        let restored = try TestMachine()
        try saved.restore(to: restored.vm, advanceClockByElapsedRealtime: true)
        let resumed = try restored.vm.clock().clock
        #expect(resumed >= saved.clock.clock)
        #expect(resumed - saved.clock.clock < 150_000_000)
    }

    @Test func aVMWithoutIRQChipOrPITHasNoneToSave() throws {
        let vm = try KVMSystem().createVM()
        let snapshot = try VMSnapshot.capture(vm)
        #expect(snapshot.irqchip == nil)
        #expect(snapshot.pit == nil)
    }

    @Test func captureRestoreCaptureIsEqualAndTheGuestGoesOn() throws {
        let ram: UInt64 = 2 << 20
        let ramFile = try MemoryFile.anonymous(size: ram)
        let first = try TestMachine(ramSize: ram, backing: .shared(ramFile, offset: 0))
        try first.loadRealMode("real/snapshot_counter.bin")
        for expected in 1...3 { #expect(try first.runUntilOut(0x80) == UInt8(expected)) }
        try first.vcpu.completePendingExit()
        let indices = try first.msrIndices()
        let vcpuState = try VCPUSnapshot.capture(first.vcpu, msrIndices: indices)
        let vmState = try VMSnapshot.capture(first.vm)
        #expect(vcpuState.refusedMSRs == [])
        #expect(try vcpuState.generalRegisters().rcx & 0xFFFF == 0x1234)

        // Memory: the memfd is the RAM; it goes to a file in the kernel.
        let memoryFile = try TemporaryFile()
        try first.memory.writeContents(to: memoryFile.fd, fileOffset: 0)
        #expect(memoryFile.size == Int(ram))

        // A new VM maps the file privately and takes the state.
        let restoredRAM = try MemoryFile.open(path: memoryFile.path)
        let second = try TestMachine(ramSize: ram, backing: .privateCopy(restoredRAM, offset: 0))
        try vmState.restore(to: second.vm)
        #expect(try vcpuState.restore(to: second.vcpu) == nil)

        // Equal again, except IA32_TSC (it runs on between the captures).
        let again = try VCPUSnapshot.capture(second.vcpu, msrIndices: indices)
        #expect(withoutTSC(again) == withoutTSC(vcpuState))
        let tscBefore = vcpuState.msrs.first { $0.index == SaveableMSRs.tsc }?.value ?? 0
        let tscAfter = again.msrs.first { $0.index == SaveableMSRs.tsc }?.value ?? 0
        #expect(tscAfter >= tscBefore)

        // The guest continues with the next count, registers and memory intact.
        for expected in 4...10 { #expect(try second.runUntilOut(0x80) == UInt8(expected)) }
        #expect(try second.runUntilOut(0x81) == 0x34)
        let regs = try second.vcpu.registers()
        #expect(regs.rdx & 0xFFFF == 0xBEEF)
        #expect(try second.memory.load(UInt16.self, at: GuestPhysicalAddress(0x600)) == 10)
        // MAP_PRIVATE: the guest's writes after the restore never reach the file.
        #expect(try restoredRAM.read(at: 0x600, count: 2) == [3, 0])
        // The first VM is untouched by all this.
        #expect(try first.memory.load(UInt16.self, at: GuestPhysicalAddress(0x600)) == 3)
    }

    @Test func snapshotsSurviveJSON() throws {
        let machine = try TestMachine()
        let state = try VCPUSnapshot.capture(machine.vcpu, msrIndices: try machine.msrIndices())
        let decoded = try JSONDecoder().decode(VCPUSnapshot.self, from: try JSONEncoder().encode(state))
        #expect(decoded == state)
        let vmState = try VMSnapshot.capture(machine.vm)
        #expect(try JSONDecoder().decode(VMSnapshot.self, from: try JSONEncoder().encode(vmState)) == vmState)
    }

    @Test func aDamagedImageIsRefusedBeforeAnythingChanges() throws {
        let machine = try TestMachine()
        var state = try VCPUSnapshot.capture(machine.vcpu, msrIndices: [0x174])
        let fresh = try TestMachine()
        var regs = try fresh.vcpu.registers()
        regs.rax = 0x5555
        try fresh.vcpu.setRegisters(regs)
        state.xsave.removeLast()
        #expect(throws: KVMError.self) { try state.restore(to: fresh.vcpu) }
        #expect(try fresh.vcpu.registers().rax == 0x5555)
    }

    @Test(.enabled(if: KVMAvailability.supports(.getTSCKHz) && !KVMAvailability.supports(.tscControl),
                   "needs KVM_GET_TSC_KHZ without KVM_CAP_TSC_CONTROL (a rate that cannot be set)"))
    func anotherTSCRateIsRefusedOrReturnedAsAWarning() throws {
        let machine = try TestMachine()
        var state = try VCPUSnapshot.capture(machine.vcpu, msrIndices: [0x174])
        let host = try #require(state.tscKHz)
        state.tscKHz = host + 100_000
        let fresh = try TestMachine()
        var regs = try fresh.vcpu.registers()
        regs.rax = 0x7777
        try fresh.vcpu.setRegisters(regs)
        #expect(throws: KVMError.tscFrequencyMismatch(savedKHz: host + 100_000, hostKHz: host)) {
            try state.restore(to: fresh.vcpu)
        }
        #expect(try fresh.vcpu.registers().rax == 0x7777)
        let warning = try state.restore(to: fresh.vcpu, acceptTSCFrequencyChange: true)
        #expect(warning == TSCFrequencyMismatch(savedKHz: host + 100_000, hostKHz: host))
    }
}

@Suite("Guest memory files and dirty logging", .enabled(if: kvmUsable, skip))
struct MemoryFileTests {
    @Test func memfdRAMWritesAreVisibleThroughTheFile() throws {
        let file = try MemoryFile.anonymous(size: 2 << 20)
        let machine = try TestMachine(backing: .shared(file, offset: 0))
        try machine.memory.write([1, 2, 3, 4], at: GuestPhysicalAddress(0x1_0000))
        #expect(try file.read(at: 0x1_0000, count: 4) == [1, 2, 3, 4])
        // And the guest's own writes.
        try machine.loadRealMode("real/snapshot_counter.bin")
        #expect(try machine.runUntilOut(0x80) == 1)
        #expect(try file.read(at: 0x600, count: 2) == [1, 0])
    }

    @Test func slotsMapOneMemoryFileAtTheirGuestAddresses() throws {
        // The PC layout: [0, 0xE0000) rw, [0xE0000, 0x100000) read-only, the rest rw,
        // each slot at file offset = its guest address, so the file is the RAM image.
        let size: UInt64 = 2 << 20
        let file = try MemoryFile.anonymous(size: size)
        let vm = try KVMSystem().createVM()
        let pieces: [(UInt64, UInt64, Bool)] = [(0, 0xE_0000, false), (0xE_0000, 0x2_0000, true), (0x10_0000, size - 0x10_0000, false)]
        let slots = try pieces.enumerated().map { slot, piece in
            try vm.addMemory(slot: UInt32(slot), at: GuestPhysicalAddress(piece.0), size: piece.1, readOnly: piece.2,
                             backing: .shared(file, offset: piece.0))
        }
        for (memory, address) in zip(slots, [0x7000, 0xF_0000, 0x10_0010] as [UInt64]) {
            try memory.store(UInt32(truncatingIfNeeded: address) | 0xA000_0000, at: GuestPhysicalAddress(address))
            #expect(try file.read(at: address, count: 4) == withUnsafeBytes(of: (UInt32(truncatingIfNeeded: address) | 0xA000_0000).littleEndian) { Array($0) })
        }
        // The whole image goes out in one piece per slot.
        let image = try TemporaryFile()
        for memory in slots { try memory.writeContents(to: image.fd, fileOffset: memory.start.rawValue) }
        #expect(image.size == Int(size))
        var word: UInt32 = 0
        #expect(pread(image.fd, &word, 4, 0x10_0010) == 4)
        #expect(word == 0xA010_0010)
    }

    @Test(arguments: [false, true])
    func zeroPagesStayHolesAndReadBackAsZero(memfd: Bool) throws {
        let size: UInt64 = 8 << 20
        let vm = try KVMSystem().createVM()
        let backing: GuestMemoryBacking = memfd ? .shared(try MemoryFile.anonymous(size: size), offset: 0) : .anonymous
        let memory = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: size, readOnly: false, backing: backing)
        // Three pages with data (one of them only in its last byte), one
        // written and zeroed again, the rest never touched.
        try memory.store(UInt64(0x1122_3344), at: GuestPhysicalAddress(0x3000))
        try memory.store(UInt64(0x5566), at: GuestPhysicalAddress(0x4000))
        try memory.write([0x77], at: GuestPhysicalAddress(0x50_0FFF))
        try memory.store(UInt64(1), at: GuestPhysicalAddress(0x60_0000))
        try memory.store(UInt64(0), at: GuestPhysicalAddress(0x60_0000))
        let image = try TemporaryFile()
        let written = try memory.writeContents(to: image.fd, fileOffset: 0)
        #expect(written == 3 * 4096)
        #expect(image.size == Int(size))
        #expect(image.allocatedBytes <= 64 * 1024, "zero pages must stay holes")
        // The file reads back as the RAM it was written from, zeros included.
        let file = try MemoryFile.open(path: image.path)
        #expect(try file.read(at: 0x3000, count: 8) == [0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0])
        #expect(try file.read(at: 0x4000, count: 2) == [0x66, 0x55])
        #expect(try file.read(at: 0x50_0FFE, count: 2) == [0, 0x77])
        #expect(try file.read(at: 0x60_0000, count: 8) == [UInt8](repeating: 0, count: 8))
    }

    @Test func aPrivateMappingNeverChangesTheFile() throws {
        let source = try TemporaryFile()
        let pattern = [UInt8](repeating: 0xAB, count: 8192)
        #expect(Glibc.write(source.fd, pattern, pattern.count) == pattern.count)
        _ = ftruncate(source.fd, 1 << 20)
        let file = try MemoryFile.open(path: source.path)
        let machine = try TestMachine(ramSize: 1 << 20, backing: .privateCopy(file, offset: 0))
        #expect(try machine.memory.read(at: GuestPhysicalAddress(0x1000), count: 4) == [0xAB, 0xAB, 0xAB, 0xAB])
        try machine.memory.write([9, 9], at: GuestPhysicalAddress(0x1000))
        #expect(try machine.memory.read(at: GuestPhysicalAddress(0x1000), count: 2) == [9, 9])
        #expect(try file.read(at: 0x1000, count: 2) == [0xAB, 0xAB])
    }

    @Test func aMemoryFileTooSmallForTheSlotIsRefused() throws {
        let file = try MemoryFile.anonymous(size: 1 << 20)
        let vm = try KVMSystem().createVM()
        #expect(throws: KVMError.self) {
            _ = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 2 << 20, backing: .shared(file, offset: 0))
        }
        #expect(throws: KVMError.self) {
            _ = try vm.addMemory(slot: 0, at: GuestPhysicalAddress(0), size: 1 << 20, backing: .shared(file, offset: 4096))
        }
    }

    private func dirtyLogReportsExactlyTheWrittenPages(manualProtect: Bool) throws {
        let machine = try TestMachine(logDirtyPages: true, manualProtect: manualProtect)
        try machine.loadRealMode("real/dirty_pages.bin")
        _ = try machine.vm.dirtyPages(slot: 0)   // host writes (the image) are not KVM's to log
        _ = try machine.runUntilOut(0x80)
        let first = try machine.vm.dirtyPages(slot: 0)
        #expect(first.pageCount == 512)
        #expect(first.words.count == 8)
        #expect(first.dirtyPages == [3, 5])
        _ = try machine.runUntilOut(0x81)
        let second = try machine.vm.dirtyPages(slot: 0)
        #expect(second.dirtyPages == [9])

        // Only the dirty pages go to the diff file; the rest are holes.
        let diff = try TemporaryFile()
        let written = try machine.memory.writeDirtyPages(first, to: diff.fd, fileOffset: 0)
        #expect(written == 2 * 4096)
        #expect(diff.size == 2 << 20)
        #expect(diff.allocatedBytes < 64 * 1024)
        var bytes = [UInt8](repeating: 0, count: 2)
        #expect(pread(diff.fd, &bytes, 2, 0x5FFE) == 2)
        #expect(bytes == [0x33, 0x33])
        #expect(pread(diff.fd, &bytes, 2, 0x9000) == 2)
        #expect(bytes == [0, 0])   // dirtied after the first bitmap: not in this diff
    }

    @Test func dirtyLogReportsExactlyThePagesTheGuestWrote() throws {
        try dirtyLogReportsExactlyTheWrittenPages(manualProtect: false)
    }

    @Test(.enabled(if: KVMAvailability.supports(.manualDirtyLogProtect2), Comment(rawValue: KVMAvailability.missing(.manualDirtyLogProtect2))))
    func dirtyLogWithManualProtectReportsExactlyThePagesTheGuestWrote() throws {
        try dirtyLogReportsExactlyTheWrittenPages(manualProtect: true)
    }

    @Test func dirtyLoggingCanStartOnARegisteredSlot() throws {
        let machine = try TestMachine()
        #expect(throws: KVMError.self) { _ = try machine.vm.dirtyPages(slot: 0) }
        try machine.vm.setDirtyLogging(slot: 0, enabled: true)
        try machine.loadRealMode("real/dirty_pages.bin")
        _ = try machine.runUntilOut(0x80)
        #expect(try machine.vm.dirtyPages(slot: 0).dirtyPages == [3, 5])
    }
}
