// KVM: files behind guest RAM and what snapshots do with them: a memfd that
// RAM is mapped from (MAP_SHARED), a snapshot memory file a restore maps
// copy-on-write (MAP_PRIVATE: restore time does not grow with RAM, the file
// never changes), writing RAM out from the mapping with zero pages left as
// holes (never through Swift arrays), and dirty-page
// logging (KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG) with diff writes into a
// sparse file.
//
// File layout: a memory file is the guest-physical image of RAM; each slot
// maps it at its own file offset (the PC layout's three slots at offset =
// guest address), so a full snapshot is the file and a diff snapshot is the
// same layout with holes where no page was dirtied.
internal import CKVM
import Glibc
import Synchronization

/// An open file that holds guest RAM. Owns its descriptor.
public final class MemoryFile: Sendable {
    let fd: CInt
    public let size: UInt64
    /// A memfd made for this VM (writable), or a file opened read-only.
    public let isAnonymous: Bool

    private init(fd: CInt, size: UInt64, isAnonymous: Bool) {
        self.fd = fd; self.size = size; self.isAnonymous = isAnonymous
    }

    deinit { Syscall.close(fd) }

    /// memfd_create(MFD_CLOEXEC) of `size` bytes (zero pages until written).
    public static func anonymous(size: UInt64, name: String = "deflect-ram") throws(KVMError) -> MemoryFile {
        guard size > 0, size % GuestMemory.pageSize == 0 else {
            throw .invalidArgument(request: "memfd_create(\(name))", reason: "size must be a non-zero multiple of 4 KiB")
        }
        return MemoryFile(fd: try Syscall.memoryFile(name: name, size: size), size: size, isAnonymous: true)
    }

    /// A snapshot's memory file, opened read-only: it is only ever mapped
    /// MAP_PRIVATE, so guest writes after a restore stay in this process.
    /// Only a regular file is accepted, and the open never blocks (a FIFO
    /// is refused, not waited on).
    public static func open(path: String) throws(FileError) -> MemoryFile {
        let fd = try AtomicFile.openRegular(path, what: "open")
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = FileError.system("examine", path)
            Syscall.close(fd)
            throw error
        }
        return MemoryFile(fd: fd, size: UInt64(info.st_size), isAnonymous: false)
    }

    /// The descriptor, for reading the file (checksums); the file keeps owning it.
    public var fileDescriptor: CInt { fd }

    /// `count` bytes of the file at `offset` (pread: what the file holds, not a mapping).
    public func read(at offset: UInt64, count: Int) throws(KVMError) -> [UInt8] {
        try Syscall.pread(fd, count: count, offset: Int(offset), what: "memory file")
    }
}

/// What a guest memory slot maps.
public enum GuestMemoryBacking: Sendable {
    /// Private anonymous memory (nothing else sees it).
    case anonymous
    /// `file` from `offset`, MAP_SHARED: guest writes land in the file.
    case shared(MemoryFile, offset: UInt64)
    /// `file` from `offset`, MAP_PRIVATE: pages are read from the file when
    /// first touched, and guest writes copy them; the file never changes.
    case privateCopy(MemoryFile, offset: UInt64)

    var file: (file: MemoryFile, offset: UInt64, shared: Bool)? {
        switch self {
        case .anonymous: return nil
        case let .shared(file, offset): return (file, offset, true)
        case let .privateCopy(file, offset): return (file, offset, false)
        }
    }
}

/// One bit per 4 KiB page of a slot, as KVM_GET_DIRTY_LOG reports it.
public struct DirtyPageBitmap: Sendable, Equatable {
    public let pageCount: Int
    /// Bit `p % 64` of word `p / 64` is page `p`.
    public var words: [UInt64]

    public init(pageCount: Int, words: [UInt64]) {
        self.pageCount = pageCount
        self.words = words
    }

    /// No page dirty.
    public init(pageCount: Int) {
        self.init(pageCount: pageCount, words: Array(repeating: 0, count: Self.wordCount(pages: pageCount)))
    }

    /// KVM writes whole longs: the buffer is the page count rounded up to 64 bits.
    static func wordCount(pages: Int) -> Int { (pages + 63) / 64 }

    /// Marks `pages` dirty (the part inside the slot).
    public mutating func mark(pages: ClosedRange<Int>) {
        let first = max(pages.lowerBound, 0), last = min(pages.upperBound, pageCount - 1)
        guard first <= last else { return }
        for page in first...last { words[page / 64] |= 1 << UInt64(page % 64) }
    }

