// VirtioPCIDevice.swift — the virtio-pci modern transport (virtio 1.2 §4.1)
// around one VirtioDevice: the PCI function (vendor 0x1af4, device 0x1040 +
// type, revision 1), its virtio capabilities, and one memory BAR holding
// every structure:
//
//   BAR 0 (64-bit, 32 KiB)   0x0000 common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
//                            0x1000 ISR status              (VIRTIO_PCI_CAP_ISR_CFG)
//                            0x2000 device configuration    (VIRTIO_PCI_CAP_DEVICE_CFG)
//                            0x3000 notifications, queue q at 0x3000 + 4·q (NOTIFY_CFG, multiplier 4)
//                            0x4000 MSI-X table, 0x5000 MSI-X PBA
//
// plus the VIRTIO_PCI_CAP_PCI_CFG window the specification requires (BAR
// access through configuration space). The common configuration's register
// logic (features, status, queues) is in VirtioCommonConfig.swift; state in
// VirtioPCIState.swift.
import PCI

public final class VirtioPCIDevice: PCIDevice {
    public let name: String
    public let configSpace: PCIConfigSpace
    public let device: any VirtioDevice
    public let msix: MSIXCapability
    let memory: any GuestMemoryAccess
    /// The INTx line used while MSI-X is off.
    public weak var interruptPin: (any PCIInterruptPin)?

    public enum Layout {
        public static let bar = 0
        public static let barSize: UInt64 = 0x8000
        public static let common: UInt64 = 0x0000
        public static let isr: UInt64 = 0x1000
        public static let deviceConfig: UInt64 = 0x2000
        public static let notify: UInt64 = 0x3000
        public static let notifyOffsetMultiplier: UInt64 = 4
        public static let msixTable: UInt64 = 0x4000
        public static let msixPBA: UInt64 = 0x5000
        public static let regionSize: UInt64 = 0x1000
        /// At most this many queues (each notify address inside the region)
        /// and MSI-X vectors (the table inside its 4 KiB).
        public static let maximumQueues = 1024
        public static let maximumVectors = 256
    }

    /// virtio_pci_cap.cfg_type values.
    enum CapabilityType: UInt8 {
        case common = 1, notify = 2, isr = 3, device = 4, pciConfig = 5
    }

    // Transport registers (VirtioCommonConfig.swift reads and writes them).
    var deviceFeatureSelect: UInt32 = 0
    var driverFeatureSelect: UInt32 = 0
    var driverFeatures: UInt64 = 0
    public internal(set) var status: UInt8 = 0
    public internal(set) var configGeneration: UInt8 = 0
    var msixConfigVector: UInt16 = virtioNoVector
    var queueSelect: UInt16 = 0
    public internal(set) var isr: UInt8 = 0
    public internal(set) var queues: [SplitQueue]
    /// Why the device went to DEVICE_NEEDS_RESET, for the VMM's event line.
    public internal(set) var brokenReason: VirtqueueError?
    let pciConfigCapability: Int

    /// The features the transport offers: the device's and its own.
    public var offeredFeatures: UInt64 { device.deviceFeatures | VirtioFeature.transport }
    /// The features in force once FEATURES_OK is accepted, else zero.
    public var negotiatedFeatures: UInt64 { status & VirtioStatus.featuresOK != 0 ? driverFeatures : 0 }

