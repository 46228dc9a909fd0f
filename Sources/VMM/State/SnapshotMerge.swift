// VMM: `deflect snapshot merge BASE DIFF`: folds a diff snapshot into the
// snapshot before it, so that DIFF becomes a full snapshot that restores on
// its own: its memory file is BASE's memory with every page the diff wrote
// (the diff file's data extents, KVM's SparseFile) on top. The
// new memory file and the rewritten state file are each written atomically;
// BASE is not changed.
import Foundation
import Glibc
import KVM
import Snapshot

public enum SnapshotMerge {
    /// Returns the bytes of diff pages copied.
    @discardableResult
    public static func merge(base: String, diff: String) throws(MachineError) -> UInt64 {
        let (baseFile, baseMemory, baseMemoryPath) = try read(base)
        let (diffFile, diffMemory, diffMemoryPath) = try read(diff)
        guard baseMemory.kind != "diff" else { throw .snapshot("\(base) is itself a diff snapshot; merge it into its own base first") }
        guard diffMemory.kind == "diff" else { throw .snapshot("\(diff) is a full snapshot; there is nothing to merge") }
        guard baseMemory.size == diffMemory.size else {
            throw .snapshot("\(base) has \(baseMemory.size) bytes of RAM, \(diff) \(diffMemory.size): not the same machine")
        }
        guard baseFile.section(named: "config") == diffFile.section(named: "config") else {
            throw .snapshot("\(base) and \(diff) were not taken of the same machine configuration")
        }
        let temporary = diffMemoryPath + ".merge-\(getpid())"
        let output = Glibc.open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw .snapshot("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var done = false
        defer { if !done { _ = Glibc.close(output); _ = unlink(temporary) } }
        try copy(from: baseMemoryPath, range: nil, to: output, size: baseMemory.size)
        let copied = try copyDataExtents(of: diffMemoryPath, to: output, size: diffMemory.size)
        guard fsync(output) == 0 else { throw .snapshot("fsync \(temporary): \(String(cString: strerror(errno)))") }
        _ = Glibc.close(output)
        done = true

        var merged = SnapshotFile(kvmAPIVersion: diffFile.kvmAPIVersion, host: diffFile.host)
        do {
            for section in diffFile.sections {
                if section.name == "memory" {
                    var memory = diffMemory
                    memory.kind = "full"
                    try merged.append(section: "memory", encoding: memory)
                } else {
                    try merged.append(section: section.name, payload: section.payload)
                }
            }
            guard rename(temporary, diffMemoryPath) == 0 else {
                let reason = String(cString: strerror(errno))
                _ = unlink(temporary)
                throw MachineError.snapshot("cannot rename \(temporary) to \(diffMemoryPath): \(reason)")
            }
            try AtomicFile.write(try merged.serialized(), to: diff)
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
            let memory = try file.decode(SavedMemory.self, section: "memory")
            guard !memory.file.contains("/"), !memory.file.isEmpty else {
                throw MachineError.snapshot("\(path): the memory file name \"\(memory.file)\" must be a plain file name")
            }
            let directory = (path as NSString).deletingLastPathComponent
            return (file, memory, (directory.isEmpty ? "." : directory) + "/" + memory.file)
        } catch let error as MachineError {
            throw error
        } catch {
            throw .snapshot("\(path): \(error)")
        }
    }

    /// Copies `path` (all of it, or `range`) into `output` at the same offsets.
    private static func copy(from path: String, range: Range<UInt64>?, to output: CInt, size: UInt64) throws(MachineError) {
        let input = try openMemoryFile(path, size: size)
        defer { _ = Glibc.close(input) }
        try copyRange(input, output, range ?? 0..<size, path: path)
        guard ftruncate(output, off_t(size)) == 0 else { throw .snapshot("cannot size the merged memory file") }
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

    /// Opens a memory file for reading after checking it has `size` bytes.
    private static func openMemoryFile(_ path: String, size: UInt64) throws(MachineError) -> CInt {
        let input = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw .snapshot("cannot open \(path): \(String(cString: strerror(errno)))") }
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