    /// Every page dirty in either bitmap (the same slot's).
    public func union(_ other: DirtyPageBitmap) -> DirtyPageBitmap {
        guard other.pageCount == pageCount, other.words.count == words.count else { return self }
        return DirtyPageBitmap(pageCount: pageCount, words: zip(words, other.words).map { $0 | $1 })
    }

    public func isDirty(_ page: Int) -> Bool {
        guard page >= 0, page < pageCount else { return false }
        return words[page / 64] & (1 << UInt64(page % 64)) != 0
    }

    /// The dirty page numbers, ascending (a word at a time: a 1 GiB slot's
    /// bitmap is 4,096 words, mostly zero).
    public var dirtyPages: [Int] {
        var pages: [Int] = []
        for (index, word) in words.enumerated() where word != 0 {
            var bits = word
            while bits != 0 {
                let page = index * 64 + bits.trailingZeroBitCount
                if page < pageCount { pages.append(page) }
                bits &= bits - 1
            }
        }
        return pages
    }

    public var dirtyCount: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// Runs of consecutive dirty pages as (first page, count).
    public var runs: [(first: Int, count: Int)] {
        var result: [(first: Int, count: Int)] = []
        var page = 0
        while page < pageCount {
            guard isDirty(page) else { page += 1; continue }
            let first = page
            while page < pageCount, isDirty(page) { page += 1 }
            result.append((first, page - first))
        }
        return result
    }
}

extension GuestMemory {
    public static let pageSize: UInt64 = 4096

    public var pageCount: Int { Int(size / Self.pageSize) }

    /// Writes the slot into `fd` at `fileOffset`, leaving pages that hold
    /// only zeros as holes, as QEMU's migration stream skips zero pages: a
    /// guest that has touched a little of a large RAM writes a little. The
    /// file is grown to cover the slot, so a hole reads as the zero page it
    /// stands for. Data goes straight from the mapping (pwrite), never
    /// through a Swift array. Where the slot maps a memfd shared, the memfd's
    /// own holes (pages never written) are skipped without reading them.
    /// Returns the bytes written.
    @discardableResult
    public func writeContents(to fd: CInt, fileOffset: UInt64) throws(KVMError) -> UInt64 {
        var written: UInt64 = 0
        for extent in dataExtents() {
            var page = extent.lowerBound
            while page < extent.upperBound {
                guard !Self.isZeroPage(host + Int(page * Self.pageSize)) else { page += 1; continue }
                let first = page
                // A run of non-zero pages, at most 8 MiB per write.
                while page < extent.upperBound, page - first < 2048, !Self.isZeroPage(host + Int(page * Self.pageSize)) {
                    page += 1
                }
                let offset = first * Self.pageSize, length = (page - first) * Self.pageSize
                // SAFETY: the run lies inside the slot (pages < pageCount).
                try Syscall.pwrite(fd, from: host + Int(offset), count: Int(length), offset: fileOffset + offset, what: "slot \(slot)")
                written += length
            }
        }
        try Syscall.ensureSize(fd, fileOffset + size, what: "slot \(slot)")
        return written
    }

    /// The page ranges of the slot that may hold data: all of it, or for a
    /// shared memfd only the ranges lseek(SEEK_DATA/SEEK_HOLE) reports.
    private func dataExtents() -> [Range<UInt64>] {
        let pages = UInt64(pageCount)
        guard case let .shared(file, base) = backing,
              let extents = SparseFile.dataExtents(of: file.fd, in: base..<(base + size)) else { return [0..<pages] }
        return extents.map { extent in
            let first = (extent.lowerBound - base) / Self.pageSize
            let last = (extent.upperBound - base + Self.pageSize - 1) / Self.pageSize
            return first..<min(last, pages)
        }
    }

    /// Whether the 4 KiB page at `page` holds only zeros (stops at the first
    /// non-zero word, so a page with data costs a few loads).
    static func isZeroPage(_ page: UnsafeMutableRawPointer) -> Bool {
        let words = UnsafeRawPointer(page).assumingMemoryBound(to: UInt64.self)
        var index = 0
        while index < Int(pageSize) / 8 {
            // Eight words at a time: one branch per cache line.
            let line = words[index] | words[index + 1] | words[index + 2] | words[index + 3]
                | words[index + 4] | words[index + 5] | words[index + 6] | words[index + 7]
            if line != 0 { return false }
            index += 8
        }
        return true
    }

