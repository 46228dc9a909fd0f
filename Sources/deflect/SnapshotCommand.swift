// deflect snapshot inspect: what a snapshot holds, as JSON, without KVM: the
// header (format, host, KVM API), each section's size and CRC status, the
// configuration, each vCPU's main registers and MSR count, the MSR policy,
// the page map summary, the devices and the memory file.
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
        static let configuration = CommandConfiguration(abstract: "Print what a snapshot holds as JSON.")

        @Argument(help: "The snapshot's state file.")
        var state: String

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
                let json = try Self.summary(file, statePath: state)
                let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
                StandardStreams.writeOutput(String(decoding: data, as: UTF8.self) + "\n")
            } catch let error as ExitCode {
                throw error
            } catch {
                throw fail("\(state): \(error)", status: ExitStatus.badInput)
            }
        }

        static func summary(_ file: SnapshotFile, statePath: String) throws -> [String: Any] {
            let config = try file.decode(SavedConfiguration.self, section: "config")
            let user = try file.decode(UserSpaceState.self, section: "user")
            let memory = try file.decode(SavedMemory.self, section: "memory")
            let devices = try file.decode([String: DeviceState].self, section: "devices")
            var vcpus: [[String: Any]] = []
            for i in 0..<config.vcpuCount {
                let vcpu = try file.decode(VCPUSnapshot.self, section: "vcpu.\(i)")
                let r = try vcpu.generalRegisters()
                vcpus.append(["vcpu": i, "rip": hex(r.rip), "rsp": hex(r.rsp), "rflags": hex(r.rflags),
                              "msrs": vcpu.msrs.count, "one_reg": vcpu.oneRegisters.count])
            }
            let directory = (statePath as NSString).deletingLastPathComponent
            let memoryPath = (directory.isEmpty ? "." : directory) + "/" + memory.file
            let memorySize = (try? FileManager.default.attributesOfItem(atPath: memoryPath)[.size] as? UInt64) ?? nil
            let shared = user.pageMap?.filter { $0.attribute == .shared } ?? []
            // What a restoring host must have (absent in snapshots from before the section existed).
            let needs: Any = try file.section(named: HostRequirements.sectionName).map { _ in
                let requirements = try file.decode(HostRequirements.self, section: HostRequirements.sectionName)
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
                "config": ["mode": config.mode, "memory_mib": config.memoryMiB, "vcpus": config.vcpuCount,
                           "platform": config.platform, "image_bytes": config.image.count, "append": config.append,
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
                "memory": ["file": memory.file, "size": memory.size, "file_size": memorySize.map { $0 as Any } ?? NSNull()],
            ]
        }
    }
}
