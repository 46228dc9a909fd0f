// VMM: the PC platform's PCI side behind one lock — bus 0 with its host
// bridge, reached through ports 0xCF8–0xCFF and the ECAM window, the BARs
// routed to their functions on MMIO exits, and virtio devices served off the
// vCPU threads: a KVM ioeventfd on each queue's notify address wakes the
// device's worker thread, which serves the queue under the lock (with
// ioeventfd=off the write exits and the vCPU thread wakes the worker), and MSI-X
// messages go to irqfds on routed GSIs (MSIRouting; INTx to an IOAPIC pin
// when the driver leaves MSI-X off).
import Devices
import Glibc
import KVM
import PCI
import Synchronization
import Virtio

final class PCIHub: @unchecked Sendable {
    /// Where the PC platform puts PCI: BARs in [0xC0000000, 0xE0000000), the
    /// ECAM for bus 0 at 0xE0000000 (1 MiB), both inside the e820 hole
    /// between RAM's 3 GiB limit and the IOAPIC.
    enum Layout {
        static let mmio32: ClosedRange<UInt64> = 0xC000_0000...0xDFFF_FFFF
        static let ecamBase: UInt64 = 0xE000_0000
        static let ecamBuses: ClosedRange<UInt8> = 0...0
        static var ecamSize: UInt64 { UInt64(ecamBuses.count) << 20 }
        /// INTx of slot N goes to IOAPIC pin 10 + N % 2 (PCI interrupt lines
        /// QEMU's pc machine also uses); level-triggered, shared.
        static func intxPin(slot: Int) -> UInt32 { 10 + UInt32(slot % 2) }
    }

    /// A virtio function's queue notifications as KVM sees them.
    private struct Notifier {
        let name: String
        let queueEvents: [EventFD]
        /// ioeventfd=off: the notify writes exit to user space.
        let useIOEventFD: Bool
        /// BAR 0's base where the notify addresses are now.
        var base: UInt64?
        /// Queues whose notify writes exit to user space (all with
        /// ioeventfd=off; those KVM refused an ioeventfd for).
        var exiting: Set<Int> = []
    }

    // `bus`, `virtio` and `wiring` are touched only with `lock` held,
    // `notifiers` only with `notifierLock` held (taken inside `lock` when the
    // bus reports a BAR move): hence @unchecked.
    private let lock = Mutex(())
    private let bus: PCIBus
    private var virtio: [VirtioPCIDevice] = []
    /// Objects the devices hold weakly (MSI-X delivery, INTx pins, BAR listener).
    private var wiring: [AnyObject] = []
    private let notifierLock = Mutex(())
    private var notifiers: [Int: Notifier] = [:]
    private let vm: VirtualMachine
    private let events: EventLog
    private let stopping = Atomic<Bool>(false)
    /// While set (a snapshot is being taken) the workers serve nothing.
    private let quiesced = Atomic<Bool>(false)
    /// MSI-X messages as irqfds on routed GSIs.
    let msiRouting: MSIRouting
    /// The virtio console taking standard input, and its receive queue's eventfd.
    private var console: (device: VirtioConsoleDevice, receiveEvent: EventFD)?

    init(vm: VirtualMachine, events: EventLog) {
        self.vm = vm
        self.events = events
        msiRouting = MSIRouting(vm: vm)
        bus = PCIBus(windows: PCIWindows(mmio32: Layout.mmio32), ecamBuses: Layout.ecamBuses)
        let listener = BarListener(hub: self)
        bus.listener = listener
        wiring.append(listener)
    }

