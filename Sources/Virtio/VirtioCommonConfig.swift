// VirtioCommonConfig.swift — the common configuration structure
// (struct virtio_pci_common_cfg, virtio 1.2 §4.1.4.3) of VirtioPCIDevice:
// feature selection and negotiation, device_status with its state machine
// (reset on 0, FEATURES_OK refused for features not offered or without
// VERSION_1, activation at DRIVER_OK), and the per-queue registers behind
// queue_select, each queue checked when the driver enables it.
//
// Reads of any width at any offset come from the register image; a write
// reaches a register only at its offset with its width (64-bit addresses
// also as two dwords, as Linux writes them); other writes are ignored.

extension VirtioPCIDevice {
    enum Common {
        static let deviceFeatureSelect = 0x00
        static let deviceFeature = 0x04
        static let driverFeatureSelect = 0x08
        static let driverFeature = 0x0C
        static let msixConfig = 0x10
        static let numQueues = 0x12
        static let deviceStatus = 0x14
        static let configGeneration = 0x15
        static let queueSelect = 0x16
        static let queueSize = 0x18
        static let queueMSIXVector = 0x1A
        static let queueEnable = 0x1C
        static let queueNotifyOff = 0x1E
        static let queueDesc = 0x20
        static let queueDriver = 0x28
        static let queueDevice = 0x30
        /// queue_notify_data and queue_reset (zero: their features are not offered).
        static let end = 0x3C
    }

    private var selectedQueue: Int? {
        Int(queueSelect) < queues.count ? Int(queueSelect) : nil
    }

