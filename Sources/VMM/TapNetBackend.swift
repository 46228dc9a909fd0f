// VMM: virtio-net's host side on a TAP device: frames cross with the 12-byte
// virtio_net_hdr_v1 (IFF_VNET_HDR); the offloads offered to the driver are
// the ones the TAP accepted (TUNSETOFFLOAD), and with none the header is
// written as zeros and dropped on the way in.
import KVM
import Virtio

final class TapNetBackend: NetBackend {
    let tap: TapDevice
    let macAddress: MACAddress
    let offloads: NetOffloads

    init(tap: TapDevice, mac: MACAddress) {
        self.tap = tap
        macAddress = mac
        var offered: NetOffloads = []
        if tap.offloads.contains(.checksum) {
            offered.insert(.checksum)
            if tap.offloads.contains(.tso4) { offered.insert(.tso4) }
            if tap.offloads.contains(.tso6) { offered.insert(.tso6) }
            if tap.offloads.contains(.tsoECN) { offered.insert(.ecn) }
            if tap.offloads.contains(.ufo) { offered.insert(.ufo) }
        }
        offloads = offered
        // Nothing for the guest that needs an offload until its driver says so.
        tap.setReceiveOffloads([])
    }

    func send(frame: [UInt8], header: [UInt8]) -> Bool {
        let vnetHeader = header.count == VirtioNetDevice.headerSize ? header : [UInt8](repeating: 0, count: VirtioNetDevice.headerSize)
        return tap.write(vnetHeader + frame)
    }

    func receive() -> NetFrame? {
        guard let bytes = tap.read(maximum: VirtioNetDevice.headerSize + VirtioNetDevice.maximumFrameBytes),
              bytes.count > VirtioNetDevice.headerSize else { return nil }
        let header = Array(bytes.prefix(VirtioNetDevice.headerSize))
        return NetFrame(header: offloads.isEmpty ? [] : header, frame: Array(bytes.dropFirst(VirtioNetDevice.headerSize)))
    }

    func enableReceiveOffloads(_ wanted: NetOffloads) {
        var bits: TapDevice.Offloads = []
        let granted = wanted.intersection(offloads)
        if granted.contains(.checksum) { bits.insert(.checksum) }
        if granted.contains(.tso4) { bits.insert(.tso4) }
        if granted.contains(.tso6) { bits.insert(.tso6) }
        if granted.contains(.ecn) { bits.insert(.tsoECN) }
        if granted.contains(.ufo) { bits.insert(.ufo) }
        tap.setReceiveOffloads(bits)
    }
}
