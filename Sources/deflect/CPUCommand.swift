// deflect cpu: CPU models without starting a guest — the built-in models,
// one model resolved on this host (its CPUID table and MSR rules), what this
// host's KVM supports by feature name, two models compared, and the baseline
// model a fleet of hosts can all run.
import ArgumentParser
import CPUModel
import FoundationEssentials
import Glibc
import MSRPolicy
import VMM

struct CPUCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cpu",
        abstract: "Work with CPU models (--cpu).",
        discussion: "Exit status 0; 64 for a malformed SPEC; 66 for a model file that cannot be read or has errors; 68 without a usable /dev/kvm; 72 when this host cannot run the model.",
        subcommands: [Models.self, Show.self, Host.self, Compare.self, Baseline.self]
    )

    struct Models: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "models", abstract: "List the built-in CPU models.")

        func run() throws {
            var lines = ["host: KVM's supported CPUID on this host, as it is (the default)"]
            for model in CPUModels.builtIn {
                let vendor = model.vendor ?? "the host's vendor"
                let profile = model.profileName.map { "; MSR profile \($0)" } ?? ""
                lines.append("\(model.name): \(model.summary) (\(vendor)\(profile))")
            }
            StandardStreams.writeOutput(lines.joined(separator: "\n") + "\n")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show", abstract: "Resolve a CPU model on this host: its CPUID table, features and MSR rules.")

        @Argument(help: "The model: host, a built-in name or a model file, with ,+FEATURE / ,-FEATURE.")
        var spec: String
        @Flag(help: "Print JSON.")
        var json = false
        @Option(help: .hidden)
        var kvmDevice = "/dev/kvm"

        func run() throws {
            let (model, rules) = try resolveOnThisHost(spec, kvmDevicePath: kvmDevice)
            if json {
                StandardStreams.writeOutput(try CPUModelReport(model, rules: rules).prettyText() + "\n")
                return
            }
            var lines = ["model \(model.name) (\(model.spec)), vendor \(model.vendor)",
                         "features (\(model.features.count)): \(model.features.joined(separator: " "))",
                         "CPUID (function index: eax ebx ecx edx):"]
            for leaf in model.table {
                lines.append("  \(hex8(leaf.function)) \(hex8(leaf.index)): \(hex8(leaf.eax)) \(hex8(leaf.ebx)) \(hex8(leaf.ecx)) \(hex8(leaf.edx))")
            }
            if rules.isEmpty {
                lines.append("MSR rules: none (KVM decides, as without a model)")
            } else {
                lines.append("MSR rules (\(rules.count)\(model.profileName.map { ", profile \($0)" } ?? ""), as a policy):")
                lines.append(PolicyWriter.toml(MSRPolicy(rules: rules)))
            }
            StandardStreams.writeOutput(lines.joined(separator: "\n") + "\n")
        }
    }

    struct Host: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "host", abstract: "What this host's KVM can give a guest, by feature name.")

        @Flag(help: "Print JSON.")
        var json = false
        @Flag(help: "Print this host as a model file (vendor, signature, features): one per host of a fleet, for deflect cpu baseline.")
        var model = false
        @Option(help: .hidden)
        var kvmDevice = "/dev/kvm"

        func validate() throws {
            if json && model { throw ValidationError("--json and --model are two different outputs; give one") }
        }

        func run() throws {
            if model {
                let resolved = try resolveOnThisHost("host", kvmDevicePath: kvmDevice).model
                do {
                    StandardStreams.writeOutput(try CPUModels.baseline([resolved], name: "host-" + hostName()))
                } catch {
                    throw fail("host: \(error)", status: ExitStatus.cpuModelUnavailable)
                }
                return
            }
            let table = try CPUModelHost.supportedTable(kvmDevicePath: kvmDevice)
            let vendor = table.vendor
            let features = CPUFeatures.present(in: table).sorted()
            if json {
                let document: JSONValue = ["vendor": .string(vendor),
                                           "features": .array(features.map(JSONValue.string)),
                                           "cpuid": .array(table.map(CPUModelReport.leaf))]
                StandardStreams.writeOutput(try document.prettyText() + "\n")
                return
            }
            StandardStreams.writeOutput("vendor \(vendor)\nfeatures (\(features.count)): \(features.joined(separator: " "))\n")
        }
    }

    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compare", abstract: "Features only in model A, and only in model B (both resolved on this host).")

        @Argument(help: "Model A.") var first: String
        @Argument(help: "Model B.") var second: String
        @Option(help: .hidden) var kvmDevice = "/dev/kvm"

        func run() throws {
            let a = try resolveOnThisHost(first, kvmDevicePath: kvmDevice, requireRunnable: false).model
            let b = try resolveOnThisHost(second, kvmDevicePath: kvmDevice, requireRunnable: false).model
            let (onlyA, onlyB) = CPUModels.compare(a, b)
            var lines: [String] = []
            if a.vendor != b.vendor { lines.append("vendors differ: \(a.name) is \(a.vendor), \(b.name) is \(b.vendor)") }
            lines.append("only in \(a.name) (\(onlyA.count)): \(onlyA.joined(separator: " "))")
            lines.append("only in \(b.name) (\(onlyB.count)): \(onlyB.joined(separator: " "))")
            StandardStreams.writeOutput(lines.joined(separator: "\n") + "\n")
        }
    }

    struct Baseline: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "baseline",
            abstract: "The largest CPU model all the given models can run, as a model file on standard output.")

        @Argument(help: "Two or more models (files from each host of a fleet, or built-in names).")
        var specs: [String]
        @Option(help: .hidden) var kvmDevice = "/dev/kvm"

        func validate() throws {
            guard specs.count >= 2 else { throw ValidationError("baseline needs at least two models") }
        }

        func run() throws {
            let models = try specs.map { try resolveOnThisHost($0, kvmDevicePath: kvmDevice, requireRunnable: false).model }
            do {
                StandardStreams.writeOutput(try CPUModels.baseline(models))
            } catch {
                throw fail("baseline: \(error)", status: ExitStatus.cpuModelUnavailable)
            }
        }
    }
}

