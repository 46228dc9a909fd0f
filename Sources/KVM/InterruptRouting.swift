// KVM: the requests that let devices talk to the guest without a user-space
// exit on the vCPU thread — KVM_IOEVENTFD (a guest write to a port or MMIO
// address signals an eventfd, the vCPU goes on), KVM_IRQFD (signalling an
// eventfd raises a GSI), KVM_SET_GSI_ROUTING (what each GSI is: an in-kernel
// irqchip pin or an MSI message) and KVM_SIGNAL_MSI (one MSI, now).
internal import CKVM
import Glibc

/// Where a guest write that an ioeventfd matches lands.
public enum IOEventAddressSpace: Sendable, Equatable {
    case port
    case mmio
}

/// What one GSI delivers.
public enum GSIRoute: Sendable, Equatable {
    /// A pin of an in-kernel interrupt controller: chip 0 master PIC, 1 slave PIC, 2 IOAPIC.
    case irqchip(gsi: UInt32, chip: UInt32, pin: UInt32)
    /// An MSI message (address, data), as an MSI-X table entry holds it.
    case msi(gsi: UInt32, address: UInt64, data: UInt32)

    public var gsi: UInt32 {
        switch self {
        case let .irqchip(gsi, _, _), let .msi(gsi, _, _): return gsi
        }
    }

    /// The routes KVM_CREATE_IRQCHIP sets up on x86 (kvm_setup_default_irq_routing):
    /// GSI 0–15 to both PICs (8–15 on the slave), GSI 0–23 to the IOAPIC's pins.
    /// A table a VMM sets replaces these, so it must carry them.
    public static let irqchipDefaults: [GSIRoute] = {
        var routes: [GSIRoute] = []
        for gsi in UInt32(0)..<16 {
            routes.append(.irqchip(gsi: gsi, chip: gsi < 8 ? 0 : 1, pin: gsi % 8))
        }
        for gsi in UInt32(0)..<24 {
            routes.append(.irqchip(gsi: gsi, chip: 2, pin: gsi))
        }
        return routes
    }()
}

extension VirtualMachine {
    /// KVM_IOEVENTFD: guest writes of `length` bytes (1, 2, 4 or 8; 0 for
    /// any length on MMIO) to `address` signal `eventFD` instead of exiting;
    /// with `datamatch` only writes of that value do.
    public func addIOEventFD(_ eventFD: EventFD, space: IOEventAddressSpace, address: UInt64, length: UInt32,
                             datamatch: UInt64? = nil) throws(KVMError) {
        try ioEventFD(eventFD, space: space, address: address, length: length, datamatch: datamatch, deassign: false)
    }

    /// Undoes `addIOEventFD` with the same arguments.
    public func removeIOEventFD(_ eventFD: EventFD, space: IOEventAddressSpace, address: UInt64, length: UInt32,
                                datamatch: UInt64? = nil) throws(KVMError) {
        try ioEventFD(eventFD, space: space, address: address, length: length, datamatch: datamatch, deassign: true)
    }

    private func ioEventFD(_ eventFD: EventFD, space: IOEventAddressSpace, address: UInt64, length: UInt32,
                           datamatch: UInt64?, deassign: Bool) throws(KVMError) {
        guard [0, 1, 2, 4, 8].contains(length), !(space == .port && length == 0) else {
            throw .invalidArgument(request: "KVM_IOEVENTFD", reason: "length \(length) (1, 2, 4 or 8; 0 only for MMIO)")
        }
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = length
        request.fd = eventFD.fd
        request.datamatch = datamatch ?? 0
        request.flags = (space == .port ? CKVM_IOEVENTFD_FLAG_PIO : 0)
            | (datamatch != nil ? CKVM_IOEVENTFD_FLAG_DATAMATCH : 0)
            | (deassign ? CKVM_IOEVENTFD_FLAG_DEASSIGN : 0)
        _ = try Syscall.ioctl(fd, CKVM_IOEVENTFD, &request, "KVM_IOEVENTFD")
    }

    /// KVM_IRQFD: signalling `eventFD` raises `gsi` (edge: KVM asserts and
    /// deasserts it), as the routing table says.
    public func addIRQFD(_ eventFD: EventFD, gsi: UInt32) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventFD.fd)
        request.gsi = gsi
        _ = try Syscall.ioctl(fd, CKVM_IRQFD, &request, "KVM_IRQFD")
    }

    /// Undoes `addIRQFD`.
    public func removeIRQFD(_ eventFD: EventFD, gsi: UInt32) throws(KVMError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventFD.fd)
        request.gsi = gsi
        request.flags = CKVM_IRQFD_FLAG_DEASSIGN
        _ = try Syscall.ioctl(fd, CKVM_IRQFD, &request, "KVM_IRQFD")
    }

    /// KVM_SET_GSI_ROUTING: replaces the whole routing table (include
    /// `GSIRoute.irqchipDefaults` to keep the legacy interrupts working).
    public func setGSIRouting(_ routes: [GSIRoute]) throws(KVMError) {
        let request = "KVM_SET_GSI_ROUTING"
        guard routes.count <= 4096 else {
            throw .invalidArgument(request: request, reason: "\(routes.count) routes, at most 4096")
        }
        let byteCount = MemoryLayout<kvm_irq_routing>.size + max(routes.count, 1) * MemoryLayout<kvm_irq_routing_entry>.stride
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        let header = buffer.bindMemory(to: kvm_irq_routing.self, capacity: 1)
        header.pointee.nr = UInt32(routes.count)
        let entries: UnsafeMutablePointer<kvm_irq_routing_entry> = ckvm_irq_routing_entries(header)
        for (i, route) in routes.enumerated() {
            switch route {
            case let .irqchip(gsi, chip, pin): entries[i] = ckvm_route_irqchip(gsi, chip, pin)
            case let .msi(gsi, address, data): entries[i] = ckvm_route_msi(gsi, address, data)
            }
        }
        let result = Syscall.ioctl(fd, CKVM_SET_GSI_ROUTING, buffer: buffer, request)
        guard result >= 0 else { throw .ioctl(request: request, errno: -result) }
    }

    /// KVM_SIGNAL_MSI: delivers one MSI message now. False when the guest
    /// blocked it (KVM answers 0: the interrupt was not delivered).
    @discardableResult
    public func signalMSI(address: UInt64, data: UInt32) throws(KVMError) -> Bool {
        var message = kvm_msi()
        message.address_lo = UInt32(truncatingIfNeeded: address)
        message.address_hi = UInt32(truncatingIfNeeded: address >> 32)
        message.data = data
        return try Syscall.ioctl(fd, CKVM_SIGNAL_MSI, &message, "KVM_SIGNAL_MSI") > 0
    }
}
