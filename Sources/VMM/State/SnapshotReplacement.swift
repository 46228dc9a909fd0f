// VMM: how a snapshot at PATH is written and replaces the one there — all
// or nothing for the pair of files (docs/snapshot-format.md, "Writing a
// snapshot"). Every memory file gets a name of its own, NAME.mem-<16 hex>,
// which the state file records; the memory file is written unnamed and
// linked under that name, then the state file is renamed over PATH (the
// commit point), then the memory files of NAME the new state does not name
// are removed. One writer per PATH at a time: a lock file `.NAME.lock`
// (flock, released by the kernel when its holder dies); a second writer is
// refused at once. A PATH that exists and is not a regular file is refused
// before anything is created.
import FoundationEssentials
import Glibc
import KVM
import Snapshot

struct SnapshotReplacement {
    let statePath: String
    let directory: String
    let name: String
    private let lock: FileLock

    /// Checks `path`, takes its lock and removes what writers killed before
    /// left behind. Nothing at `path` changes.
    static func begin(_ path: String) throws(MachineError) -> SnapshotReplacement {
        let (directory, name) = AtomicFile.split(path)
        guard !name.isEmpty, name != ".", name != ".." else {
            throw .snapshot("cannot write \(path): a snapshot path must name a file")
        }
        try refuseIfNotRegular(path)
        let lockPath = directory + "/." + name + ".lock"
        let acquired: FileLock?
        do {
            acquired = try FileLock.acquire(lockPath)
        } catch {
            throw .snapshot("cannot write \(path): \(error)")
        }
        guard let lock = acquired else {
            throw .snapshot("cannot write \(path): another snapshot to it is being written (\(lockPath) is locked)")
        }
        // Again under the lock: the path may have been replaced meanwhile.
        try refuseIfNotRegular(path)
        let replacement = SnapshotReplacement(statePath: path, directory: directory, name: name, lock: lock)
        replacement.removeLeftovers()
        return replacement
    }

    private static func refuseIfNotRegular(_ path: String) throws(MachineError) {
        guard let kind = FileKind.of(path), kind != .missing, kind != .regular else { return }
        throw .snapshot("cannot write \(path): it is \(kind); a snapshot replaces only a regular file")
    }

    /// A fresh memory file, unnamed until `commit`, and the name it will get.
    func pendingMemory() throws(MachineError) -> (file: PendingFile, name: String) {
        do {
            return (try PendingFile(in: directory, hint: name + ".mem"), name + ".mem-" + AtomicFile.randomHex())
        } catch {
            throw .snapshot("cannot write \(statePath): \(error)")
        }
    }

    /// Names the memory file, then replaces the state file (the commit),
    /// then removes the memory files of NAME the new state does not name.
    /// Before the commit every failure leaves the previous pair as it was
    /// (the new memory file is removed again).
    func commit(memory: PendingFile, memoryName: String, state: [UInt8]) throws(MachineError) {
        do {
            try memory.install(as: memoryName, replacing: false)
        } catch {
            if memory.isInstalled { _ = unlink(directory + "/" + memoryName) }
            throw .snapshot("cannot write \(statePath): \(error)")
        }
        let stateFile: PendingFile
        do {
            stateFile = try PendingFile(in: directory, hint: name)
        } catch {
            _ = unlink(directory + "/" + memoryName)
            throw .snapshot("cannot write \(statePath): \(error)")
        }
        do {
            try stateFile.write(state)
            try stateFile.install(as: name, replacing: true)
        } catch {
            // Not committed: the old state still names the old memory file.
            // (Committed when only the directory fsync failed: the new pair stays.)
            if !stateFile.isInstalled { _ = unlink(directory + "/" + memoryName) }
            throw .snapshot("cannot write \(statePath): \(error)")
        }
        removeMemoryFiles(except: memoryName)
        withExtendedLifetime(lock) {}   // held until the old memory files are gone
    }

    /// Memory file names of NAME: NAME.mem (older versions) and NAME.mem-<16 hex>.
    static func isMemoryFileName(_ candidate: String, of name: String) -> Bool {
        let prefix = name + ".mem-"
        return candidate == name + ".mem" || (candidate.hasPrefix(prefix) && AtomicFile.isHex(candidate.dropFirst(prefix.count)))
    }

    /// Under the lock no other writer of NAME runs: temporaries of NAME
    /// belong to a writer that died, and so do memory files the state at
    /// PATH does not name (killed between naming the memory file and the
    /// commit). When PATH is missing or unreadable, memory files are kept.
    private func removeLeftovers() {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for entry in entries where PendingFile.isTemporaryName(entry, for: name) || PendingFile.isTemporaryName(entry, for: name + ".mem") {
            _ = unlink(directory + "/" + entry)
        }
        guard let named = Self.memoryFileName(statePath: statePath) else { return }
        for entry in entries where entry != named && entry != name + ".mem" && Self.isMemoryFileName(entry, of: name) {
            _ = unlink(directory + "/" + entry)
        }
    }

    private func removeMemoryFiles(except kept: String) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for entry in entries where entry != kept && Self.isMemoryFileName(entry, of: name) {
            _ = unlink(directory + "/" + entry)
        }
    }

    /// The memory file name the state file at `statePath` records, nil when
    /// there is none or it does not read as a snapshot.
    static func memoryFileName(statePath: String) -> String? {
        guard let bytes = try? AtomicFile.read(statePath, limit: LoadedSnapshot.maximumStateBytes),
              let file = try? SnapshotFile(parsing: bytes),
              let memory = try? file.decode(SavedMemory.self, section: .memory) else { return nil }
        return memory.file
    }
}
