// VMM: one vCPU's thread: the KVM_RUN loop and the exit dispatch, written as
// one switch so a reader finds every exit's handler in one place.
import KVMABI
import Devices
import Dispatch
import Hypercalls
import KVM
import MSRPolicy
import Synchronization

final class VCPURunner: @unchecked Sendable {
    // `passedThrough`, `places` and `msrGeneration` belong to the vCPU's thread: hence @unchecked.
    let index: Int
    let vcpu: VCPU
    private let devices: DeviceHub
    /// The PCI bus: configuration through ECAM and the BARs (PC platform).
    private let pci: PCIHub?
    let events: EventLog
    let controller: RunController
    let msrService: MSRService
    /// KVM_HC_MAP_GPA_RANGE and friends, when the machine handles hypercalls.
    let hypercalls: HypercallHandler?
    /// MSR_KVM_MIGRATION_CONTROL, when the machine offers migration control.
    let migrationGate: MigrationGate?
    /// Guest-physical ranges mapped read-only: a write exit there is a refused write, not unowned MMIO.
    let readOnlyMemory: [Range<UInt64>]
    /// Called when the guest writes the sync port (tests, embedders).
    let phaseHandler: (@Sendable (UInt32, Int) -> Void)?
    /// KVM copies the registers into the run page on each exit (RIP for free).
    let registerSync: Bool
    /// The run state's owner: a guest's ACPI S3 request goes there.
    let lifecycle: Lifecycle
    /// Counts, profile and MSR table of this vCPU, readable live.
    let accounting: VCPUAccounting
    /// The trace's access that KVM is executing for the guest, until the next exit tells how it went.
    var passedThrough: PassedThroughMSRAccess?
    /// Where this thread's exit places are recorded.
    private var places = PlaceDirectory()
    /// The MSR policy generation this thread last used.
    var msrGeneration = MSRRuntime.GenerationCache()
    private let ended = Atomic<Bool>(false)


    init(index: Int, vcpu: VCPU, devices: DeviceHub, pci: PCIHub?, events: EventLog, controller: RunController,
         msrService: MSRService, registerSync: Bool, phaseHandler: (@Sendable (UInt32, Int) -> Void)?,
         hypercalls: HypercallHandler?, migrationGate: MigrationGate?, readOnlyMemory: [Range<UInt64>],
         accounting: VCPUAccounting, lifecycle: Lifecycle) {
        self.index = index
        self.lifecycle = lifecycle
        self.accounting = accounting
        self.vcpu = vcpu
        self.devices = devices
        self.pci = pci
        self.events = events
        self.controller = controller
        self.msrService = msrService
        self.registerSync = registerSync
        self.phaseHandler = phaseHandler
        self.hypercalls = hypercalls
        self.migrationGate = migrationGate
        self.readOnlyMemory = readOnlyMemory
    }

    var hasEnded: Bool { ended.load(ordering: .acquiring) }

    /// The thread body: runs until the run is decided or this vCPU halts.
    func loop() {
        defer {
            // A passed-through access with no exit after it: KVM served it, outcome unseen.
            if let pending = passedThrough { recordPassedThrough(pending, outcome: "kernel") }
            ended.store(true, ordering: .releasing)
            controller.parking.threadEnded(index)
            controller.threadDidEnd()
        }
        do {
            try vcpu.kicker.bindCurrentThread()
        } catch {
            // A vCPU that cannot be kicked could never be stopped: do not run it.
            controller.finish(.hostError("vCPU \(index): \(error)"))
            return
        }
        defer { vcpu.kicker.unbind() }
        // The time the previous exit's handling ended is the next entry's
        // start: two clock reads per exit, not three.
        var entered = DispatchTime.now().uptimeNanoseconds
        while !controller.isFinished {
            let exit: VCPUExit
            do {
                exit = try vcpu.run()
            } catch {
                controller.finish(.hostError("vCPU \(index): \(error)"))
                return
            }
            let returned = DispatchTime.now().uptimeNanoseconds
            if passedThrough != nil { settlePassedThroughAccess(before: exit) }
            let keepRunning = handle(exit)
            let handled = DispatchTime.now().uptimeNanoseconds
            accounting.recordExit(exit, runNanoseconds: returned &- entered, handlingNanoseconds: handled &- returned,
                                  places: &places)
            entered = handled
            if !keepRunning { return }
        }
    }