/// `spec` resolved against this host's KVM. `requireRunnable` false: a model
/// this host cannot run is still resolved (compare and baseline reason about
/// other hosts' models), against the host table with the model's features.
private func resolveOnThisHost(_ text: String, kvmDevicePath: String,
                               requireRunnable: Bool = true) throws -> (model: ResolvedCPUModel, rules: [MSRRule]) {
    let options = try CPUModelOptions.parse(["--cpu", text])
    let spec = try options.spec()
    let host = try CPUModelHost.supportedTable(kvmDevicePath: kvmDevicePath)
    do {
        let model: ResolvedCPUModel
        if requireRunnable {
            model = try CPUModels.resolve(spec, host: host, readFile: CPUModelFiles.read)
        } else {
            // Another host's model (compare, baseline): as a host that has all of it would resolve it.
            do {
                model = try CPUModels.resolve(spec, host: host, readFile: CPUModelFiles.read)
            } catch where error.file == nil {
                model = try CPUModels.resolveAnywhere(spec, host: host, readFile: CPUModelFiles.read)
            }
        }
        return (model, try CPUModelFiles.msrRules(of: model, spec: spec))
    } catch {
        throw fail("\(text): \(error)", status: ExitStatus.cpuModelUnavailable)
    }
}

private func hex8(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}

/// `deflect cpu show --json` and GET /cpuid's shape for one table.
struct CPUModelReport {
    var model: ResolvedCPUModel
    var rules: [MSRRule]

    init(_ model: ResolvedCPUModel, rules: [MSRRule]) {
        self.model = model
        self.rules = rules
    }

    static func leaf(_ leaf: CPUIDLeaf) -> JSONValue {
        ["function": .string("0x" + hex8(leaf.function)), "index": .number(leaf.index),
         "eax": .string("0x" + hex8(leaf.eax)), "ebx": .string("0x" + hex8(leaf.ebx)),
         "ecx": .string("0x" + hex8(leaf.ecx)), "edx": .string("0x" + hex8(leaf.edx))]
    }

    func prettyText() throws -> String {
        let document: JSONValue = [
            "name": .string(model.name), "spec": .string(model.spec), "vendor": .string(model.vendor),
            "profile": .string(model.profileName), "features": .array(model.features.map(JSONValue.string)),
            "cpuid": .array(model.table.map(Self.leaf)),
            "msr_policy": rules.isEmpty ? .null : .string(PolicyWriter.toml(MSRPolicy(rules: rules))),
        ]
        return try document.prettyText()
    }
}

/// This machine's host name (uname), for a host's model file.
private func hostName() -> String {
    var names = utsname()
    uname(&names)
    let name = withUnsafeBytes(of: &names.nodename) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
    return name.isEmpty ? "unnamed" : name
}
