// Tests for PolicyParser: the documented format parses to the expected model,
// and every kind of mistake is reported, all at once, at file:line:column.

import SeededRandom
import Testing
@testable import MSRPolicy

/// The errors a policy text produces (empty if it parses).
func policyErrors(_ text: String, providers: Set<String>? = nil, profiles: Set<String>? = nil) -> [PolicyError] {
    do {
        _ = try PolicyParser.parse(text, file: "p.toml", knownProviders: providers, knownProfiles: profiles)
        return []
    } catch {
        return error.errors
    }
}

/// The one error a text must produce, checked for position and wording.
func expectOneError(_ text: String, line: Int, column: Int, containing fragment: String,
                    providers: Set<String>? = nil, profiles: Set<String>? = nil,
                    sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    let errors = policyErrors(text, providers: providers, profiles: profiles)
    #expect(errors.count == 1, "\(errors)", sourceLocation: sourceLocation)
    guard let error = errors.first else { return }
    #expect(error.location.line == line && error.location.column == column, "\(error)", sourceLocation: sourceLocation)
    #expect(error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
}

@Suite struct PolicyParserTests {
    static let documented = """
        profile = "intel-skylake-server"     # optional CPU-model profile

        [default]
        action = "gp"
        applies_to = "unknown"
        log = true

        [[rule]]
        msr = "MSR_PLATFORM_INFO"
        action = "emulate"
        value = 0x0000_0800_0000_1000
        scope = "vm"
        writable = 0x0
        reserved = "0xffff_0000_0000_0000"
        writes = "read-only"
        log = true

        [[rule]]
        range = ["0x4b564d00", "0x4b564dff"]
        action = "deny"

        [[rule]]
        msr = 0x611
        action = "computed"
        provider = "rapl-package-energy"

        [[rule]]
        range = [0x10, 16]
        action = "ignore"
        value = 7

        [[rule]]
        msr = "IA32_EFER"
        action = "kernel"

        [[rule]]
        msr = "0x1a2"
        action = "host"
        """

