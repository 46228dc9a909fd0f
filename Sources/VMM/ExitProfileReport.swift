// VMM: the exit profile for people and programs: the `--stats` tables (per
// exit kind, then the hottest ports, MSRs and hypercalls, with handling
// percentiles) and the `--stats-json` document.
import KVM
import KVMABI
import MSRPolicy

extension ExitProfile {
    /// Per exit kind: count, user-space handling p50/p90/p99/max and the time
    /// in KVM_RUN before the exit (p50/p99); then the `places` hottest places.
    public func table(places limit: Int = 15) -> String {
        var lines = [row("exits", "count", "handle p50", "p90", "p99", "max ns", "in KVM_RUN p50", "p99 µs")]
        let kinds = ExitKind.allCases.filter { self[$0].count > 0 }.sorted { self[$0].count > self[$1].count }
        for kind in kinds { lines.append(row(kind.description, self[kind])) }
        lines.append(row("total", "\(totalExits)", "", "", "", "", "", ""))
        let hottest = hottestPlaces(limit: limit)
        if !hottest.isEmpty {
            lines.append("")
            lines.append(row("hottest places", "count", "handle p50", "p90", "p99", "max ns", "in KVM_RUN p50", "p99 µs"))
            for (place, latencies) in hottest { lines.append(row(Self.name(place), latencies)) }
            if other.count > 0 { lines.append(row("other places", other)) }
        }
        return lines.joined(separator: "\n")
    }

    /// The place with the MSR's name when the catalogue knows it.
    static func name(_ place: ExitPlace) -> String {
        if case let .msr(index, _) = place, let name = MSRCatalogue.name(index) { return "\(place) \(name)" }
        return place.description
    }

    /// `--stats-json`: kinds and places with counts and percentiles in ns.
    public func json() -> String {
        func latency(_ h: LatencyHistogram) -> String {
            #"{"count":\#(h.count),"total_ns":\#(h.totalNanoseconds),"p50_ns":\#(h.p50),"p90_ns":\#(h.p90),"p99_ns":\#(h.p99),"max_ns":\#(h.max)}"#
        }
        func entry(_ key: String, _ l: ExitLatencies) -> String {
            #"{\#(key),"count":\#(l.count),"in_kvm_run":\#(latency(l.inKVMRun)),"handling":\#(latency(l.handling))}"#
        }
        let kinds = ExitKind.allCases.filter { self[$0].count > 0 }
            .map { entry(#""kind":"\#($0.description)""#, self[$0]) }
        let places = hottestPlaces().map { place, l -> String in
            let key: String
            switch place {
            case let .port(port, write): key = #""port":"\#(hex(port))","direction":"\#(write ? "write" : "read")""#
            case let .msr(index, write):
                let name = MSRCatalogue.name(index).map { #","name":"\#($0)""# } ?? ""
                key = #""msr":"\#(hex(index))","direction":"\#(write ? "write" : "read")"\#(name)"#
            case let .hypercall(number): key = #""hypercall":\#(number)"#
            }
            return entry(key, l)
        }
        return #"{"total_exits":\#(totalExits),"kinds":[\#(kinds.joined(separator: ","))],"places":[\#(places.joined(separator: ","))],"other_places":\#(entry(#""place":"other""#, other))}"#
    }

    private func row(_ name: String, _ l: ExitLatencies) -> String {
        row(name, "\(l.count)", "\(l.handling.p50)", "\(l.handling.p90)", "\(l.handling.p99)", "\(l.handling.max)",
            micro(l.inKVMRun.p50), micro(l.inKVMRun.p99))
    }

    private func row(_ name: String, _ count: String, _ p50: String, _ p90: String, _ p99: String, _ max: String,
                     _ run50: String, _ run99: String) -> String {
        pad(name, 44) + lpad(count, 10) + lpad(p50, 11) + lpad(p90, 8) + lpad(p99, 8) + lpad(max, 10)
            + lpad(run50, 16) + lpad(run99, 9)
    }

    private func micro(_ ns: UInt64) -> String { "\(ns / 1000).\(ns % 1000 / 100)" }
    private func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
    private func lpad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(1, n - s.count)) + s }
}