    /// Handles one exit; false when this vCPU's loop should end.
    private func handle(_ exit: VCPUExit) -> Bool {
        switch exit {
        case let .io(io):
            return handlePortIO(io)
        case let .mmio(mmio):
            if let pci, let value = pci.mmio(address: mmio.address, size: mmio.length, write: mmio.isWrite ? mmio.data : nil) {
                if !mmio.isWrite { vcpu.completeMMIORead(value: value) }
                return true
            }
            if mmio.isWrite {
                if readOnlyMemory.contains(where: { $0.contains(mmio.address) }) {
                    events.record(.readOnlyMemoryWrite(vcpu: index, address: mmio.address, length: mmio.length, value: mmio.data))
                } else {
                    events.record(.unownedMMIOWrite(vcpu: index, address: mmio.address, length: mmio.length, value: mmio.data))
                }
            } else {
                events.record(.unownedMMIORead(vcpu: index, address: mmio.address, length: mmio.length))
                vcpu.completeMMIORead(value: UInt64.max)
            }
            return true
        case let .readMSR(msr):
            if !handleMigrationControl(msr, written: nil) { handleMSR(msr, written: nil) }
            return true
        case let .writeMSR(msr):
            if !handleMigrationControl(msr, written: msr.data) { handleMSR(msr, written: msr.data) }
            return true
        case let .hypercall(call):
            handleHypercall(call)
            return true
        case .halt:
            // No in-kernel APIC: nothing can wake this vCPU again.
            controller.vcpuHalted()
            return false
        case .shutdown:
            controller.finish(.tripleFault(dump()))
            return false
        case let .internalError(error):
            let data = error.data.map { hex($0) }.joined(separator: " ")
            controller.finish(.guestFailure(description: "KVM internal error: \(error.suberrorName)\(data.isEmpty ? "" : " [\(data)]")", dump()))
            return false
        case let .failEntry(reason):
            controller.finish(.guestFailure(description: "VM entry failed, hardware reason 0x\(String(reason, radix: 16))", dump()))
            return false
        case let .systemEvent(type, data):
            switch type {
            case KVMSystemEvent.reset: controller.finish(.resetRequested(vcpu: index))
            case KVMSystemEvent.shutdown: controller.finish(.allHalted)
            default: controller.finish(.guestFailure(description: "system event \(type) data 0x\(String(data, radix: 16))", dump()))
            }
            return false
        case .interrupted:
            // A kick: the run is decided (the loop condition ends it), the
            // machine parks its vCPUs (pause, snapshot, migration, S3), or a
            // stray signal, after which the guest simply continues.
            if controller.isFinished { return true }
            if controller.parking.isRequested { return parkUntilReleased() }
            vcpu.clearImmediateExit()
            return true
        case .debug, .irqWindowOpen:
            events.record(.unexpectedExit(vcpu: index, description: "\(exit.kind)"))
            return true
        case let .unhandled(reason):
            controller.finish(.guestFailure(description: "unhandled KVM exit reason \(reason)", dump()))
            return false
        }
    }

    private func handlePortIO(_ io: IOExit) -> Bool {
        var anomalies: [DeviceAnomaly] = []
        defer {
            for anomaly in anomalies { events.record(.deviceAnomaly(vcpu: index, anomaly)) }
        }
        for element in 0..<io.count {
            // PCI configuration ports: the PCI lock only, never inside the device lock.
            if let pci, PCIHub.isConfigPort(io.port) {
                if io.direction == .output {
                    pci.writeConfigPort(io.port, size: io.size, value: vcpu.ioValue(io, element: element))
                } else {
                    vcpu.setIOValue(io, element: element, value: pci.readConfigPort(io.port, size: io.size))
                }
                continue
            }
            switch io.direction {
            case .output:
                let value = vcpu.ioValue(io, element: element)
                guard let effect = devices.write(port: io.port, size: io.size, value: value, anomalies: &anomalies) else {
                    events.record(.unownedPortWrite(vcpu: index, port: io.port, size: io.size, value: value))
                    continue
                }
                switch effect {
                case .none:
                    continue
                case let .exitGuest(status):
                    controller.finish(.guestExit(value: value, status: status))
                    return false
                case .resetRequested:
                    controller.finish(.resetRequested(vcpu: index))
                    return false
                case .powerOff:
                    controller.finish(.powerOff)
                    return false
                case .suspendToRAM:
                    // This vCPU executes nothing more: the request kicks it
                    // too, so its next KVM_RUN only completes this OUT and
                    // comes back interrupted, and it parks.
                    lifecycle.guestRequestedSuspend(by: index)
                case let .guestPhase(phase):
                    // Runs on this vCPU's thread, outside the device lock: the
                    // guest continues only when the handler returns.
                    phaseHandler?(phase, index)
                }
            case .input:
                if let value = devices.read(port: io.port, size: io.size, anomalies: &anomalies) {
                    vcpu.setIOValue(io, element: element, value: value)
                } else {
                    events.record(.unownedPortRead(vcpu: index, port: io.port, size: io.size))
                    vcpu.setIOValue(io, element: element, value: UInt32.max)
                }
            }
        }
        return true
    }

    /// Registers of this vCPU, read on its own thread.
    func dump() -> VCPURegisterDump {
        do {
            return VCPURegisterDump(vcpu: index, registers: try vcpu.registers(), special: try vcpu.specialRegisters())
        } catch {
            return VCPURegisterDump(vcpu: index, registers: nil, special: nil, unavailableReason: "\(error)")
        }
    }
}
