// VMM: the pages of guest RAM that Deflect itself writes while the guest
// runs — a virtio device's DMA (request data, used rings), the S3 wake code.
// KVM's dirty log records only the guest's own writes, so diff snapshots and
// live migration send the union of both (Machine.dirtyPages).
import KVM
import Synchronization

final class RAMWriteLog: Sendable {
    /// Per writable slot, one bit per 4 KiB page (DirtyPageBitmap's layout).
    private let bitmaps: Mutex<[UInt32: DirtyPageBitmap]>

    /// `slots`: each writable slot and its size in pages.
    init(slots: [(slot: UInt32, pageCount: Int)]) {
        var bitmaps: [UInt32: DirtyPageBitmap] = [:]
        for (slot, pageCount) in slots { bitmaps[slot] = DirtyPageBitmap(pageCount: pageCount) }
        self.bitmaps = Mutex(bitmaps)
    }

    convenience init(regions: [GuestMemory]) {
        self.init(slots: regions.filter { !$0.readOnly }.map { ($0.slot, $0.pageCount) })
    }

    /// Marks the pages of `slot` that [offset, offset+length) touches
    /// (`offset` from the slot's start). Called after the bytes are written:
    /// a collector taking the log in between sees the page in its next
    /// round, never before its new bytes.
    func record(slot: UInt32, offset: UInt64, length: Int) {
        guard length > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length) - 1)
        guard !overflow else { return }
        let first = Int(clamping: offset / GuestMemory.pageSize), last = Int(clamping: end / GuestMemory.pageSize)
        bitmaps.withLock { bitmaps in
            bitmaps[slot]?.mark(pages: first...last)
        }
    }

    /// The pages of `slot` written since the last call (nil: not a logged
    /// slot), and forgets them.
    func take(slot: UInt32) -> DirtyPageBitmap? {
        bitmaps.withLock { bitmaps in
            guard let taken = bitmaps[slot] else { return nil }
            bitmaps[slot] = DirtyPageBitmap(pageCount: taken.pageCount)
            return taken
        }
    }
}