    /// Adds a virtio device on the next free slot: BARs placed, MSI-X to KVM,
    /// INTx to its IOAPIC pin, an ioeventfd per queue.
    /// `ioEventFD` false: no ioeventfds, the notify writes exit (QEMU's ioeventfd=off).
    func addVirtio(_ device: any VirtioDevice, memory: any GuestMemoryAccess, name: String, ioEventFD: Bool = true) throws(MachineError) {
        let function: VirtioPCIDevice
        do throws(PCIError) {
            function = try VirtioPCIDevice(device: device, memory: memory, name: name)
        } catch {
            throw .host("\(name): \(error)")
        }
        var queueEvents: [EventFD] = []
        do throws(KVMError) {
            for _ in device.queueMaxSizes { queueEvents.append(try EventFD()) }
        } catch {
            throw .kvm(error)
        }
        let delivery = MSIDelivery(routing: msiRouting)
        function.msix.delivery = delivery
        let placed: (slot: Int, base: UInt64?)? = lock.withLock { _ in
            guard let slot = try? bus.register(function) else { return nil }
            virtio.append(function)
            wiring.append(delivery)
            return (slot, bus.mappings.first { $0.slot == slot && $0.bar == VirtioPCIDevice.Layout.bar }?.base)
        }
        guard let placed else { throw .host("\(name): no room on PCI bus 0 or in its 32-bit window") }
        notifierLock.withLock { _ in
            notifiers[placed.slot] = Notifier(name: name, queueEvents: queueEvents, useIOEventFD: ioEventFD, base: nil)
        }
        moveNotifications(slot: placed.slot, to: placed.base)
        if let consoleDevice = device as? VirtioConsoleDevice {
            lock.withLock { _ in console = (consoleDevice, queueEvents[VirtioConsoleDevice.receiveQueue]) }
        }
        let intx = INTxPin(line: KVMInterruptLine(vm: vm, irq: Layout.intxPin(slot: placed.slot)))
        lock.withLock { _ in
            function.interruptPin = intx
            function.configSpace.setByte(PCIConfigRegister.interruptLine, UInt8(Layout.intxPin(slot: placed.slot)))
            wiring.append(intx)
        }
    }

    /// Whether `port` is one of the configuration ports 0xCF8–0xCFF.
    static func isConfigPort(_ port: UInt16) -> Bool { PCIBus.isConfigPort(port) }

    /// The functions besides the host bridge.
    var deviceCount: Int { lock.withLock { _ in virtio.count } }

    /// Each virtio function now: slot, its device, the driver's status, why it is broken.
    func deviceSummaries() -> [PCIDeviceSummary] {
        lock.withLock { _ in
            virtio.compactMap { function in
                guard let slot = (0..<PCIBus.slotCount).first(where: { bus.device(atSlot: $0) === function }) else { return nil }
                var summary = PCIDeviceSummary(slot: slot, type: function.device.deviceType, driverStatus: function.status,
                                               broken: function.brokenReason.map { "\($0)" })
                if let disk = function.device as? VirtioBlockDevice, let file = disk.backend as? FileBlockBackend {
                    summary.backing = file.path
                    summary.readOnly = file.isReadOnly
                } else if let net = function.device as? VirtioNetDevice, let tap = net.backend as? TapNetBackend {
                    summary.backing = tap.name
                } else if let vsock = function.device as? VirtioVsockDevice, let unix = vsock.backend as? UnixVsockBackend {
                    summary.backing = unix.path
                }
                return summary
            }
        }
    }

    /// Standard input for the virtio console: kept by the device, and its
    /// receive queue's worker woken as a notification would. False when there
    /// is no virtio console.
    func consoleInput(_ bytes: [UInt8]) -> Bool {
        guard let event = lock.withLock({ _ -> EventFD? in
            console?.device.receive(bytes)
            return console?.receiveEvent
        }) else { return false }
        try? event.signal()
        return true
    }

    // MARK: - State (snapshots)

    /// Stops the workers and, with the vCPUs paused, finishes every request
    /// the guest made available: afterwards nothing is in flight and
    /// nothing changes guest memory until `resumeWorkers`.
    func quiesce() {
        quiesced.store(true, ordering: .relaxed)
        lock.withLock { _ in
            for function in virtio {
                for queue in 0..<function.queues.count {
                    var rounds = 0
                    while function.notify(queue: queue), rounds < 1024 { rounds += 1 }
                }
            }
        }
    }

    func resumeWorkers() { quiesced.store(false, ordering: .relaxed) }

    /// The disks' sizes in bytes, in `--disk` order.
    var diskSizes: [UInt64] {
        lock.withLock { _ in
            virtio.compactMap { (($0.device as? VirtioBlockDevice)?.backend as? FileBlockBackend)?.sectorCount }.map { $0 * 512 }
        }
    }

    /// The bus, every transport and the devices' own state.
    func exportState() -> PCIState {
        lock.withLock { _ in
            PCIState(bus: bus.exportState(), functions: virtio.map { function in
                PCIState.Function(name: function.name, transport: function.exportState(),
                                  net: (function.device as? VirtioNetDevice)?.exportState(),
                                  vsock: (function.device as? VirtioVsockDevice)?.exportState())
            })
        }
    }

