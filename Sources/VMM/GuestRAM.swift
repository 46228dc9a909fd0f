// VMM: guest RAM as KVM memory slots, and writing boot segments across them.
// RAM is one range from 0, or two when it continues above the PCI hole at
// 4 GiB (a slot of its own). The PC platform also splits the range from 0
// around the BIOS area (0xE0000–0xFFFFF), which it maps read-only so that
// guest writes to the ACPI tables there become MMIO exits (an event, the
// write dropped).
import KVM

public struct GuestRAM: Sendable {
    public enum Layout: Sendable {
        /// The range from 0 in one read-write slot.
        case flat
        /// [0, 0xE0000) rw, [0xE0000, 0x100000) read-only, [0x100000, end) rw.
        case pcWithReadOnlyBIOSArea
    }

    public static let biosAreaStart: UInt64 = 0xE_0000
    public static let biosAreaEnd: UInt64 = 0x10_0000

    public let regions: [GuestMemory]
    /// The ranges guest writes cannot change.
    public let readOnlyRanges: [Range<UInt64>]
    /// The pages `write` changed, for diff snapshots and migration.
    let writeLog: RAMWriteLog

    /// What RAM is mapped from. A memory file holds the guest-physical image:
    /// each slot maps it at file offset = its guest address.
    public enum Backing: Sendable {
        /// Anonymous memory.
        case anonymous
        /// A memory file mapped shared (a memfd: snapshots write from it) or
        /// private (a snapshot's memory file: restore maps, never reads it).
        case memoryFile(MemoryFile, shared: Bool)
    }

    /// Maps `ranges` (the first from 0, each page-aligned; see
    /// `MachineConfiguration.ramRanges`). A memory file must end where the last range does.
    init(vm: VirtualMachine, ranges: [Range<UInt64>], layout: Layout, backing: Backing = .anonymous) throws(KVMError) {
        let request = "KVM_SET_USER_MEMORY_REGION"
        guard let first = ranges.first, first.lowerBound == 0, let end = ranges.last?.upperBound else {
            throw .invalidArgument(request: request, reason: "guest RAM must start at guest-physical 0")
        }
        if case let .memoryFile(file, _) = backing, file.size != end {
            throw .invalidArgument(request: request, reason: "the memory file has \(file.size) bytes, the machine's RAM ends at \(end)")
        }
        func slot(_ slot: UInt32, at start: UInt64, size: UInt64, readOnly: Bool = false) throws(KVMError) -> GuestMemory {
            let mapped: GuestMemoryBacking
            switch backing {
            case .anonymous: mapped = .anonymous
            case let .memoryFile(file, shared): mapped = shared ? .shared(file, offset: start) : .privateCopy(file, offset: start)
            }
            return try vm.addMemory(slot: slot, at: GuestPhysicalAddress(start), size: size, readOnly: readOnly, backing: mapped)
        }
        var mapped: [GuestMemory]
        switch layout {
        case .flat:
            mapped = [try slot(0, at: 0, size: first.upperBound)]
            readOnlyRanges = []
        case .pcWithReadOnlyBIOSArea:
            guard first.upperBound > Self.biosAreaEnd else {
                throw .invalidArgument(request: request, reason: "the PC layout needs more than 1 MiB of RAM")
            }
            mapped = [
                try slot(0, at: 0, size: Self.biosAreaStart),
                try slot(1, at: Self.biosAreaStart, size: Self.biosAreaEnd - Self.biosAreaStart, readOnly: true),
                try slot(2, at: Self.biosAreaEnd, size: first.upperBound - Self.biosAreaEnd),
            ]
            readOnlyRanges = [Self.biosAreaStart..<Self.biosAreaEnd]
        }
        // Each further range (RAM above the PCI hole) in a slot of its own, numbered on.
        for range in ranges.dropFirst() {
            mapped.append(try slot(UInt32(mapped.count), at: range.lowerBound, size: UInt64(range.count)))
        }
        regions = mapped
        writeLog = RAMWriteLog(regions: regions)
    }

    /// Writes `bytes` at `address`, split across the slots it spans.
    public func write(_ bytes: [UInt8], at address: UInt64) throws(GuestMemoryError) {
        try forEachPiece(address: address, count: bytes.count) { region, here, offset, length throws(GuestMemoryError) in
            try region.write(Array(bytes[offset..<offset + length]), at: GuestPhysicalAddress(here))
            writeLog.record(slot: region.slot, offset: here - region.start.rawValue, length: length)
        }
    }

    /// Writes a large buffer (a mapped module file) at `address` a chunk at a
    /// time, so at most one chunk is ever copied out of it at once.
    public func write<Bytes: Collection<UInt8>>(contentsOf bytes: Bytes, at address: UInt64) throws(GuestMemoryError) {
        let chunkSize = 1 << 20
        var offset = 0
        var chunkStart = bytes.startIndex
        while chunkStart != bytes.endIndex {
            let chunkEnd = bytes.index(chunkStart, offsetBy: chunkSize, limitedBy: bytes.endIndex) ?? bytes.endIndex
            let chunk = Array(bytes[chunkStart..<chunkEnd])
            try write(chunk, at: address + UInt64(offset))
            offset += chunk.count
            chunkStart = chunkEnd
        }
    }

    /// Reads `count` bytes at `address` across slots.
    public func read(at address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        try forEachPiece(address: address, count: count) { region, here, _, length throws(GuestMemoryError) in
            out += try region.read(at: GuestPhysicalAddress(here), count: length)
        }
        return out
    }

    /// Calls `body` for each slot-contained piece of [address, address+count).
    private func forEachPiece(address: UInt64, count: Int,
                              _ body: (GuestMemory, UInt64, Int, Int) throws(GuestMemoryError) -> Void) throws(GuestMemoryError) {
        var offset = 0
        while offset < count {
            let here = address &+ UInt64(offset)
            guard let region = regions.first(where: { $0.contains(GuestPhysicalAddress(here)) }) else {
                throw GuestMemoryError(address: GuestPhysicalAddress(here), length: count - offset,
                                       regionStart: GuestPhysicalAddress(0), regionSize: 0)
            }
            let length = Int(min(UInt64(count - offset), region.start.rawValue + region.size - here))
            try body(region, here, offset, length)
            offset += length
        }
    }
}