    /// Writes only the pages `dirty` marks into `fd` at `fileOffset` + their
    /// offset, and grows the file to cover the whole slot: the rest stays a
    /// hole (a sparse diff in the full snapshot's layout). Returns the bytes written.
    @discardableResult
    public func writeDirtyPages(_ dirty: DirtyPageBitmap, to fd: CInt, fileOffset: UInt64) throws(KVMError) -> UInt64 {
        guard dirty.pageCount == pageCount else {
            throw .invalidArgument(request: "diff write of slot \(slot)", reason: "bitmap has \(dirty.pageCount) pages, the slot \(pageCount)")
        }
        var written: UInt64 = 0
        for run in dirty.runs {
            let offset = UInt64(run.first) * Self.pageSize, length = UInt64(run.count) * Self.pageSize
            // SAFETY: the run lies inside the slot (pages < pageCount).
            try Syscall.pwrite(fd, from: host + Int(offset), count: Int(length), offset: fileOffset + offset, what: "slot \(slot)")
            written += length
        }
        try Syscall.ensureSize(fd, fileOffset + size, what: "slot \(slot)")
        return written
    }
}

extension VirtualMachine {
    /// KVM_MEM_LOG_DIRTY_PAGES.
    static let logDirtyPagesFlag: UInt32 = 1 << 0
    /// KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE.
    static let manualProtectEnable: UInt64 = 1 << 0

    /// Turns on KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (where the host has it):
    /// KVM_GET_DIRTY_LOG then only reports, and `dirtyPages` re-protects just
    /// the reported pages with KVM_CLEAR_DIRTY_LOG. Returns false where the
    /// host lacks it (KVM_GET_DIRTY_LOG then reports and re-protects at once).
    @discardableResult
    public func enableManualDirtyLogProtect() throws(KVMError) -> Bool {
        guard UInt64(try check(.manualDirtyLogProtect2)) & Self.manualProtectEnable != 0 else { return false }
        try enable(.manualDirtyLogProtect2, arguments: [Self.manualProtectEnable])
        manualDirtyProtect.store(true, ordering: .relaxed)
        return true
    }

    /// The pages of `slot` written since logging started or since the last
    /// call (KVM_GET_DIRTY_LOG, then KVM_CLEAR_DIRTY_LOG for those pages when
    /// manual protection is on). The slot must log dirty pages.
    public func dirtyPages(slot: UInt32) throws(KVMError) -> DirtyPageBitmap {
        guard let memory = memory(slot: slot) else {
            throw .invalidArgument(request: "KVM_GET_DIRTY_LOG", reason: "no memory slot \(slot)")
        }
        let pages = memory.pageCount
        let wordCount = DirtyPageBitmap.wordCount(pages: pages)
        let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: wordCount)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0, count: wordCount)
        var log = ckvm_dirty_log(slot, buffer)
        _ = try Syscall.ioctl(fd, CKVM_GET_DIRTY_LOG, &log, "KVM_GET_DIRTY_LOG(slot \(slot))")
        let words = Array(UnsafeBufferPointer(start: buffer, count: wordCount))
        if manualDirtyProtect.load(ordering: .relaxed), words.contains(where: { $0 != 0 }) {
            // Re-protect exactly the reported pages; num_pages may end
            // mid-word only where the slot ends.
            var clear = ckvm_clear_dirty_log(slot, 0, UInt32(pages), buffer)
            _ = try Syscall.ioctl(fd, CKVM_CLEAR_DIRTY_LOG, &clear, "KVM_CLEAR_DIRTY_LOG(slot \(slot))")
        }
        return DirtyPageBitmap(pageCount: pages, words: words)
    }

    /// Starts or stops dirty logging on a registered slot (re-registers it
    /// with KVM_MEM_LOG_DIRTY_PAGES set or clear; the mapping is unchanged).
    public func setDirtyLogging(slot: UInt32, enabled: Bool) throws(KVMError) {
        guard let memory = memory(slot: slot) else {
            throw .invalidArgument(request: "KVM_SET_USER_MEMORY_REGION", reason: "no memory slot \(slot)")
        }
        try register(memory, logDirtyPages: enabled)
    }

    func memory(slot: UInt32) -> GuestMemory? {
        regions.withLock { $0.first { $0.slot == slot } }
    }

    /// KVM_SET_USER_MEMORY_REGION for `memory` with its flags.
    func register(_ memory: GuestMemory, logDirtyPages: Bool) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = memory.slot
        region.flags = (memory.readOnly ? 1 << 1 : 0) | (logDirtyPages ? Self.logDirtyPagesFlag : 0)   // KVM_MEM_READONLY
        region.guest_phys_addr = memory.start.rawValue
        region.memory_size = memory.size
        region.userspace_addr = UInt64(UInt(bitPattern: memory.host))
        _ = try Syscall.ioctl(fd, CKVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION")
    }
}
