// StatisticsTests.swift — per-MSR accounting: counting, first/last values,
// outcomes, the tracking bound, merging, the text table and the JSON document
// (parsed back with Foundation to prove it is valid).

import Testing
import Foundation
@testable import MSRPolicy

@Suite struct StatisticsTests {
    func names(_ index: UInt32) -> String? {
        switch index {
        case 0x10: return "IA32_TIME_STAMP_COUNTER"
        case 0x35: return "MSR_CORE_THREAD_COUNT"
        case 0x99: return "ODD \"quoted\" \\ name\n\t\u{1}é"
        default: return nil
        }
    }

    @Test func recordsCountsValuesOutcomesAndRIP() throws {
        var s = MSRStatistics()
        s.record(index: 0x35, access: .read, value: 0x10002, outcome: "computed", rip: 0x1000)
        s.record(index: 0x10, access: .write(5), value: 5, outcome: "emulated", rip: 0x2000)
        s.record(index: 0x35, access: .read, value: 0x10003, outcome: "computed", rip: nil)
        s.record(index: 0x35, access: .write(1), value: 1, outcome: "read-only-gp", rip: 0x1010)
        #expect(s.entries.map(\.index) == [0x10, 0x35])
        let e = try #require(s.entry(for: 0x35))
        #expect(e.reads == 2 && e.writes == 1)
        #expect(e.firstValue == 0x10002 && e.lastValue == 1)
        #expect(e.firstReadValue == 0x10002)
        #expect(s.entry(for: 0x10)?.firstReadValue == 0)         // never read
        s.record(index: 0x10, access: .read, value: 77, outcome: "emulated", rip: nil)
        s.record(index: 0x10, access: .read, value: 78, outcome: "emulated", rip: nil)
        #expect(s.entry(for: 0x10)?.firstReadValue == 77)        // first read, after a write
        #expect(e.outcomes == ["computed": 2, "read-only-gp": 1])
        #expect(e.lastRIP == 0x1010)
        #expect(e.outcomeSummary == "computed×2 read-only-gp×1")
        #expect(s.other.isEmpty)
        #expect(s.entry(for: 0x11) == nil)
    }

    @Test func anIndependentCopyIsEqualAndStaysPutWhileTheOriginalGoesOn() {
        var s = MSRStatistics()
        s.record(index: 0x10, access: .read, value: 1, outcome: "emulated", rip: 0x100)
        s.record(index: 0x20, access: .write(2), value: 2, outcome: "ignored", rip: nil)
        let copy = s.independentCopy()
        #expect(copy == s)
        #expect(copy.entry(for: 0x20)?.writes == 1)
        s.record(index: 0x10, access: .read, value: 3, outcome: "emulated", rip: 0x104)
        s.record(index: 0x30, access: .read, value: 4, outcome: "default-gp", rip: nil)
        #expect(copy.entry(for: 0x10)?.outcomes == ["emulated": 1] && copy.entry(for: 0x10)?.lastValue == 1)
        #expect(copy.entry(for: 0x30) == nil)
        #expect(s.entry(for: 0x10)?.outcomes == ["emulated": 2])
    }

    @Test func trackingIsBounded() {
        var s = MSRStatistics()
        let n = MSRStatistics.maxTrackedMSRs
        for i in 0..<(n + 100) {
            s.record(index: UInt32(i) &* 7919, access: i % 2 == 0 ? .read : .write(1), value: 1, outcome: "default-gp", rip: nil)
        }
        // Already-tracked MSRs still count individually once the table is full.
        s.record(index: 0, access: .read, value: 9, outcome: "default-gp", rip: nil)
        #expect(s.entries.count == n)
        #expect(s.other.reads + s.other.writes == 100)
        #expect(s.other.outcomes == ["default-gp": 100])
        #expect(s.entry(for: 0)?.reads == 2)
        #expect(s.table(name: { _ in nil }).contains("(untracked MSRs)"))
    }