    /// Puts a snapshot's PCI state into this machine's (same devices, same
    /// order): the bus first (BARs, MSI-X enables), then each transport and
    /// device. One line naming what does not fit.
    func importState(_ state: PCIState) throws(MachineError) {
        let failure: String? = lock.withLock { _ in
            guard state.functions.map(\.name) == virtio.map(\.name) else {
                return "the snapshot's PCI devices (\(state.functions.map(\.name).joined(separator: ", "))) are not this machine's (\(virtio.map(\.name).joined(separator: ", ")))"
            }
            do throws(PCIStateError) {
                try bus.importState(state.bus)
                for (function, saved) in zip(virtio, state.functions) {
                    try function.importState(saved.transport)
                    if let net = function.device as? VirtioNetDevice, let savedNet = saved.net { try net.importState(savedNet) }
                    if let vsock = function.device as? VirtioVsockDevice, let savedVsock = saved.vsock { try vsock.importState(savedVsock) }
                }
                return nil
            } catch {
                return "\(error)"
            }
        }
        if let failure { throw .snapshot("PCI state: \(failure)") }
    }

    // MARK: - Guest accesses (vCPU threads)

    func readConfigPort(_ port: UInt16, size: Int) -> UInt32 {
        lock.withLock { _ in bus.readConfigPort(port, size: size) }
    }

    func writeConfigPort(_ port: UInt16, size: Int, value: UInt32) {
        lock.withLock { _ in bus.writeConfigPort(port, size: size, value: value) }
    }

    /// Serves an MMIO access when it falls in the ECAM window or a BAR:
    /// the value read (writes: 0); nil when no PCI function decodes it.
    func mmio(address: UInt64, size: Int, write value: UInt64?) -> UInt64? {
        if value != nil, let event = exitingNotification(at: address) {
            try? event.signal()
            return 0
        }
        return lock.withLock { _ in
            if address >= Layout.ecamBase, address - Layout.ecamBase < Layout.ecamSize {
                let offset = address - Layout.ecamBase
                if let value {
                    bus.writeECAM(offset: offset, size: size, value: UInt32(truncatingIfNeeded: value))
                    return 0
                }
                return UInt64(bus.readECAM(offset: offset, size: size))
            }
            if let value { return bus.writeMemory(address: address, size: size, value: value) ? 0 : nil }
            return bus.readMemory(address: address, size: size)
        }
    }

    // MARK: - ioeventfds follow BAR 0

    /// The worker's eventfd when `address` is the notify address of a queue
    /// whose write exits (no ioeventfd there): the vCPU thread wakes the
    /// worker as KVM would have, and goes back to the guest.
    private func exitingNotification(at address: UInt64) -> EventFD? {
        notifierLock.withLock { _ in
            for notifier in notifiers.values where !notifier.exiting.isEmpty {
                guard let base = notifier.base, address >= base else { continue }
                for queue in notifier.exiting where base + VirtioPCIDevice.notifyOffset(queue: queue) == address {
                    return notifier.queueEvents[queue]
                }
            }
            return nil
        }
    }

    /// The bus moved BARs (the guest reprogrammed one, or switched decoding):
    /// BAR 0 of a virtio function carries its notify addresses.
    fileprivate func barMappingsChanged(removed: [PCIBarMapping], added: [PCIBarMapping]) {
        let bar = VirtioPCIDevice.Layout.bar
        for mapping in removed where mapping.bar == bar && mapping.space == .memory {
            if !added.contains(where: { $0.slot == mapping.slot && $0.bar == bar }) { moveNotifications(slot: mapping.slot, to: nil) }
        }
        for mapping in added where mapping.bar == bar && mapping.space == .memory {
            moveNotifications(slot: mapping.slot, to: mapping.base)
        }
    }

