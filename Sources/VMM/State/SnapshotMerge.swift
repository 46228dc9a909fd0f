// VMM: `deflect snapshot merge BASE DIFF`: folds a diff snapshot into the
// snapshot before it, so that DIFF becomes a full snapshot that restores on
// its own: its memory file is BASE's memory with every page the diff wrote
// (the diff file's data extents, KVM's SparseFile) on top. DIFF's pair is
// replaced as a snapshot is (SnapshotReplacement: a new memory file with
// its own name and checksums, then the state file naming it); BASE is not
// changed.
import FoundationEssentials
import Glibc
import KVM
import Snapshot

public enum SnapshotMerge {
    /// Returns the bytes of diff pages copied.
    @discardableResult
    public static func merge(base: String, diff: String) throws(MachineError) -> UInt64 {
        let (baseFile, baseMemory, baseMemoryPath) = try read(base)
        let (diffFile, diffMemory, diffMemoryPath) = try read(diff)
        guard baseMemory.kind != .diff else { throw .snapshot("\(base) is itself a diff snapshot; merge it into its own base first") }
        guard diffMemory.kind == .diff else { throw .snapshot("\(diff) is a full snapshot; there is nothing to merge") }
        guard baseMemory.size == diffMemory.size else {
            throw .snapshot("\(base) has \(baseMemory.size) bytes of RAM, \(diff) \(diffMemory.size): not the same machine")
        }
        guard baseFile.section(named: .config) == diffFile.section(named: .config) else {
            throw .snapshot("\(base) and \(diff) were not taken of the same machine configuration")
        }
        // Corrupt bytes merged now would be blessed with fresh checksums.
        try verify(baseMemory, at: baseMemoryPath)
        try verify(diffMemory, at: diffMemoryPath)
        let replacement = try SnapshotReplacement.begin(diff)
        let (output, outputName) = try replacement.pendingMemory()
        try copy(from: baseMemoryPath, to: output.fileDescriptor, size: baseMemory.size)
        let copied = try copyDataExtents(of: diffMemoryPath, to: output.fileDescriptor, size: diffMemory.size)

        var merged = SnapshotFile(kvmAPIVersion: diffFile.kvmAPIVersion, host: diffFile.host)
        do {
            let checksums = try MemoryChecksums.compute(fd: output.fileDescriptor, size: diffMemory.size,
                                                        what: "the merged memory file of \(diff)")
            for section in diffFile.sections {
                if section.name == SnapshotSectionName.memory.rawValue {
                    try merged.append(.memory, encoding: SavedMemory(file: outputName, size: diffMemory.size, kind: .full,
                                                                     chunkBytes: MemoryChecksums.chunkBytes, chunkCRC64: checksums))
                } else {
                    try merged.append(section: section.name, payload: section.payload)
                }
            }
            try replacement.commit(memory: output, memoryName: outputName, state: try merged.serialized())
        } catch let error as MachineError {
            throw error
        } catch {
            throw .snapshot("\(diff): \(error)")
        }
        return copied
    }

    private static func read(_ path: String) throws(MachineError) -> (SnapshotFile, SavedMemory, String) {
        do {
            let file = try SnapshotFile(parsing: try AtomicFile.read(path, limit: LoadedSnapshot.maximumStateBytes))
            let memory = try file.decode(SavedMemory.self, section: .memory)
            return (file, memory, try memory.path(besideStateFile: path))
        } catch let error as MachineError {
            throw error
        } catch {
            throw .snapshot("\(path): \(error)")
        }
    }

    /// Copies all of `path` into `output` (a new, empty file) at the same
    /// offsets: only its data extents where the file system reports them, so
    /// holes (zero pages, the PCI hole of a guest with RAM above 4 GiB) stay holes.
    private static func copy(from path: String, to output: CInt, size: UInt64) throws(MachineError) {
        let input = try openMemoryFile(path, size: size)
        defer { _ = Glibc.close(input) }
        for extent in SparseFile.dataExtents(of: input, in: 0..<size) ?? [0..<size] {
            try copyRange(input, output, extent, path: path)
        }
        do {
            try SparseFile.ensureSize(output, size, what: "the merged memory file")
        } catch {
            throw .snapshot("cannot size the merged memory file: \(error)")
        }
    }

    /// The data extents of a sparse file (the pages a diff wrote), copied in place.
    private static func copyDataExtents(of path: String, to output: CInt, size: UInt64) throws(MachineError) -> UInt64 {
        let input = try openMemoryFile(path, size: size)
        defer { _ = Glibc.close(input) }
        // Without hole reporting every page of the diff would look written
        // and the merge would overwrite the base with zeros: refuse.
        guard let extents = SparseFile.dataExtents(of: input, in: 0..<size) else {
            throw .snapshot("\(path): this file system does not report which pages the diff wrote (lseek SEEK_DATA)")
        }
        for extent in extents { try copyRange(input, output, extent, path: path) }
        return extents.reduce(0) { $0 + UInt64($1.count) }
    }

    /// Checks a memory file against its description (size, chunk checksums).
    private static func verify(_ memory: SavedMemory, at path: String) throws(MachineError) {
        let fd = try openMemoryFile(path, size: memory.size)
        defer { _ = Glibc.close(fd) }
        try memory.check(fd: fd, path: path, verify: true)
    }

    /// Opens a memory file (a regular file, never blocking) after checking it has `size` bytes.
    private static func openMemoryFile(_ path: String, size: UInt64) throws(MachineError) -> CInt {
        let input: CInt
        do {
            input = try AtomicFile.openRegular(path, what: "open")
        } catch {
            throw .snapshot("\(error)")
        }
        var status = stat()
        guard fstat(input, &status) == 0, UInt64(status.st_size) == size else {
            _ = Glibc.close(input)
            throw .snapshot("\(path) is not \(size) bytes: the memory file does not belong to its state file")
        }
        return input
    }

    private static func copyRange(_ input: CInt, _ output: CInt, _ range: Range<UInt64>, path: String) throws(MachineError) {
        do {
            try SparseFile.copy(range, from: input, to: output, what: path)
        } catch {
            throw .snapshot("copying \(path) into the merged memory file: \(error)")
        }
    }
}
