// deflect snapshot inspect: what a snapshot holds, as JSON, without KVM: the
// header (format, host, KVM API), each section's size and CRC status, the
// configuration, each vCPU's main registers and MSR count, the MSR policy,
// the page map summary, the devices and the memory file; with --verify the
// memory file is read and every chunk checked against its CRC-64.
import ArgumentParser
import Devices
import Foundation
import KVM
import KVMABI
import Snapshot
import VMM

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Work with snapshot files.",
        subcommands: [Inspect.self, Merge.self]
    )

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "merge",
            abstract: "Fold a diff snapshot into the snapshot before it: DIFF becomes a full snapshot (BASE is unchanged).")

        @Argument(help: "The full snapshot the diff was taken after.")
        var base: String
        @Argument(help: "The diff snapshot (deflect ctl snapshot PATH --diff).")
        var diff: String

        func run() throws {
            do {
                let copied = try SnapshotMerge.merge(base: base, diff: diff)
                StandardStreams.writeOutput("merged \(diff) into a full snapshot (\(copied) bytes of diff pages over \(base)'s memory)\n")
            } catch {
                throw fail("\(error)", status: ExitStatus.badInput)
            }
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Print what a snapshot holds as JSON.")

        @Argument(help: "The snapshot's state file.")
        var state: String

        @Flag(help: "Also read the memory file and check its size and every 1 MiB chunk's CRC-64 (status 66 naming the first bad chunk).")
        var verify = false

        func run() throws {
            let bytes: [UInt8]
            do {
                bytes = try AtomicFile.read(state, limit: LoadedSnapshot.maximumStateBytes)
            } catch {
                throw fail("\(error)", status: ExitStatus.badInput)
            }
            let file: SnapshotFile
            do {
                file = try SnapshotFile(parsing: bytes)
            } catch {
                throw fail("\(state): \(error)", status: ExitStatus.badInput)
            }
            do {
                var json = try Self.summary(file, statePath: state)
                if verify { json["verified"] = try Self.verifyMemory(file, statePath: state) }
                let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
                StandardStreams.writeOutput(String(decoding: data, as: UTF8.self) + "\n")
            } catch let error as ExitCode {
                throw error
            } catch {
                throw fail("\(state): \(error)", status: ExitStatus.badInput)
            }
        }

        /// Checks the memory file; returns what was checked, or fails with status 66.
        static func verifyMemory(_ file: SnapshotFile, statePath: String) throws -> String {
            do {
                let memory = try file.decode(SavedMemory.self, section: .memory)
                let path = try memory.path(besideStateFile: statePath)
                let opened: MemoryFile
                do {
                    opened = try MemoryFile.open(path: path)
                } catch {
                    throw MachineError.snapshot("the memory file is missing or unreadable: \(error)")
                }
                try memory.check(fd: opened.fileDescriptor, path: path, verify: true)
                guard let sums = memory.chunkCRC64 else { return "size only: this snapshot was written before memory checksums" }
                return "size and \(sums.count) chunk checksums"
            } catch {
                throw fail("\(statePath): \(error)", status: ExitStatus.badInput)
            }
        }

        static func summary(_ file: SnapshotFile, statePath: String) throws -> [String: Any] {
            let config = try file.decode(SavedConfiguration.self, section: .config)
            let user = try file.decode(UserSpaceState.self, section: .user)
            let memory = try file.decode(SavedMemory.self, section: .memory)
            let devices = try file.decode([String: DeviceState].self, section: .devices)
            var vcpus: [[String: Any]] = []
            for i in 0..<config.vcpuCount {
                let vcpu = try file.decode(VCPUSnapshot.self, section: .vcpu(i))
                let r = try vcpu.generalRegisters()
                vcpus.append(["vcpu": i, "rip": hex(r.rip), "rsp": hex(r.rsp), "rflags": hex(r.rflags),
                              "msrs": vcpu.msrs.count, "one_reg": vcpu.oneRegisters.count])
            }
            let memoryPath = try memory.path(besideStateFile: statePath)
            let memorySize = (try? MemoryFile.open(path: memoryPath))?.size
            let shared = user.pageMap?.filter { $0.attribute == .shared } ?? []
            // What a restoring host must have (absent in snapshots from before the section existed).
            let needs: Any = try file.section(named: .host).map { _ in
                let requirements = try file.decode(HostRequirements.self, section: .host)
                return ["kvm_capabilities": requirements.capabilities.map { "\($0.name) >= \($0.minimum)" },
                        "cpuid_feature_bits": requirements.cpuidFeatures.reduce(0) { $0 + $1.bits.nonzeroBitCount }] as [String: Any]
            } ?? NSNull()
            return [
                "host_needs": needs,
                "format_version": Int(SnapshotFile.formatVersion),
                "kvm_api_version": Int(file.kvmAPIVersion),
                "host": ["vendor": file.host.vendor, "family": Int(file.host.family), "model": Int(file.host.model),
                         "stepping": Int(file.host.stepping)],
                "sections": file.sections.map { ["name": $0.name, "bytes": $0.payload.count] },
                "config": ["mode": config.mode.rawValue, "memory_mib": config.memoryMiB, "vcpus": config.vcpuCount,
                           "platform": config.platform.rawValue, "image_bytes": config.image.count, "append": config.append,
                           "modules": config.modules.count],
                "vcpus": vcpus,
                "msr_policy": user.policyTOML ?? NSNull(),
                "emulated_msr_values": user.emulatedMSRs.count,
                "page_map": user.pageMap.map { ranges -> [String: Any] in
                    ["ranges": ranges.count, "shared_ranges": shared.count,
                     "shared_bytes": shared.reduce(UInt64(0)) { $0 + ($1.end - $1.start) }]
                } ?? NSNull(),
                "migration_control": user.migrationControl?.rawValue ?? NSNull(),
                "guest_clock_ns": user.guestClockNanoseconds,
                "devices": devices.keys.sorted(),
                "memory": ["file": memory.file, "size": memory.size, "kind": (memory.kind ?? .full).rawValue,
                           "file_size": memorySize.map { $0 as Any } ?? NSNull(),
                           "chunk_bytes": memory.chunkBytes.map { $0 as Any } ?? NSNull(),
                           "chunk_checksums": memory.chunkCRC64.map { $0.count as Any } ?? NSNull()],
            ]
        }
    }
}
