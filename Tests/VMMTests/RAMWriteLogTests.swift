// VMMTests: the log of guest pages Deflect's devices write (RAMWriteLog) and
// the bitmap operations it and KVM's dirty log share.
import KVM
import Testing
@testable import VMM

@Suite("RAM write log")
struct RAMWriteLogTests {
    @Test func aWriteMarksEveryPageItTouchesAndTakeForgetsThem() throws {
        let log = RAMWriteLog(slots: [(slot: 0, pageCount: 160), (slot: 2, pageCount: 10)])
        log.record(slot: 0, offset: 0x1FFF, length: 2)          // the last byte of page 1, the first of page 2
        log.record(slot: 0, offset: 0x9F000, length: 4096)      // exactly page 159, the slot's last
        log.record(slot: 2, offset: 5 * 4096 + 100, length: 1)
        let taken = try #require(log.take(slot: 0))
        #expect(taken.dirtyPages == [1, 2, 159])
        #expect(taken.pageCount == 160)
        #expect(log.take(slot: 2)?.dirtyPages == [5])
        #expect(log.take(slot: 0)?.dirtyPages == [], "taken pages are forgotten")
    }

    @Test func writesOutsideALoggedSlotOrOfNoBytesMarkNothing() {
        let log = RAMWriteLog(slots: [(slot: 0, pageCount: 4)])
        log.record(slot: 1, offset: 0, length: 4096)            // the read-only slot is not logged
        log.record(slot: 0, offset: 4096, length: 0)
        log.record(slot: 0, offset: UInt64.max - 10, length: 100)   // wraps: ignored
        log.record(slot: 0, offset: 3 * 4096, length: 3 * 4096)  // runs past the slot: only page 3
        #expect(log.take(slot: 1) == nil)
        #expect(log.take(slot: 0)?.dirtyPages == [3])
    }

    @Test func bitmapsUniteOnlyWithTheSameSlotsShape() {
        var a = DirtyPageBitmap(pageCount: 130)
        a.mark(pages: 0...1)
        var b = DirtyPageBitmap(pageCount: 130)
        b.mark(pages: 64...64)
        b.mark(pages: 129...200)
        #expect(a.union(b).dirtyPages == [0, 1, 64, 129])
        #expect(a.union(DirtyPageBitmap(pageCount: 7)) == a)
    }
}