    /// The register image as the driver reads it now.
    private var commonImage: [UInt8] {
        var image = Array(repeating: UInt8(0), count: Common.end)
        func put(_ offset: Int, _ value: UInt64, _ width: Int) {
            for index in 0..<width { image[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        put(Common.deviceFeatureSelect, UInt64(deviceFeatureSelect), 4)
        let features = deviceFeatureSelect < 2 ? offeredFeatures >> (32 * UInt64(deviceFeatureSelect)) : 0
        put(Common.deviceFeature, features & 0xFFFF_FFFF, 4)
        put(Common.driverFeatureSelect, UInt64(driverFeatureSelect), 4)
        let driver = driverFeatureSelect < 2 ? driverFeatures >> (32 * UInt64(driverFeatureSelect)) : 0
        put(Common.driverFeature, driver & 0xFFFF_FFFF, 4)
        put(Common.msixConfig, UInt64(msixConfigVector), 2)
        put(Common.numQueues, UInt64(queues.count), 2)
        put(Common.deviceStatus, UInt64(status), 1)
        put(Common.configGeneration, UInt64(configGeneration), 1)
        put(Common.queueSelect, UInt64(queueSelect), 2)
        if let index = selectedQueue {
            let queue = queues[index]
            put(Common.queueSize, UInt64(queue.size), 2)
            put(Common.queueMSIXVector, UInt64(queue.msixVector), 2)
            put(Common.queueEnable, queue.ready ? 1 : 0, 2)
            put(Common.queueNotifyOff, UInt64(index), 2)
            put(Common.queueDesc, queue.descriptorTable, 8)
            put(Common.queueDriver, queue.availableRing, 8)
            put(Common.queueDevice, queue.usedRing, 8)
        }
        return image
    }

    func readCommon(offset: Int, size: Int) -> UInt64 {
        let image = commonImage
        var value: UInt64 = 0
        for index in 0..<Self.width(size) where offset + index < image.count {
            value |= UInt64(image[offset + index]) << (8 * index)
        }
        return value
    }

    func writeCommon(offset: Int, size: Int, value: UInt64) {
        switch (offset, size) {
        case (Common.deviceFeatureSelect, 4): deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
        case (Common.driverFeatureSelect, 4): driverFeatureSelect = UInt32(truncatingIfNeeded: value)
        case (Common.driverFeature, 4): writeDriverFeatures(UInt32(truncatingIfNeeded: value))
        case (Common.msixConfig, 2): msixConfigVector = checkedVector(UInt16(truncatingIfNeeded: value))
        case (Common.deviceStatus, 1): writeStatus(UInt8(truncatingIfNeeded: value))
        case (Common.queueSelect, 2): queueSelect = UInt16(truncatingIfNeeded: value)
        case (Common.queueSize, 2): updateQueue { $0.size = UInt16(truncatingIfNeeded: value) }
        case (Common.queueMSIXVector, 2):
            // The vector may change while the queue runs (irq balancing).
            if let index = selectedQueue { queues[index].msixVector = checkedVector(UInt16(truncatingIfNeeded: value)) }
        case (Common.queueEnable, 2): if value & 0xFFFF == 1 { enableSelectedQueue() }
        case (Common.queueDesc, _), (Common.queueDesc + 4, 4): writeAddress(\.descriptorTable, offset - Common.queueDesc, size, value)
        case (Common.queueDriver, _), (Common.queueDriver + 4, 4): writeAddress(\.availableRing, offset - Common.queueDriver, size, value)
        case (Common.queueDevice, _), (Common.queueDevice + 4, 4): writeAddress(\.usedRing, offset - Common.queueDevice, size, value)
        default: break
        }
    }

    /// A vector the MSI-X table has, else VIRTIO_MSI_NO_VECTOR (which the
    /// driver reads back to learn the mapping failed).
    private func checkedVector(_ vector: UInt16) -> UInt16 {
        Int(vector) < msix.vectorCount ? vector : virtioNoVector
    }

    /// Queue registers change only while the selected queue is disabled.
    private func updateQueue(_ change: (inout SplitQueue) -> Void) {
        guard let index = selectedQueue, !queues[index].ready else { return }
        change(&queues[index])
    }

    /// A 4-byte half (`relative` 0 or 4) or the whole 8-byte address.
    private func writeAddress(_ field: WritableKeyPath<SplitQueue, UInt64>, _ relative: Int, _ size: Int, _ value: UInt64) {
        switch (relative, size) {
        case (0, 8): updateQueue { $0[keyPath: field] = value }
        case (0, 4): updateQueue { $0[keyPath: field] = $0[keyPath: field] & ~0xFFFF_FFFF | value & 0xFFFF_FFFF }
        case (4, 4): updateQueue { $0[keyPath: field] = $0[keyPath: field] & 0xFFFF_FFFF | value << 32 }
        default: break
        }
    }

    private func writeDriverFeatures(_ value: UInt32) {
        guard status & VirtioStatus.featuresOK == 0, driverFeatureSelect < 2 else { return }
        let shift = UInt64(driverFeatureSelect) * 32
        driverFeatures = driverFeatures & ~(0xFFFF_FFFF << shift) | UInt64(value) << shift
    }

    /// Enabling checks the size and rings against guest RAM; a queue the
    /// device cannot use breaks the device rather than being used.
    private func enableSelectedQueue() {
        guard let index = selectedQueue, !queues[index].ready else { return }
        do {
            try queues[index].validate(memory: memory)
            queues[index].ready = true
        } catch {
            markBroken(error)
        }
    }

    /// device_status (§2.1, §3.1.1): 0 resets; otherwise the driver only adds
    /// bits. FEATURES_OK stays clear when the features are unacceptable (the
    /// driver reads it back); DRIVER_OK without FEATURES_OK breaks the device.
    private func writeStatus(_ value: UInt8) {
        guard value != 0 else {
            reset()
            return
        }
        let old = status
        // The driver cannot clear bits (short of a reset) nor set NEEDS_RESET.
        var new = (value | old) & ~VirtioStatus.deviceNeedsReset | old & VirtioStatus.deviceNeedsReset
        if new & VirtioStatus.featuresOK != 0, old & VirtioStatus.featuresOK == 0 {
            if featuresAcceptable(driverFeatures) {
                for index in queues.indices {
                    queues[index].eventIndex = driverFeatures & VirtioFeature.eventIndex != 0
                    queues[index].indirectDescriptors = driverFeatures & VirtioFeature.indirectDescriptors != 0
                }
            } else {
                new &= ~VirtioStatus.featuresOK
            }
        }
        status = new
        if new & VirtioStatus.driverOK != 0, old & VirtioStatus.driverOK == 0 {
            if new & VirtioStatus.featuresOK == 0 {
                markBroken(.malformedRequest("DRIVER_OK without FEATURES_OK"))
            } else if new & VirtioStatus.deviceNeedsReset == 0 {
                device.activate(features: driverFeatures)
            }
        }
    }

    /// Only offered features, and VERSION_1 (a modern device has no legacy
    /// interface to fall back to).
    func featuresAcceptable(_ features: UInt64) -> Bool {
        features & ~offeredFeatures == 0 && features & VirtioFeature.version1 != 0
    }

    /// Device reset (§2.4): every transport register back to its initial
    /// value, the queues forgotten, interrupts lowered. The MSI-X table and
    /// the PCI configuration are the function's, not the device's: they stay.
    public func reset() {
        device.reset()
        deviceFeatureSelect = 0
        driverFeatureSelect = 0
        driverFeatures = 0
        status = 0
        msixConfigVector = virtioNoVector
        queueSelect = 0
        isr = 0
        brokenReason = nil
        for index in queues.indices { queues[index].reset() }
        updateINTx()
    }
}
