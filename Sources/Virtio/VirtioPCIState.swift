// VirtioPCIState.swift — what a snapshot keeps of a virtio-pci transport:
// the transport registers, every queue (addresses, indices, vectors) and the
// MSI-X table, validated before anything changes. The PCI configuration
// space is saved with the bus (PCIBus.State): restore the bus first, since
// MSI-X reads its message control there. The device behind the transport
// saves its own state.
import PCI

extension VirtioPCIDevice {
    public struct State: Codable, Sendable, Equatable {
        public var deviceFeatureSelect: UInt32
        public var driverFeatureSelect: UInt32
        public var driverFeatures: UInt64
        public var status: UInt8
        public var configGeneration: UInt8
        public var msixConfigVector: UInt16
        public var queueSelect: UInt16
        public var isr: UInt8
        public var queues: [SplitQueue.State]
        public var msix: MSIXCapability.State
    }

    public func exportState() -> State {
        State(deviceFeatureSelect: deviceFeatureSelect, driverFeatureSelect: driverFeatureSelect, driverFeatures: driverFeatures,
              status: status, configGeneration: configGeneration, msixConfigVector: msixConfigVector, queueSelect: queueSelect,
              isr: isr, queues: queues.map(\.state), msix: msix.exportState())
    }

    /// Restores the transport: refuses a state this device could not have
    /// reached (features it does not offer, FEATURES_OK without VERSION_1,
    /// another queue count, a ready queue whose rings are not in RAM, vectors
    /// past the table). All or nothing; a running driver is activated again.
    public func importState(_ state: State) throws(PCIStateError) {
        func refuse(_ field: String, _ problem: String) -> PCIStateError { PCIStateError(device: name, field: field, problem) }
        try PCIStateError.checkBits(state.status, allowed: VirtioStatus.all, device: name, field: "status")
        try PCIStateError.checkBits(state.isr, allowed: 3, device: name, field: "isr")
        try PCIStateError.checkBits(state.driverFeatures, allowed: offeredFeatures, device: name, field: "driverFeatures")
        if state.status & VirtioStatus.featuresOK != 0, !featuresAcceptable(state.driverFeatures) {
            throw refuse("driverFeatures", "FEATURES_OK without VIRTIO_F_VERSION_1")
        }
        guard state.queues.count == queues.count else {
            throw refuse("queues", "\(state.queues.count) queues, this device has \(queues.count)")
        }
        let vectors = [state.msixConfigVector] + state.queues.map(\.msixVector)
        if let bad = vectors.first(where: { $0 != virtioNoVector && Int($0) >= msix.vectorCount }) {
            throw refuse("msix vector", "\(bad) is past the table of \(msix.vectorCount)")
        }
        let featuresOK = state.status & VirtioStatus.featuresOK != 0
        var restored: [SplitQueue] = []
        for (index, saved) in state.queues.enumerated() {
            var queue = SplitQueue(maxSize: queues[index].maxSize)
            queue.eventIndex = featuresOK && state.driverFeatures & VirtioFeature.eventIndex != 0
            queue.indirectDescriptors = featuresOK && state.driverFeatures & VirtioFeature.indirectDescriptors != 0
            do {
                restored.append(try queue.restored(saved, memory: memory))
            } catch {
                throw refuse("queues[\(index)]", error.description)
            }
        }
        try msix.importState(state.msix, device: name)
        deviceFeatureSelect = state.deviceFeatureSelect
        driverFeatureSelect = state.driverFeatureSelect
        driverFeatures = state.driverFeatures
        status = state.status
        configGeneration = state.configGeneration
        msixConfigVector = state.msixConfigVector
        queueSelect = state.queueSelect
        isr = state.isr
        queues = restored
        brokenReason = nil
        if status & VirtioStatus.driverOK != 0, status & VirtioStatus.deviceNeedsReset == 0 {
            device.activate(features: driverFeatures)
        }
        updateINTx()
    }
}
