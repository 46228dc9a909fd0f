// VMM: virtio-net's host side on a TAP device: frames cross with the 12-byte
// virtio_net_hdr_v1 (IFF_VNET_HDR); the offloads offered to the driver are
// the ones the TAP accepted (TUNSETOFFLOAD), and with none the header is
// written as zeros and dropped on the way in. A live migration hands the TAP
// over: released before the receiver opens it, taken again if the migration
// fails (HostEndpoint).
import KVM
import Virtio

final class TapNetBackend: NetBackend, HostEndpoint {
    /// nil while handed over to a migration's receiver (frames are dropped).
    private var tap: TapDevice?
    let name: String
    let macAddress: MACAddress
    let offloads: NetOffloads
    /// What the TAP accepted when first opened: a reopened TAP must take it all.
    private let tapOffloads: TapDevice.Offloads
    /// What the driver enabled for received frames, set again on a reopened TAP.
    private var receiveOffloads: TapDevice.Offloads = []

    /// Each virtio offload and the TUN_F_* bit that carries it.
    private static let tunBits: [(NetOffloads, TapDevice.Offloads)] = [
        (.checksum, .checksum), (.tso4, .tso4), (.tso6, .tso6), (.ecn, .tsoECN), (.ufo, .ufo),
    ]

    init(tap: TapDevice, mac: MACAddress) {
        self.tap = tap
        name = tap.name
        tapOffloads = tap.offloads
        macAddress = mac
        // Segmentation offloads need checksum offload (virtio's feature dependencies).
        let accepted = NetOffloads(Self.tunBits.filter { tap.offloads.contains($0.1) }.map(\.0))
        offloads = accepted.contains(.checksum) ? accepted : []
        // Nothing for the guest that needs an offload until its driver says so.
        tap.setReceiveOffloads([])
    }

    var hostDescriptors: [CInt] { tap.map { [$0.fd] } ?? [] }

    func send(frame: [UInt8], header: [UInt8]) -> Bool {
        guard let tap else { return false }
        let vnetHeader = header.count == VirtioNetDevice.headerSize ? header : [UInt8](repeating: 0, count: VirtioNetDevice.headerSize)
        return tap.write(vnetHeader + frame)
    }

    func receive() -> NetFrame? {
        guard let bytes = tap?.read(maximum: VirtioNetDevice.headerSize + VirtioNetDevice.maximumFrameBytes),
              bytes.count > VirtioNetDevice.headerSize else { return nil }
        let header = Array(bytes.prefix(VirtioNetDevice.headerSize))
        return NetFrame(header: offloads.isEmpty ? [] : header, frame: Array(bytes.dropFirst(VirtioNetDevice.headerSize)))
    }

    func enableReceiveOffloads(_ wanted: NetOffloads) {
        let granted = wanted.intersection(offloads)
        receiveOffloads = TapDevice.Offloads(Self.tunBits.filter { granted.contains($0.0) }.map(\.1))
        tap?.setReceiveOffloads(receiveOffloads)
    }

    func release() { tap = nil }

    func reacquire() throws(MachineError) {
        guard tap == nil else { return }
        let reopened: TapDevice
        do throws(TapDevice.OpenError) {
            reopened = try TapDevice(name: name, offloads: tapOffloads)
        } catch {
            throw .device("--net tap=\(name): cannot open it again: \(error)")
        }
        guard reopened.offloads.isSuperset(of: tapOffloads) else {
            throw .device("--net tap=\(name): opened again, it no longer takes the offloads the guest's driver may use")
        }
        reopened.setReceiveOffloads(receiveOffloads)
        tap = reopened
    }
}