    /// Wraps `device`; `memory` is guest RAM the queues live in.
    public init(device: any VirtioDevice, memory: any GuestMemoryAccess, name: String? = nil) throws(PCIError) {
        self.device = device
        self.memory = memory
        self.name = name ?? "virtio-\(device.deviceType)"
        let queueCount = min(device.queueMaxSizes.count, Layout.maximumQueues)
        queues = device.queueMaxSizes.prefix(queueCount).map { SplitQueue(maxSize: min(max($0, 1), SplitQueue.largestSize)) }
        let config = PCIConfigSpace(identity: PCIIdentity(
            vendorID: 0x1AF4, deviceID: device.deviceType.pciDeviceID, revision: 1, classCode: device.pciClassCode,
            subsystemVendorID: 0x1AF4, subsystemID: 0x1100, interruptPin: 1))
        configSpace = config
        try config.defineBAR(Layout.bar, PCIBarDefinition(kind: .memory64, size: Layout.barSize))
        let vectors = min(queueCount + 1, Layout.maximumVectors)
        msix = try MSIXCapability(config: config, vectorCount: vectors, tableBAR: Layout.bar, tableOffset: UInt32(Layout.msixTable),
                                  pbaBAR: Layout.bar, pbaOffset: UInt32(Layout.msixPBA))
        try Self.addCapability(config, .common, offset: Layout.common, length: Layout.regionSize)
        try Self.addCapability(config, .notify, offset: Layout.notify, length: Layout.regionSize,
                               extra: Self.littleEndian(UInt32(Layout.notifyOffsetMultiplier)))
        try Self.addCapability(config, .isr, offset: Layout.isr, length: Layout.regionSize)
        try Self.addCapability(config, .device, offset: Layout.deviceConfig, length: Layout.regionSize)
        // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and data are the driver's to write.
        var writable = Array(repeating: UInt8(0), count: 18)
        writable[2] = 0xFF
        for index in 6..<18 { writable[index] = 0xFF }
        pciConfigCapability = try Self.addCapability(config, .pciConfig, offset: 0, length: 0, extra: [0, 0, 0, 0], writable: writable)
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// A virtio_pci_cap: cap_len, cfg_type, bar, id, padding, offset, length, then `extra`.
    @discardableResult
    private static func addCapability(_ config: PCIConfigSpace, _ type: CapabilityType, offset: UInt64, length: UInt64,
                                      extra: [UInt8] = [], writable: [UInt8] = []) throws(PCIError) -> Int {
        let body = [UInt8(16 + extra.count), type.rawValue, UInt8(Layout.bar), 0, 0, 0]
            + littleEndian(UInt32(offset)) + littleEndian(UInt32(length)) + extra
        return try config.addCapability(id: 0x09, body: body, writableBody: writable)
    }

    /// The BAR offset of queue `index`'s notification address (the VMM puts
    /// an ioeventfd there).
    public static func notifyOffset(queue index: Int) -> UInt64 {
        Layout.notify + UInt64(index) * Layout.notifyOffsetMultiplier
    }

    // MARK: - Configuration space

    public func readConfig(offset: Int, size: Int) -> UInt32 {
        if overlapsPCIConfigData(offset, size) { refreshPCIConfigData() }
        return configSpace.read(offset: offset, size: size)
    }

    public func writeConfig(offset: Int, size: Int, value: UInt32) {
        configSpace.write(offset: offset, size: size, value: value)
        msix.configurationWritten()
        updateINTx()
        if overlapsPCIConfigData(offset, size) { forwardPCIConfigData() }
    }

    private var pciConfigData: Int { pciConfigCapability + 16 }

    private func overlapsPCIConfigData(_ offset: Int, _ size: Int) -> Bool {
        offset < pciConfigData + 4 && pciConfigData < offset + max(1, min(size, 4))
    }

    /// The window's BAR access: (offset, width) when the driver set it up as
    /// the specification allows (BAR 0, width 1, 2 or 4, aligned), else nil.
    private var pciConfigWindow: (UInt64, Int)? {
        let bar = configSpace.byte(pciConfigCapability + 4)
        let offset = UInt64(configSpace.dword(pciConfigCapability + 8))
        let length = Int(configSpace.dword(pciConfigCapability + 12))
        guard bar == UInt8(Layout.bar), [1, 2, 4].contains(length), offset % UInt64(length) == 0,
              offset + UInt64(length) <= Layout.barSize else { return nil }
        return (offset, length)
    }

    private func refreshPCIConfigData() {
        guard let (offset, length) = pciConfigWindow else { return }
        configSpace.setDword(pciConfigData, UInt32(truncatingIfNeeded: readBAR(Layout.bar, offset: offset, size: length)))
    }

    private func forwardPCIConfigData() {
        guard let (offset, length) = pciConfigWindow else { return }
        writeBAR(Layout.bar, offset: offset, size: length, value: UInt64(configSpace.dword(pciConfigData)))
    }

    // MARK: - BAR 0

    public func readBAR(_ index: Int, offset: UInt64, size: Int) -> UInt64 {
        guard index == Layout.bar else { return allOnes(size: size) }
        switch offset {
        case Layout.common..<Layout.isr:
            return readCommon(offset: Int(offset - Layout.common), size: size)
        case Layout.isr..<Layout.deviceConfig:
            return offset == Layout.isr ? UInt64(readISR()) : 0
        case Layout.deviceConfig..<Layout.notify:
            let bytes = device.configBytes
            let start = Int(offset - Layout.deviceConfig)
            var value: UInt64 = 0
            for index in 0..<Self.width(size) where start + index < bytes.count {
                value |= UInt64(bytes[start + index]) << (8 * index)
            }
            return value
        case Layout.msixTable..<Layout.msixPBA:
            return msix.readTable(offset: offset - Layout.msixTable, size: size)
        case Layout.msixPBA..<(Layout.msixPBA + Layout.regionSize):
            return msix.readPBA(offset: offset - Layout.msixPBA, size: size)
        default:
            return 0
        }
    }

    public func writeBAR(_ index: Int, offset: UInt64, size: Int, value: UInt64) {
        guard index == Layout.bar else { return }
        switch offset {
        case Layout.common..<Layout.isr:
            writeCommon(offset: Int(offset - Layout.common), size: size, value: value)
        case Layout.deviceConfig..<Layout.notify:
            let start = Int(offset - Layout.deviceConfig)
            device.writeConfig(offset: start, bytes: (0..<Self.width(size)).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) })
        case Layout.notify..<Layout.msixTable:
            let relative = offset - Layout.notify
            if relative % Layout.notifyOffsetMultiplier == 0 {
                notify(queue: Int(relative / Layout.notifyOffsetMultiplier))
            }
        case Layout.msixTable..<Layout.msixPBA:
            msix.writeTable(offset: offset - Layout.msixTable, size: size, value: value)
        default:
            break   // ISR and PBA are read-only
        }
    }

    static func width(_ size: Int) -> Int { [1, 2, 4, 8].contains(size) ? size : 8 }

    // MARK: - Notifications and interrupts

    /// The driver notified queue `index` (a notify write, or the VMM's
    /// ioeventfd fired): the device serves it. True when the batch limit
    /// stopped it with chains left (call again, after other work).
    @discardableResult
    public func notify(queue index: Int) -> Bool {
        guard index >= 0, index < queues.count, status & VirtioStatus.driverOK != 0,
              status & VirtioStatus.deviceNeedsReset == 0, queues[index].ready else { return false }
        queues[index].beginBatch()
        do {
            try device.processQueue(index, queue: &queues[index], memory: memory)
            if try queues[index].needsInterrupt(memory: memory) { raise(vector: queues[index].msixVector, isrBit: 1) }
            return try queues[index].hasMoreAvailable(memory: memory)
        } catch {
            markBroken(error)
            return false
        }
    }

    /// The device's configuration changed (capacity, link state): the
    /// generation moves and the driver is told.
    public func deviceConfigurationChanged() {
        configGeneration &+= 1
        if status & VirtioStatus.driverOK != 0 { raise(vector: msixConfigVector, isrBit: 2) }
    }

    /// DEVICE_NEEDS_RESET, once, with a configuration interrupt when the
    /// driver is running (§2.1.2).
    func markBroken(_ error: VirtqueueError) {
        guard status & VirtioStatus.deviceNeedsReset == 0 else { return }
        brokenReason = error
        status |= VirtioStatus.deviceNeedsReset
        if status & VirtioStatus.driverOK != 0 { raise(vector: msixConfigVector, isrBit: 2) }
    }

    /// MSI-X when enabled (no vector: no interrupt), else the ISR bit and INTx.
    private func raise(vector: UInt16, isrBit: UInt8) {
        if msix.isEnabled {
            if vector != virtioNoVector { msix.signal(Int(vector)) }
            return
        }
        isr |= isrBit
        updateINTx()
    }

    /// Reading the ISR returns its bits and clears them (§4.1.4.5).
    private func readISR() -> UInt8 {
        let value = isr
        isr = 0
        updateINTx()
        return value
    }

    private var intxLevel = false

    /// INTx follows the ISR unless MSI-X is on or the command register
    /// disables it; the status register's interrupt bit shows it either way.
    func updateINTx() {
        let pending = isr != 0 && !msix.isEnabled
        configSpace.setInterruptStatus(pending)
        let level = pending && !configSpace.interruptDisabled
        guard level != intxLevel else { return }
        intxLevel = level
        interruptPin?.setLevel(level)
    }
}
