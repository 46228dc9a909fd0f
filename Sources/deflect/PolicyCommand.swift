// deflect policy: check a policy file and show what it compiles to, without
// starting a guest.
import ArgumentParser
import KVMABI
import MSRPolicy
import VMM

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Work with MSR policy files.",
        subcommands: [Check.self, Profiles.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate a policy file and print the KVM MSR filter it compiles to.",
            discussion: "Exit status 0 when the policy is valid, 66 when it is not (errors as file:line:column)."
        )

        @Argument(help: "The policy file (TOML).")
        var file: String

        func run() throws {
            let policy = try loadPolicy(file)
            let filter: CompiledFilter
            do {
                filter = try FilterCompiler.compile(policy)
            } catch {
                throw fail("\(file): \(error)", status: ExitStatus.badInput)
            }
            print("\(file): valid: \(policy.rules.count) rules, default \(policy.defaultAction.rawValue) for \(policy.defaultScope.rawValue) MSRs\(policy.logDefault ? ", logged" : "")\(policy.profile.map { ", profile \($0)" } ?? "")")
            print("KVM_X86_SET_MSR_FILTER: default \(filter.defaultAllow ? "allow" : "deny"), \(filter.ranges.count) of \(MSRFilter.maxRanges) ranges")
            for range in filter.ranges {
                let last = range.base &+ range.count &- 1
                let allowed = (0..<Int(range.count)).filter { range.bitmap[$0 / 8] & (1 << ($0 % 8)) != 0 }.count
                print("  0x\(String(range.base, radix: 16))–0x\(String(last, radix: 16)): \(range.count) MSRs, \(allowed) allowed, \(Int(range.count) - allowed) denied")
            }
            let names: [(MSRExitReasons, String)] = [(.invalid, "INVAL"), (.unknown, "UNKNOWN"), (.filter, "FILTER")]
            let reasons = names.filter { filter.exitReasons.contains($0.0) }.map(\.1)
            print("KVM_CAP_X86_USER_SPACE_MSR exit reasons: \(reasons.joined(separator: " | "))")
        }
    }

    struct Profiles: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "profiles", abstract: "List the built-in CPU-model profiles and their MSRs.")

        func run() throws {
            for profile in CPUProfiles.all {
                print("\(profile.name) (\(profile.vendor)): \(profile.summary)")
                for rule in profile.rules {
                    let name = MSRCatalogue.name(rule.first).map { " \($0)" } ?? ""
                    print("  0x\(String(rule.first, radix: 16))\(name): \(rule.action.keyword)\(rule.origin.map { " — \($0)" } ?? "")")
                }
            }
        }
    }
}