    @Test func mergeSumsAndKeepsFirstFromReceiverLastFromIncoming() throws {
        var a = MSRStatistics(), b = MSRStatistics()
        a.record(index: 0x10, access: .read, value: 100, outcome: "emulated", rip: 0xA)
        a.record(index: 0x20, access: .write(3), value: 3, outcome: "ignored", rip: 0xB)
        b.record(index: 0x10, access: .write(200), value: 200, outcome: "emulated", rip: 0xC)
        b.record(index: 0x10, access: .write(1 << 63), value: 1 << 63, outcome: "reserved-gp", rip: nil)
        b.record(index: 0x30, access: .read, value: 7, outcome: "default-ignore", rip: 0xD)
        var merged = a
        merged.merge(b)
        #expect(merged.entries.map(\.index) == [0x10, 0x20, 0x30])
        let e = try #require(merged.entry(for: 0x10))
        #expect(e.reads == 1 && e.writes == 2)
        #expect(e.firstValue == 100 && e.lastValue == 1 << 63)
        #expect(e.outcomes == ["emulated": 2, "reserved-gp": 1])
        #expect(e.lastRIP == 0xC)   // the last RIP b knew (its final access had none)
        #expect(merged.entry(for: 0x30)?.lastRIP == 0xD)
        #expect(merged.entry(for: 0x10)?.firstReadValue == 100)
        var writesOnly = MSRStatistics()
        writesOnly.record(index: 0x10, access: .write(1), value: 1, outcome: "emulated", rip: nil)
        writesOnly.merge(a)
        #expect(writesOnly.entry(for: 0x10)?.firstReadValue == 100)   // the first read came from the merged-in set
        // Merging an empty set changes nothing; merging into an empty set copies.
        var copy = merged
        copy.merge(MSRStatistics())
        #expect(copy == merged)
        var empty = MSRStatistics()
        empty.merge(merged)
        #expect(empty == merged)
    }

    @Test func mergeRespectsTheBound() {
        var a = MSRStatistics(), b = MSRStatistics()
        for i in 0..<MSRStatistics.maxTrackedMSRs { a.record(index: UInt32(i), access: .read, value: 0, outcome: "x", rip: nil) }
        for i in 0..<10 { b.record(index: 100_000 + UInt32(i), access: .write(0), value: 0, outcome: "y", rip: nil) }
        b.record(index: 5, access: .read, value: 0, outcome: "x", rip: nil)
        a.merge(b)
        #expect(a.entries.count == MSRStatistics.maxTrackedMSRs)
        #expect(a.other.writes == 10)
        #expect(a.other.outcomes == ["y": 10])
        #expect(a.entry(for: 5)?.reads == 2)
    }

