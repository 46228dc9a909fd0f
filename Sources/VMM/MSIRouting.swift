// VMM: MSI-X messages to the guest through KVM irqfds — each distinct
// message (address, data) a device sends gets a GSI routed to it
// (KVM_SET_GSI_ROUTING, with the irqchip's default routes kept) and an
// eventfd bound to that GSI (KVM_IRQFD); delivering is then one eventfd
// write, from whichever thread serves the device. Messages past the table's
// bound, or when KVM refuses a route, go through KVM_SIGNAL_MSI instead.
import KVM
import PCI
import Synchronization

final class MSIRouting: Sendable {
    /// GSIs from here on are MSI routes (0–23 are the IOAPIC's pins).
    static let firstGSI: UInt32 = 24
    /// At most this many distinct messages get a route (a guest rewriting
    /// its MSI-X table forever cannot grow the table without bound).
    static let maximumRoutes = 512

    private struct Route {
        let gsi: UInt32
        let event: EventFD
    }

    private struct Table {
        var routes: [MSIMessage: Route] = [:]
        /// Once KVM refused routing, every message goes through KVM_SIGNAL_MSI.
        var routingRefused = false
    }

    private let vm: VirtualMachine
    private let table = Mutex(Table())
    /// Messages delivered through an irqfd and through KVM_SIGNAL_MSI.
    let routedDeliveries = Atomic<UInt64>(0)
    let signalledDeliveries = Atomic<UInt64>(0)

    init(vm: VirtualMachine) { self.vm = vm }

    func deliver(_ message: MSIMessage) {
        let event: EventFD? = table.withLock { table in
            if let route = table.routes[message] { return route.event }
            guard !table.routingRefused, table.routes.count < Self.maximumRoutes else { return nil }
            let gsi = Self.firstGSI + UInt32(table.routes.count)
            do throws(KVMError) {
                let event = try EventFD()
                let routes = table.routes.map { GSIRoute.msi(gsi: $0.value.gsi, address: $0.key.address, data: $0.key.data) }
                try vm.setGSIRouting(GSIRoute.irqchipDefaults + routes + [.msi(gsi: gsi, address: message.address, data: message.data)])
                try vm.addIRQFD(event, gsi: gsi)
                table.routes[message] = Route(gsi: gsi, event: event)
                return event
            } catch {
                table.routingRefused = true
                return nil
            }
        }
        if let event, (try? event.signal()) != nil {
            routedDeliveries.add(1, ordering: .relaxed)
            return
        }
        signalledDeliveries.add(1, ordering: .relaxed)
        // A message KVM refuses (a guest that programmed garbage) is dropped, as hardware drops it.
        _ = try? vm.signalMSI(address: message.address, data: message.data)
    }
}
