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

    /// Each virtio offload and the TUN_F_* bit that carries it.
    private static let tunBits: [(NetOffloads, TapDevice.Offloads)] = [
        (.checksum, .checksum), (.tso4, .tso4), (.tso6, .tso6), (.ecn, .tsoECN), (.ufo, .ufo),
    ]

    init(tap: TapDevice, mac: MACAddress) {
        self.tap = tap
        macAddress = mac
        // Segmentation offloads need checksum offload (virtio's feature dependencies).
        let accepted = NetOffloads(Self.tunBits.filter { tap.offloads.contains($0.1) }.map(\.0))
        offloads = accepted.contains(.checksum) ? accepted : []
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
        let granted = wanted.intersection(offloads)
        tap.setReceiveOffloads(TapDevice.Offloads(Self.tunBits.filter { granted.contains($0.0) }.map(\.1)))
    }
}
