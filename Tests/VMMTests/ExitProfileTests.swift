// VMMTests: exit profiling: latency percentiles per kind and per place, the
// cap on distinct places, merging vCPU profiles.
import Foundation
import KVM
import Testing
@testable import VMM

@Suite("Exit profile")
struct ExitProfileTests {
    @Test func percentilesFollowTheRecordedDistribution() {
        var histogram = LatencyHistogram(precise: true)
        for ns in 1...1000 { histogram.record(UInt64(ns) * 1000) }   // 1 µs … 1 ms, uniform
        #expect(histogram.count == 1000)
        // Two significant digits: within 1 %.
        #expect(abs(Double(histogram.p50) - 500_000) / 500_000 < 0.01)
        #expect(abs(Double(histogram.p90) - 900_000) / 900_000 < 0.01)
        #expect(abs(Double(histogram.p99) - 990_000) / 990_000 < 0.01)
        #expect(abs(Double(histogram.max) - 1_000_000) / 1_000_000 < 0.01)
        #expect(histogram.mean == 500_500)
    }

    @Test func outOfRangeValuesAreClampedNotLost() {
        var histogram = LatencyHistogram(precise: false)
        histogram.record(0)
        histogram.record(UInt64.max)
        #expect(histogram.count == 2)
        #expect(histogram.max >= LatencyHistogram.highestTrackable * 9 / 10)
        #expect(LatencyHistogram(precise: true).p99 == 0)
    }

    @Test func placesAreCappedAndTheRestIsOther() {
        var profile = ExitProfile()
        for port in 0..<(ExitProfile.maxPlaces + 100) {
            profile.record(.ioOut, place: .port(UInt16(port), write: true), runNanoseconds: 100, handlingNanoseconds: 10)
        }
        profile.record(.ioOut, place: .port(0, write: true), runNanoseconds: 100, handlingNanoseconds: 10)
        #expect(profile.places.count == ExitProfile.maxPlaces)
        #expect(profile.other.count == 100)
        #expect(profile[.ioOut].count == UInt64(ExitProfile.maxPlaces + 101))
        #expect(profile.hottestPlaces(limit: 1).first?.place == .port(0, write: true))
        #expect(profile.hottestPlaces(limit: 1).first?.latencies.count == 2)
    }

    @Test func mergingAddsKindsAndPlaces() {
        var a = ExitProfile(), b = ExitProfile()
        a.record(.readMSR, place: .msr(0x10, write: false), runNanoseconds: 5_000, handlingNanoseconds: 200)
        b.record(.readMSR, place: .msr(0x10, write: false), runNanoseconds: 7_000, handlingNanoseconds: 400)
        b.record(.hypercall, place: .hypercall(12), runNanoseconds: 9_000, handlingNanoseconds: 900)
        a.merge(b)
        #expect(a[.readMSR].count == 2)
        #expect(a.places[.msr(0x10, write: false)]?.handling.totalNanoseconds == 600)
        #expect(a.places[.hypercall(12)]?.count == 1)
        #expect(a.totalExits == 3)
    }
}

@Suite("Exit profile report")
struct ExitProfileReportTests {
    @Test func tableAndJSONShowKindsPlacesAndPercentiles() throws {
        var profile = ExitProfile()
        for i in 0..<100 {
            profile.record(.ioOut, place: .port(0x3F8, write: true), runNanoseconds: 10_000, handlingNanoseconds: UInt64(1000 + i))
        }
        profile.record(.readMSR, place: .msr(0xCE, write: false), runNanoseconds: 20_000, handlingNanoseconds: 5000)
        let table = profile.table()
        #expect(table.contains("io-out"))
        #expect(table.contains("port 0x3f8 out"))
        #expect(table.contains("msr 0xce rd MSR_PLATFORM_INFO"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(profile.json().utf8)) as? [String: Any])
        #expect(json["total_exits"] as? Int == 101)
        let places = try #require(json["places"] as? [[String: Any]])
        #expect(places.first?["port"] as? String == "0x3f8")
        let handling = try #require(places.first?["handling"] as? [String: Any])
        #expect((handling["p50_ns"] as? Int).map { (1000...1100).contains($0) } == true)
        #expect(places.contains { $0["name"] as? String == "MSR_PLATFORM_INFO" })
    }
}