    /// Registers the slot's queue ioeventfds at `base` + each queue's notify
    /// offset (any write length), after removing them from where they were.
    private func moveNotifications(slot: Int, to base: UInt64?) {
        notifierLock.withLock { _ in
            guard var notifier = notifiers[slot], notifier.base != base else { return }
            var exiting: Set<Int> = []
            for (queue, event) in notifier.queueEvents.enumerated() {
                let offset = VirtioPCIDevice.notifyOffset(queue: queue)
                guard notifier.useIOEventFD else {
                    exiting.insert(queue)
                    continue
                }
                if let old = notifier.base, !notifier.exiting.contains(queue) {
                    try? vm.removeIOEventFD(event, space: .mmio, address: old + offset, length: 0)
                }
                if let base {
                    do throws(KVMError) {
                        try vm.addIOEventFD(event, space: .mmio, address: base + offset, length: 0)
                    } catch {
                        // The write then exits and the vCPU thread wakes the worker.
                        exiting.insert(queue)
                        events.record(.deviceNote(device: notifier.name, message: "no ioeventfd for queue \(queue): \(error)"))
                    }
                }
            }
            notifier.exiting = base == nil ? [] : exiting
            notifier.base = base
            notifiers[slot] = notifier
        }
    }

    // MARK: - Worker threads

    /// Starts one thread per virtio device that waits on its queues'
    /// ioeventfds (and its host side, for a network device) and serves them;
    /// they end after `stop()`.
    func startWorkers() throws(MachineError) {
        let devices = notifierLock.withLock { _ in notifiers.sorted { $0.key < $1.key }.map(\.value) }
        let count = lock.withLock { _ in virtio.count }
        for (index, notifier) in devices.enumerated() where index < count {
            let queueEvents = notifier.queueEvents
            do {
                try HostThread.start(name: "virtio-\(index)") { [self] in serve(device: index, queueEvents: queueEvents) }
            } catch {
                throw .host("\(notifier.name): no worker thread: \(error)")
            }
        }
    }

    /// Ends the workers and removes what the devices left on the host (the
    /// vsock socket's path): the run is over, whether or not the process
    /// lives on to free the devices.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        lock.withLock { _ in
            for function in virtio {
                ((function.device as? VirtioVsockDevice)?.backend as? UnixVsockBackend)?.removeSocketPath()
            }
        }
    }

    /// The worker: poll the queue eventfds (100 ms, to see `stop`), serve
    /// each signalled queue, and again while a queue has chains left over
    /// from its batch limit, round-robin so no queue starves the others.
    /// A device with a host side (a TAP, vsock's Unix sockets) also waits on
    /// those descriptors; one that becomes readable serves the receive
    /// queue. When that takes nothing in (no receive buffers, no credit),
    /// the host side is left out until the driver notifies a queue again, so
    /// waiting input does not spin the thread; it is looked at again at
    /// least every 100 ms (a host socket that can take more data again).
    private func serve(device index: Int, queueEvents: [EventFD]) {
        let receiveQueue = 0
        var hostParked = false
        var pending = Set<Int>()
        while !stopping.load(ordering: .relaxed) {
            let host = lock.withLock { _ in Self.hostDescriptors(virtio[index].device) }
            var descriptors = queueEvents.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            if !hostParked { descriptors += host.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            let timeout: Int32 = pending.isEmpty ? 100 : 0
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
            if ready < 0 && errno != EINTR { return }
            var hostReady = ready == 0 && !host.isEmpty
            for (position, descriptor) in descriptors.enumerated() where descriptor.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                if position < queueEvents.count {
                    _ = try? queueEvents[position].take()
                    pending.insert(position)
                    hostParked = false
                } else {
                    hostReady = true
                }
            }
            // A transmit can leave packets only the receive queue carries.
            if !host.isEmpty, !pending.isEmpty { pending.insert(receiveQueue) }
            if hostReady, !quiesced.load(ordering: .relaxed) {
                let taken = lock.withLock { _ -> Bool in
                    let before = Self.receiveProgress(virtio[index].device)
                    if virtio[index].notify(queue: receiveQueue) { pending.insert(receiveQueue) }
                    return Self.receiveProgress(virtio[index].device) != before
                }
                hostParked = !taken
            }
            for queue in pending.sorted() {
                let more = lock.withLock { _ in quiesced.load(ordering: .relaxed) || virtio[index].notify(queue: queue) }
                if !more { pending.remove(queue) }
            }
            // Held while quiesced: what was signalled waits in `pending`.
            if quiesced.load(ordering: .relaxed) { HostThread.sleep(seconds: 0.005) }
        }
    }

    /// The host-side descriptors a device's thread waits on.
    private static func hostDescriptors(_ device: any VirtioDevice) -> [CInt] {
        hostEndpoint(device)?.hostDescriptors ?? []
    }

    /// A device's host side that one process holds at a time (a TAP, a vsock listener).
    private static func hostEndpoint(_ device: any VirtioDevice) -> (any HostEndpoint)? {
        if let net = device as? VirtioNetDevice { return net.backend as? any HostEndpoint }
        if let vsock = device as? VirtioVsockDevice { return vsock.backend as? any HostEndpoint }
        return nil
    }

    /// Lets a migration's receiver on this host open the TAPs and the vsock
    /// path: closes them here (the devices are quiesced; nothing more goes
    /// to or comes from the host side).
    func releaseHostEndpoints() {
        lock.withLock { _ in
            for function in virtio { Self.hostEndpoint(function.device)?.release() }
        }
    }

    /// Takes the host sides back after a migration that failed; each one that
    /// cannot be opened again is a line for the user (the guest runs without
    /// it). A receiver that gave up may still be closing them: each is tried
    /// for up to a second.
    func reacquireHostEndpoints() -> [String] {
        lock.withLock { _ in
            virtio.compactMap { function -> String? in
                guard let endpoint = Self.hostEndpoint(function.device) else { return nil }
                var attempt = 0
                while true {
                    do throws(MachineError) {
                        try endpoint.reacquire()
                        return nil
                    } catch {
                        attempt += 1
                        if attempt == 20 { return "\(function.name): \(error)" }
                        HostThread.sleep(seconds: 0.05)
                    }
                }
            }
        }
    }

    /// What a device took from its host side so far (frames, packets, drops).
    private static func receiveProgress(_ device: any VirtioDevice) -> UInt64 {
        if let net = device as? VirtioNetDevice {
            return net.counters.receivedFrames &+ net.counters.receiveDrops &+ (net.hasPendingFrame ? 1 : 0)
        }
        if let vsock = device as? VirtioVsockDevice {
            return vsock.counters.packetsToGuest &+ vsock.counters.dropped &+ UInt64(vsock.connectionCount)
                &+ UInt64(vsock.bufferedBytes)
        }
        return 0
    }
}

