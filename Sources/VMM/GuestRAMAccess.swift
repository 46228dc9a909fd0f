// VMM: guest RAM as virtio devices reach it (Virtio.GuestMemoryAccess): reads
// and writes through the mapped slots, the whole range checked first, and no
// device write into the read-only BIOS area.
import Virtio

final class GuestRAMAccess: GuestMemoryAccess, @unchecked Sendable {
    // GuestRAM is an immutable description of mapped slots; the bytes behind
    // it are shared with the guest, which is what a device's DMA is.
    private let ram: GuestRAM

    init(ram: GuestRAM) { self.ram = ram }

    func contains(address: UInt64, length: UInt64) -> Bool {
        let (end, overflow) = address.addingReportingOverflow(length)
        guard !overflow else { return false }
        func region(holding position: UInt64) -> Range<UInt64>? {
            ram.regions.lazy.map { $0.start.rawValue..<($0.start.rawValue + $0.size) }.first { $0.contains(position) }
        }
        guard length > 0 else {
            return ram.regions.contains { $0.start.rawValue <= address && address <= $0.start.rawValue + $0.size }
        }
        var position = address
        while position < end {
            guard let range = region(holding: position) else { return false }
            position = range.upperBound
        }
        return true
    }

    func read(at address: UInt64, count: Int) throws(Virtio.GuestMemoryError) -> [UInt8] {
        guard count >= 0, contains(address: address, length: UInt64(count)) else {
            throw .outOfRange(address: address, length: UInt64(max(0, count)))
        }
        do {
            return try ram.read(at: address, count: count)
        } catch {
            throw .outOfRange(address: address, length: UInt64(count))
        }
    }

    func write(_ bytes: [UInt8], at address: UInt64) throws(Virtio.GuestMemoryError) {
        let length = UInt64(bytes.count)
        guard contains(address: address, length: length),
              !ram.readOnlyRanges.contains(where: { $0.overlaps(address..<(address + length)) }) else {
            throw .outOfRange(address: address, length: length)
        }
        do {
            try ram.write(bytes, at: address)
        } catch {
            throw .outOfRange(address: address, length: length)
        }
    }
}
