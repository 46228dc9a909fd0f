// VirtioDevice.swift — what a virtio device type implements (block, net,
// console, …) for the transport: its type and features, its configuration
// bytes, its queues, activation with the negotiated features, processing a
// queue, and reset. The transport owns the queues and interrupts; a device
// pops chains, serves them and pushes used elements.

public protocol VirtioDevice: AnyObject {
    var deviceType: VirtioDeviceType { get }
    /// The PCI class code (0xBBSSPP) the function reports.
    var pciClassCode: UInt32 { get }
    /// Device-specific feature bits offered (the transport adds VERSION_1,
    /// INDIRECT_DESC and EVENT_IDX).
    var deviceFeatures: UInt64 { get }
    /// The maximum size of each queue (powers of two up to 32768).
    var queueMaxSizes: [UInt16] { get }
    /// The device-specific configuration structure as the driver reads it now.
    var configBytes: [UInt8] { get }
    /// A driver write to the configuration structure (most devices ignore it).
    func writeConfig(offset: Int, bytes: [UInt8])
    /// DRIVER_OK was set: the driver accepted `features` and set up its queues.
    func activate(features: UInt64)
    /// Serves what the driver made available on queue `index`: pop chains
    /// until `popAvailable` returns nil, push a used element for each. A
    /// malformed chain is thrown; the transport marks the device broken.
    func processQueue(_ index: Int, queue: inout SplitQueue, memory: any GuestMemoryAccess) throws(VirtqueueError)
    /// The driver reset the device (status 0): forget the activation.
    func reset()
}

extension VirtioDevice {
    public func writeConfig(offset: Int, bytes: [UInt8]) {}
}