/// MSI-X messages of one function, delivered through the VM's MSI routes.
private final class MSIDelivery: MSIXDelivery {
    let routing: MSIRouting
    init(routing: MSIRouting) { self.routing = routing }
    func deliver(_ message: MSIMessage) { routing.deliver(message) }
}

/// A function's INTx pin on an IOAPIC pin through KVM_IRQ_LINE.
private final class INTxPin: PCIInterruptPin {
    let line: KVMInterruptLine
    init(line: KVMInterruptLine) { self.line = line }
    func setLevel(_ high: Bool) { line.setLevel(high) }
}

private final class BarListener: PCIBarListener {
    weak var hub: PCIHub?
    init(hub: PCIHub) { self.hub = hub }
    func barMappingsChanged(removed: [PCIBarMapping], added: [PCIBarMapping]) {
        hub?.barMappingsChanged(removed: removed, added: added)
    }
}

/// What `GET /vm` says about one PCI function.
public struct PCIDeviceSummary: Sendable, Equatable {
    public var slot: Int
    public var type: VirtioDeviceType
    public var driverStatus: UInt8
    public var broken: String?
    public var backing: String?
    public var readOnly: Bool?

    /// "00:DD.0".
    public var address: String {
        let device = String(slot, radix: 16)
        return "00:" + (device.count < 2 ? "0" : "") + device + ".0"
    }

    /// "virtio-blk", "virtio-rng", "virtio-console", …
    public var typeName: String {
        switch type {
        case .network: "virtio-net"
        case .block: "virtio-blk"
        case .console: "virtio-console"
        case .entropy: "virtio-rng"
        case .socket: "virtio-vsock"
        }
    }
}

/// A snapshot's `pci` section.
public struct PCIState: Codable, Sendable, Equatable {
    public struct Function: Codable, Sendable, Equatable {
        public var name: String
        public var transport: VirtioPCIDevice.State
        public var net: VirtioNetDevice.State?
        public var vsock: VirtioVsockDevice.State?
    }

    public var bus: PCIBus.State
    public var functions: [Function]
}