    @Test func documentedExampleParses() throws {
        let document = try PolicyParser.parse(Self.documented, file: "doc.toml",
                                              knownProviders: ["rapl-package-energy"], knownProfiles: ["intel-skylake-server"])
        let policy = document.policy
        #expect(document.profile == "intel-skylake-server")
        #expect(document.profileLocation == SourceLocation(file: "doc.toml", line: 1, column: 11))
        #expect(policy.defaultAction == .gp && policy.defaultScope == .unknown && policy.logDefault)
        #expect(policy.rules.count == 6)
        #expect(policy.rule(for: 0xce)?.action == .emulate(Emulation(
            initialValue: 0x0000_0800_0000_1000, scope: .vm, writableMask: 0, reservedMask: 0xffff_0000_0000_0000, writes: .readOnly)))
        #expect(policy.rule(for: 0xce)?.log == true)
        #expect(policy.rule(for: 0xce)?.location == SourceLocation(file: "doc.toml", line: 8, column: 1))
        #expect(policy.rule(for: 0x4b56_4d80)?.action == .deny)
        #expect(policy.rule(for: 0x4b56_4dff)?.location?.line == 18)
        #expect(policy.rule(for: 0x611)?.action == .computed(provider: "rapl-package-energy"))
        #expect(policy.rule(for: 0x10)?.action == .ignore(readValue: 7))
        #expect(policy.rule(for: 0x11) == nil)
        #expect(policy.rule(for: 0xc000_0080)?.action == .kernel)
        #expect(policy.rule(for: 0x1a2)?.action == .host)
    }

    @Test func emptyFileIsTheKernelDefault() throws {
        let policy = try PolicyParser.parse("# nothing\n", file: "e.toml").policy
        #expect(policy == MSRPolicy(rules: []))
    }

    @Test func syntaxErrorsAreLocated() {
        expectOneError("[default]\naction = = \"gp\"\n", line: 2, column: 10, containing: "TOML syntax")
        let big = policyErrors("[[rule]]\nmsr = 1\naction = \"ignore\"\nvalue = 0xffff_ffff_ffff_ffff\n")
        #expect(big.count == 1)
        #expect(big.first?.location.line == 4)
        #expect(big.first?.message.contains("must be written as strings") == true)
    }

    @Test func errorsPrintLikeACompiler() {
        let errors = policyErrors("bogus = 1\n")
        #expect(errors.map(\.description) == [
            "p.toml:1:1: error: unknown key \"bogus\" in the top level (expected: profile, default, rule)",
        ])
        let all = PolicyErrors(errors + errors)
        #expect(all.description.split(separator: "\n").count == 2)
    }

    @Test func unknownKeys() {
        expectOneError("profil = \"x\"\n", line: 1, column: 1, containing: "did you mean \"profile\"")
        expectOneError("[default]\n  acton = \"gp\"\n", line: 2, column: 3, containing: "unknown key \"acton\" in [default]")
        expectOneError("[[rule]]\nmsr = 1\naction = \"deny\"\nvalu = 3\n", line: 4, column: 1,
                       containing: "unknown key \"valu\" in [[rule]]; did you mean \"value\"")
    }

    @Test func unknownWords() {
        expectOneError("[[rule]]\nmsr = 1\naction = \"emulat\"\n", line: 3, column: 10,
                       containing: "unknown action \"emulat\"; did you mean \"emulate\"")
        expectOneError("[[rule]]\nmsr = 1\naction = \"emulate\"\nscope = \"cpu\"\n", line: 4, column: 9,
                       containing: "unknown scope \"cpu\"")
        expectOneError("[[rule]]\nmsr = 1\naction = \"emulate\"\nwrites = \"readonly\"\n", line: 4, column: 10,
                       containing: "did you mean \"read-only\"")
        expectOneError("[default]\naction = \"deny\"\n", line: 2, column: 10, containing: "unknown default action \"deny\"")
        expectOneError("[default]\napplies_to = \"everything\"\n", line: 2, column: 14, containing: "unknown applies_to value")
        expectOneError("[default]\nlog = \"yes\"\n", line: 2, column: 7, containing: "log must be true or false")
    }

    @Test func msrAndRangeExactlyOne() {
        expectOneError("[[rule]]\naction = \"deny\"\n", line: 1, column: 1, containing: "rule names no MSR")
        expectOneError("[[rule]]\nmsr = 1\nrange = [1, 2]\naction = \"deny\"\n", line: 3, column: 1,
                       containing: "both msr and range")
        expectOneError("[[rule]]\nrange = [1]\naction = \"deny\"\n", line: 2, column: 9, containing: "array of two MSRs")
        expectOneError("[[rule]]\nmsr = 1\n", line: 1, column: 1, containing: "rule has no action")
    }

    @Test func unknownMSRNameSuggestsTheClosest() {
        expectOneError("[[rule]]\nmsr = \"MSR_PLATFORM_INFOO\"\naction = \"deny\"\n", line: 2, column: 7,
                       containing: "unknown MSR name \"MSR_PLATFORM_INFOO\"; did you mean \"MSR_PLATFORM_INFO\"?")
    }

    @Test func numbers() {
        expectOneError("[[rule]]\nmsr = 0x1_0000_0000\naction = \"deny\"\n", line: 2, column: 7, containing: "does not fit in 32 bits")
        expectOneError("[[rule]]\nmsr = 1\naction = \"ignore\"\nvalue = -1\n", line: 4, column: 9, containing: "is negative")
        expectOneError("[[rule]]\nmsr = 1\naction = \"ignore\"\nvalue = \"0x1_0000_0000_0000_0000\"\n", line: 4, column: 9,
                       containing: "not a 64-bit number")
        expectOneError("[[rule]]\nmsr = 1\naction = \"ignore\"\nvalue = 1.5\n", line: 4, column: 9,
                       containing: "must be a number, found a floating-point number")
        #expect(policyErrors("[[rule]]\nmsr = \"0b101\"\naction = \"ignore\"\nvalue = \"18_446_744_073_709_551_615\"\n").isEmpty)
        #expect(PolicyNumbers.parse("0x_1") == nil && PolicyNumbers.parse("1__0") == nil && PolicyNumbers.parse("0o17") == 15)
    }

    @Test func invertedRange() {
        expectOneError("[[rule]]\nrange = [0x20, 0x10]\naction = \"deny\"\n", line: 2, column: 9,
                       containing: "inverted range: first 0x00000020 is above last 0x00000010")
    }

    @Test func overlapsNameBothRules() {
        let text = "[[rule]]\nrange = [0x10, 0x20]\naction = \"deny\"\n\n[[rule]]\nmsr = \"MSR_IA32_TSC\"\naction = \"kernel\"\n"
        expectOneError(text, line: 5, column: 1, containing: "rule overlaps the rule at p.toml:1:1: both cover 0x00000010 (MSR_IA32_TSC)")
        // Found even when the overlapping rules are not neighbours in index order.
        let three = "[[rule]]\nrange = [0, 100]\naction = \"deny\"\n[[rule]]\nmsr = 50\naction = \"deny\"\n[[rule]]\nmsr = 90\naction = \"deny\"\n"
        #expect(policyErrors(three).map(\.location.line) == [4, 7])
    }

    @Test func keysMustBelongToTheAction() {
        expectOneError("[[rule]]\nmsr = 1\naction = \"emulate\"\nprovider = \"x\"\n", line: 4, column: 1,
                       containing: "provider does not apply to action \"emulate\"")
        expectOneError("[[rule]]\nmsr = 1\naction = \"deny\"\nvalue = 1\n", line: 4, column: 1,
                       containing: "value does not apply to action \"deny\"; it takes: log")
        expectOneError("[[rule]]\nmsr = 1\naction = \"kernel\"\nlog = true\n", line: 4, column: 1,
                       containing: "log does not apply to action \"kernel\" (KVM handles those accesses")
    }

    @Test func emulateInitialValueMustNotSetReservedBits() {
        expectOneError("[[rule]]\nmsr = 1\naction = \"emulate\"\nvalue = 0x11\nreserved = 0x10\n", line: 4, column: 9,
                       containing: "initial value 0x11 sets reserved bits 0x10")
        // writable and reserved may overlap.
        #expect(policyErrors("[[rule]]\nmsr = 1\naction = \"emulate\"\nwritable = 0xff\nreserved = 0xf0\n").isEmpty)
    }

    @Test func computedNeedsAKnownProvider() {
        expectOneError("[[rule]]\nmsr = 0x611\naction = \"computed\"\n", line: 1, column: 1, containing: "needs provider")
        expectOneError("[[rule]]\nmsr = 0x611\naction = \"computed\"\nprovider = \"rapl-pkg-energy\"\n", line: 4, column: 12,
                       containing: "unknown value provider \"rapl-pkg-energy\"; did you mean \"rapl-package-energy\"?",
                       providers: ["rapl-package-energy", "tsc"])
        #expect(policyErrors("[[rule]]\nmsr = 0x611\naction = \"computed\"\nprovider = \"anything\"\n").isEmpty)
    }

    @Test func profilesAreCheckedWhenKnown() {
        expectOneError("profile = \"intel-skylake\"\n", line: 1, column: 11, containing: "unknown CPU-model profile",
                       profiles: ["intel-skylake-server"])
        #expect(policyErrors("profile = \"whatever\"\n").isEmpty)
        expectOneError("profile = 3\n", line: 1, column: 11, containing: "profile must be a non-empty string")
    }

    @Test func x2APICMSRsCannotGoToUserSpace() {
        expectOneError("[[rule]]\nrange = [0x700, 0x900]\naction = \"deny\"\n", line: 2, column: 9,
                       containing: "x2APIC registers, which KVM never filters")
        expectOneError("[[rule]]\nmsr = 0x830\naction = \"ignore\"\n", line: 2, column: 7, containing: "0x00000830 are x2APIC")
        #expect(policyErrors("[[rule]]\nrange = [0x800, 0x8ff]\naction = \"kernel\"\n").isEmpty)
    }

    @Test func kernelDefaultForAllIsAContradiction() {
        expectOneError("[default]\naction = \"kernel\"\napplies_to = \"all\"\n", line: 2, column: 10, containing: "contradiction")
        expectOneError("[default]\napplies_to = \"all\"\n", line: 2, column: 14, containing: "contradiction")
    }

    @Test func wrongShapes() {
        expectOneError("default = 3\n", line: 1, column: 11, containing: "default must be a table")
        expectOneError("rule = 3\n", line: 1, column: 8, containing: "rule must be an array of tables")
        expectOneError("[rule]\nmsr = 1\n", line: 1, column: 1, containing: "rule must be an array of tables")
        // Inline forms still parse (positions fall back to the enclosing key).
        let inline = "default = { action = \"ignore\" }\nrule = [{ msr = 1, action = \"deny\" }]\n"
        #expect(policyErrors(inline).isEmpty)
        expectOneError("rule = [{ msr = 1, action = \"dney\" }]\n", line: 1, column: 8, containing: "unknown action")
        expectOneError("default.action = \"nope\"\n", line: 1, column: 18, containing: "unknown default action")
    }

    @Test func allErrorsAreReportedInFileOrder() {
        let text = """
            profile = 7
            colour = "blue"

            [default]
            action = "gp"
            applies_to = "sometimes"

            [[rule]]
            msr = "MSR_NOPE_NOT_REAL"
            action = "deny"

            [[rule]]
            range = [0x4b564dff, 0x4b564d00]
            action = "ignore"
            provider = "x"

            [[rule]]
            msr = 0x611
            action = "computed"

            [[rule]]
            msr = 0x830
            action = "emulate"
            value = 0x3
            reserved = 0x1
            """
        let errors = policyErrors(text)
        let positions = errors.map { [$0.location.line, $0.location.column] }
        #expect(positions == [[1, 11], [2, 1], [6, 14], [9, 7], [15, 1], [17, 1], [22, 7], [24, 9]], "\(PolicyErrors(errors))")
        #expect(errors.allSatisfy { $0.location.file == "p.toml" })
        // A rule with a key error is not range-checked on top: one error per rule unless both are independent.
        #expect(!errors.contains { $0.message.contains("inverted") })
    }

    @Test func carriageReturnsAndMultilineStringsDoNotShiftPositions() {
        let crlf = "[[rule]]\r\nmsr = 1\r\naction = \"dney\"\r\n"
        expectOneError(crlf, line: 3, column: 10, containing: "unknown action")
        let multiline = "profile = \"\"\"\n[[rule]]\nmsr = 2\n\"\"\"\n[[rule]]\nmsr = 1\naction = \"dney\"\n"
        expectOneError(multiline, line: 7, column: 10, containing: "unknown action")
    }

    @Test func swiftBuiltPoliciesAreValidatedToo() {
        let policy = MSRPolicy(rules: [
            MSRRule(first: 0x10, last: 0x20, action: .deny),
            MSRRule(0x15, .kernel, log: true),
            MSRRule(0x830, .deny),
            MSRRule(0x611, .computed(provider: "nope")),
            MSRRule(0x1, .emulate(Emulation(initialValue: 1, reservedMask: 1))),
        ], defaultAction: .kernel, defaultScope: .all)
        let errors = policy.validationErrors(knownProviders: ["rapl-package-energy"])
        #expect(errors.count == 6, "\(PolicyErrors(errors))")
        #expect(errors.allSatisfy { $0.location.line == 0 && $0.description.hasPrefix("<policy>: error: ") })
        #expect(throws: PolicyErrors.self) { try policy.validated() }
        let good = MSRPolicy(rules: [MSRRule(0x10, .kernel)], defaultAction: .gp, defaultScope: .all)
        #expect(throws: Never.self) { try good.validated() }
    }
}

@Suite struct PolicyParserFuzzTests {
    /// Mangled policy files never crash the parser: they parse, or every error is located inside the file.
    @Test func mangledFilesGetLocatedErrors() {
        var generator = SeededGenerator(seed: 0xbad_f11e)
        let original = Array(PolicyParserTests.documented)
        let alphabet = Array("[]=\"'#,.-_x0123456789abcdefmsrangeactionvalue \n\t{}\\")
        for _ in 0..<600 {
            var text = original
            for _ in 0..<Int.random(in: 1...6, using: &generator) {
                let at = Int.random(in: 0..<text.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: text.remove(at: at)
                case 1: text.insert(alphabet.randomElement(using: &generator) ?? "x", at: at)
                default: text[at] = alphabet.randomElement(using: &generator) ?? "x"
                }
                if text.isEmpty { text = ["\n"] }
            }
            let source = String(text)
            let lines = source.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).count
            do {
                _ = try PolicyParser.parse(source, file: "fuzz.toml")
            } catch {
                #expect(!error.errors.isEmpty)
                for e in error.errors {
                    #expect(e.location.line >= 1 && e.location.line <= lines + 1 && e.location.column >= 1, "\(e)\n---\n\(source)")
                }
            }
        }
    }
}