    @Test func tableIsAligned() {
        var s = MSRStatistics()
        s.record(index: 0x10, access: .read, value: 0xFFFF_FFFF_FFFF, outcome: "emulated", rip: nil)
        s.record(index: 0x35, access: .read, value: 2, outcome: "computed", rip: nil)
        s.record(index: 0xC000_0080, access: .write(0x500), value: 0x500, outcome: "kernel-refused", rip: nil)
        for _ in 0..<1234 { s.record(index: 0x35, access: .read, value: 2, outcome: "computed", rip: nil) }
        let lines = s.table(name: names).split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("MSR"))
        #expect(lines[2].contains("MSR_CORE_THREAD_COUNT") && lines[2].contains("1235"))
        #expect(lines[3].contains("0xc0000080") && lines[3].contains(" - "))   // unnamed MSR
        // Columns start at the same offset on every line: check the READS and OUTCOME columns.
        let readsEnd = lines[0].range(of: "READS")!.upperBound.utf16Offset(in: lines[0])
        for line in lines.dropFirst() {
            let chars = Array(line.utf16)
            #expect(chars.count > readsEnd)
            #expect(chars[readsEnd - 1] != UInt16(UInt8(ascii: " ")))            // right-aligned digit
            #expect(chars[readsEnd] == UInt16(UInt8(ascii: " ")))
            #expect(!line.hasSuffix(" "))
        }
        let outcomeColumn = lines[0].range(of: "OUTCOME")!.lowerBound.utf16Offset(in: lines[0])
        #expect(lines[1].utf16.count > outcomeColumn)
        #expect(String(lines[1].suffix(8)) == "emulated×1".suffix(8))
    }

    @Test func jsonIsValidAndComplete() throws {
        var s = MSRStatistics()
        s.record(index: 0x10, access: .read, value: .max, outcome: "emulated", rip: 0xFFFF_FFFF_8100_0000)
        s.record(index: 0x99, access: .write(1), value: 1, outcome: "weird \"outcome\"\n", rip: nil)
        let text = s.json(name: names)
        #expect(!text.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let msrs = try #require(object["msrs"] as? [[String: Any]])
        #expect(msrs.count == 2)
        #expect(msrs[0]["msr"] as? String == "0x10")
        #expect(msrs[0]["index"] as? Int == 16)
        #expect(msrs[0]["name"] as? String == "IA32_TIME_STAMP_COUNTER")
        #expect(msrs[0]["first"] as? String == "0xffffffffffffffff")   // exact, as a string
        #expect(msrs[0]["lastRIP"] as? String == "0xffffffff81000000")
        #expect(msrs[0]["firstRead"] as? String == "0xffffffffffffffff")
        #expect(msrs[1]["firstRead"] is NSNull)
        #expect((msrs[0]["outcomes"] as? [String: Any])?["emulated"] as? Int == 1)
        #expect(msrs[1]["name"] as? String == "ODD \"quoted\" \\ name\n\t\u{1}é")   // escapes round-trip
        #expect(msrs[1]["lastRIP"] is NSNull)
        #expect((msrs[1]["outcomes"] as? [String: Any])?["weird \"outcome\"\n"] as? Int == 1)
        #expect(msrs[1]["writes"] as? Int == 1)
        let other = try #require(object["other"] as? [String: Any])
        #expect(other["reads"] as? Int == 0)
        // Unnamed MSRs are null, and an empty record is still a document.
        var unnamed = MSRStatistics()
        unnamed.record(index: 0x1234, access: .read, value: 0, outcome: "denied", rip: nil)
        let parsed = try JSONSerialization.jsonObject(with: Data(unnamed.json(name: { _ in nil }).utf8)) as? [String: Any]
        #expect(((parsed?["msrs"] as? [[String: Any]])?.first?["name"]) is NSNull)
        #expect(try JSONSerialization.jsonObject(with: Data(MSRStatistics().json(name: names).utf8)) is [String: Any])
    }

    @Test func recordsWhatTheRuntimeDecides() throws {
        let r = try MSRRuntime(policy: MSRPolicy(rules: [MSRRule(0x100, .emulate(Emulation(reservedMask: 1)))], defaultAction: .gp),
                               vcpuCount: 1, hostReader: nil, clock: { 0 })
        var s = MSRStatistics()
        for (access, value) in [(MSRAccess.write(2), UInt64(2)), (.write(1), 1), (.read, 0)] {
            let d = r.handle(index: 0x100, access: access, vcpu: 0, reasons: .filter)
            s.record(index: 0x100, access: access, value: access == .read ? d.value : value, outcome: d.outcome.rawValue, rip: 0x7C00)
        }
        #expect(s.entry(for: 0x100)?.outcomes == ["emulated": 2, "reserved-gp": 1])
        #expect(s.entry(for: 0x100)?.lastValue == 2)
    }
}

@Suite("MSR statistics, repeated accesses")
struct StatisticsRepeatTests {
    @Test func alternatingOutcomesAndMSRsCountExactly() {
        var s = MSRStatistics()
        for i in 0..<1000 {
            let index: UInt32 = i % 3 == 0 ? 0x10 : 0x175
            let outcome = i % 5 == 0 ? "denied" : (i % 7 == 0 ? "default-gp" : "emulated")
            s.record(index: index, access: i % 2 == 0 ? .read : .write(UInt64(i)), value: UInt64(i), outcome: outcome, rip: nil)
        }
        var other = MSRStatistics()
        other.record(index: 0x175, access: .read, value: 1, outcome: "new-outcome", rip: nil)
        s.merge(other)
        s.record(index: 0x175, access: .read, value: 2, outcome: "emulated", rip: nil)
        s.record(index: 0x175, access: .read, value: 3, outcome: "new-outcome", rip: nil)
        var expected: [UInt32: [String: UInt64]] = [:]
        for i in 0..<1000 {
            let index: UInt32 = i % 3 == 0 ? 0x10 : 0x175
            let outcome = i % 5 == 0 ? "denied" : (i % 7 == 0 ? "default-gp" : "emulated")
            expected[index, default: [:]][outcome, default: 0] += 1
        }
        expected[0x175, default: [:]]["new-outcome", default: 0] += 2
        expected[0x175, default: [:]]["emulated", default: 0] += 1
        #expect(s.entry(for: 0x10)?.outcomes == expected[0x10])
        #expect(s.entry(for: 0x175)?.outcomes == expected[0x175])
        #expect(s.entry(for: 0x175)?.lastValue == 3)
    }
}
