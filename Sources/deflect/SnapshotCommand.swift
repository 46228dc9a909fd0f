// deflect snapshot inspect: what a snapshot holds, as JSON, without KVM: the
// header (format, host, KVM API), each section's size and CRC status, the
// configuration, each vCPU's main registers and MSR count, the MSR policy,
// the page map summary, the devices and the memory file; with --verify the
// memory file is read and every chunk checked against its CRC-64.
import ArgumentParser
import Devices
import FoundationEssentials
import Glibc
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
                if verify { json["verified"] = .string(try Self.verifyMemory(file, statePath: state)) }
                StandardStreams.writeOutput(try JSONValue.object(json).prettyText() + "\n")
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

        static func summary(_ file: SnapshotFile, statePath: String) throws -> [String: JSONValue] {
            let config = try file.decode(SavedConfiguration.self, section: .config)
            let user = try file.decode(UserSpaceState.self, section: .user)
            let memory = try file.decode(SavedMemory.self, section: .memory)
            let devices = try file.decode([String: DeviceState].self, section: .devices)
            var vcpus: [JSONValue] = []
            for i in 0..<config.vcpuCount {
                let vcpu = try file.decode(VCPUSnapshot.self, section: .vcpu(i))
                let r = try vcpu.generalRegisters()
                vcpus.append(["vcpu": .number(i), "rip": .string(hex(r.rip)), "rsp": .string(hex(r.rsp)),
                              "rflags": .string(hex(r.rflags)), "msrs": .number(vcpu.msrs.count),
                              "one_reg": .number(vcpu.oneRegisters.count)])
            }
            let memoryPath = try memory.path(besideStateFile: statePath)
            let memorySize = (try? MemoryFile.open(path: memoryPath))?.size
            let shared = user.pageMap?.filter { $0.attribute == .shared } ?? []
            // What a restoring host must have (absent in snapshots from before the section existed).
            let needs: JSONValue = try file.section(named: .host).map { _ in
                let requirements = try file.decode(HostRequirements.self, section: .host)
                return ["kvm_capabilities": .array(requirements.capabilities.map { .string("\($0.name) >= \($0.minimum)") }),
                        "cpuid_feature_bits": .number(requirements.cpuidFeatures.reduce(0) { $0 + $1.bits.nonzeroBitCount })]
            } ?? .null
            return [
                "host_needs": needs,
                "format_version": .number(SnapshotFile.formatVersion),
                "kvm_api_version": .number(file.kvmAPIVersion),
                "host": ["vendor": .string(file.host.vendor), "family": .number(file.host.family),
                         "model": .number(file.host.model), "stepping": .number(file.host.stepping)],
                "sections": .array(file.sections.map { ["name": .string($0.name), "bytes": .number($0.payload.count)] }),
                "config": ["mode": .string(config.mode.rawValue), "memory_mib": .number(config.memoryMiB),
                           // Where that RAM is: below the PCI hole, and from 4 GiB when there is more.
                           "ram_ranges": .array(MachineConfiguration.memoryLayout.ramRanges(memoryBytes: UInt64(config.memoryMiB) << 20)
                               .map { .string("0x\(String($0.lowerBound, radix: 16))-0x\(String($0.upperBound, radix: 16))") }),
                           "vcpus": .number(config.vcpuCount), "platform": .string(config.platform.rawValue),
                           "image_bytes": .number(config.image.count), "append": .string(config.append),
                           "modules": .number(config.modules.count)],
                "vcpus": .array(vcpus),
                "cpu_model": config.cpuModel.map { ["name": .string($0.name), "spec": .string($0.spec),
                                                    "vendor": .string($0.vendor), "features": .number($0.features.count)] } ?? "host",
                "msr_policy": .string(user.policyTOML),
                "emulated_msr_values": .number(user.emulatedMSRs.count),
                "page_map": user.pageMap.map { ranges -> JSONValue in
                    ["ranges": .number(ranges.count), "shared_ranges": .number(shared.count),
                     "shared_bytes": .number(shared.reduce(UInt64(0)) { $0 + ($1.end - $1.start) })]
                } ?? .null,
                "migration_control": .string(user.migrationControl?.rawValue),
                "guest_clock_ns": .number(user.guestClockNanoseconds),
                "devices": .array(devices.keys.sorted().map(JSONValue.string)),
                "memory": ["file": .string(memory.file), "size": .number(memory.size),
                           "kind": .string((memory.kind ?? .full).rawValue),
                           "file_size": memorySize.map { .number($0) } ?? .null,
                           "chunk_bytes": memory.chunkBytes.map { .number($0) } ?? .null,
                           "chunk_checksums": memory.chunkCRC64.map { .number($0.count) } ?? .null],
            ]
        }
    }
}
