// Tests for PolicyWriter: what it writes parses back to the same policy.

import SeededRandom
import Testing
@testable import MSRPolicy

@Suite struct PolicyWriterTests {
    @Test func roundTripsRandomPolicies() throws {
        var generator = SeededGenerator(seed: 0x5eed_0001)
        for _ in 0..<300 {
            let policy = RandomPolicies.policy(&generator)
            let text = PolicyWriter.toml(policy)
            let parsed: MSRPolicy
            do {
                parsed = try PolicyParser.parse(text, file: "written.toml").policy
            } catch {
                Issue.record("written policy does not parse:\n\(error)\n---\n\(text)")
                continue
            }
            #expect(parsed.strippingLocations() == policy, "\(text)")
        }
    }

    @Test func writesReadableTOML() {
        let policy = MSRPolicy(rules: [
            MSRRule(0xce, .emulate(Emulation(initialValue: 0x800_0000_1000, scope: .vm, writableMask: 0,
                                             reservedMask: 0xffff_0000_0000_0000, writes: .readOnly)),
                    log: true, origin: "Intel SDM Vol. 4\nTable 2-12"),
            MSRRule(first: 0x4b56_4d00, last: 0x4b56_4dff, action: .deny),
            MSRRule(0x12345, .ignore(readValue: 0)),
        ], defaultAction: .ignore, defaultScope: .unknown, logDefault: true, profile: "intel-skylake-server")
        #expect(PolicyWriter.toml(policy) == """
            # Deflect MSR policy
            profile = "intel-skylake-server"

            [default]
            action = "ignore"
            applies_to = "unknown"
            log = true

            # origin: Intel SDM Vol. 4 Table 2-12
            [[rule]]
            msr = "MSR_PLATFORM_INFO"  # 0x000000ce
            action = "emulate"
            value = 0x800_0000_1000
            scope = "vm"
            writable = 0x0
            reserved = "0xffff_0000_0000_0000"
            writes = "read-only"
            log = true

            [[rule]]
            msr = 0x00012345
            action = "ignore"

            [[rule]]
            range = [0x4b564d00, 0x4b564dff]
            action = "deny"

            """)
    }

    @Test func quotesStrings() {
        #expect(PolicyWriter.quoted("a\"b\\c\nd\u{1}") == "\"a\\\"b\\\\c\\nd\\u0001\"")
    }
}
