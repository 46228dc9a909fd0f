// ControlAPI: the renderer of `deflect top`: rates from two consecutive
// `GET /stats` reports (counts are cumulative, so a rate is Δcount/Δt), and
// the screen or the plain line group that shows them. Pure: no terminal, no
// clock, no socket, so every layout decision is testable.

/// Rates over one refresh interval, computed from two consecutive reports.
public struct TopRates: Sendable, Equatable {
    /// One row of a rate table: what it is, its rate, its cumulative count and
    /// the cumulative latency percentiles (histograms cannot be subtracted,
    /// so the percentiles cover the whole run, not just the interval).
    public struct Row: Sendable, Equatable {
        public var label: String
        public var perSecond: Double
        public var total: UInt64
        public var handlingP50Ns: UInt64
        public var handlingP99Ns: UInt64
        public var inKvmRunP50Ns: UInt64
    }

    /// One MSR (index, catalogue name, direction) with its rate.
    public struct MSRRow: Sendable, Equatable {
        /// "0x2474", or "other" for the row beyond the VMM's cap.
        public var index: String
        public var name: String
        /// "rd" or "wr".
        public var direction: String
        public var rate: Row
    }

    /// One vCPU: exits per second and where its time went.
    public struct VCPURow: Sendable, Equatable {
        public var vcpu: Int
        public var perSecond: Double
        public var total: UInt64
        /// Percent of the interval inside KVM_RUN (guest plus kernel).
        public var inKvmRunPercent: Double
        /// Percent of the interval handling exits in user space.
        public var handlingPercent: Double
    }

    /// One of KVM's own cumulative counters, summed over the vCPUs.
    public struct KVMCounterRow: Sendable, Equatable {
        public var name: String
        public var perSecond: Double
        public var total: UInt64
    }

    public var state: VMState
    public var uptimeSeconds: Double
    /// The interval the rates cover.
    public var seconds: Double
    /// True when there was no usable previous report: rates are averages since the VM started.
    public var sinceStart: Bool
    public var totalPerSecond: Double
    public var totalExits: UInt64
    /// Sorted by rate, hottest first (ties: most exits, then label).
    public var kinds: [Row]
    public var msrs: [MSRRow]
    public var ports: [Row]
    public var hypercalls: [Row]
    public var vcpus: [VCPURow]
    /// Nil when the host has no binary statistics (`kvmUnavailableReason` says why).
    public var kvm: [KVMCounterRow]?
    public var kvmUnavailableReason: String?
}

/// A rendered terminal screen: at most `height` lines of at most `width`
/// characters each; `headings` are the indices of column-heading lines (a
/// terminal shows them in reverse video).
public struct TopScreen: Sendable, Equatable {
    public var lines: [String]
    public var headings: Set<Int>
}

/// `deflect top`'s rates and layouts.
public enum TopView {
    /// KVM's per-vCPU statistics that are cumulative counters (a rate of an
    /// instant or peak value would mean nothing), in the order shown.
    public static let kvmCounters = ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "signal_exits",
                                     "insn_emulation", "insn_emulation_fail", "hypercalls", "request_irq_exits",
                                     "irq_window_exits", "nmi_window_exits", "halt_wakeup", "pf_taken", "tlb_flush"]

    // MARK: Rates

    /// The rates between `previous` and `current`, `seconds` apart. With no
    /// previous report, or one from a VM that was restarted since (its
    /// uptime is larger), the rates are averages over the current uptime.
    /// A count smaller than before (a counter reset) counts from zero; a
    /// row that is new counts from zero.
    public static func rates(previous: StatsReport?, current: StatsReport, seconds: Double) -> TopRates {
        let usable = previous.flatMap { $0.uptimeSeconds <= current.uptimeSeconds ? $0 : nil }
        let interval = usable == nil ? current.uptimeSeconds : seconds
        func rate(_ now: UInt64, _ before: UInt64?) -> Double {
            guard interval > 0 else { return 0 }
            let before = before ?? 0
            return Double(now >= before ? now - before : now) / interval
        }
        func row(_ label: String, _ timing: ExitTiming, before: ExitTiming?) -> TopRates.Row {
            TopRates.Row(label: label, perSecond: rate(timing.count, before?.count), total: timing.count,
                         handlingP50Ns: timing.handling.p50Ns, handlingP99Ns: timing.handling.p99Ns,
                         inKvmRunP50Ns: timing.inKvmRun.p50Ns)
        }

        let kindsBefore = lookup(usable?.exits, key: \.kind)
        let kinds = current.exits.map { row($0.kind, $0.timing, before: kindsBefore[$0.kind]?.timing) }

        let portsBefore = lookup(usable?.ports) { PortKey(port: $0.port, direction: $0.direction) }
        let ports = current.ports.map { port in
            row(portLabel(port), port.timing, before: portsBefore[PortKey(port: port.port, direction: port.direction)]?.timing)
        }

        let msrsBefore = lookup(usable?.msrs) { MSRKey(index: $0.index, direction: $0.direction) }
        let msrs = current.msrs.map { msr in
            TopRates.MSRRow(index: msr.index?.description ?? "other", name: msr.name ?? "-",
                            direction: msr.direction == .read ? "rd" : "wr",
                            rate: row((msr.index?.description ?? "other") + " " + msr.direction.rawValue, msr.timing, before: msrsBefore[MSRKey(index: msr.index, direction: msr.direction)]?.timing))
        }

        let hypercallsBefore = lookup(usable?.hypercalls, key: \.number)
        let hypercalls = current.hypercalls.map { call in
            row([call.number.map { "nr \($0)" } ?? "other", call.name].compactMap { $0 }.joined(separator: " "),
                call.timing, before: hypercallsBefore[call.number]?.timing)
        }

        let vcpusBefore = lookup(usable?.vcpus, key: \.vcpu)
        let vcpus = current.vcpus.map { vcpu in
            let before = vcpusBefore[vcpu.vcpu]
            // Time is a rate too: ns per second of interval, as a percentage.
            // Clamped because the two reports are not taken at the exact
            // instants their uptimes name.
            func share(_ now: UInt64, _ then: UInt64?) -> Double { min(100, rate(now, then) / 1e7) }
            return TopRates.VCPURow(vcpu: vcpu.vcpu, perSecond: rate(vcpu.exits, before?.exits), total: vcpu.exits,
                                    inKvmRunPercent: share(vcpu.inKvmRunNs, before?.inKvmRunNs),
                                    handlingPercent: share(vcpu.handlingNs, before?.handlingNs))
        }

        var kvm: [TopRates.KVMCounterRow]?
        if current.kvm.available {
            let now = summedCounters(current.kvm), then = usable.map { summedCounters($0.kvm) }
            // Counters still at zero are left out, as kvm_stat does: they are most of them.
            kvm = kvmCounters.compactMap { name in
                guard let total = now[name], total > 0 else { return nil }
                return TopRates.KVMCounterRow(name: name, perSecond: rate(total, then?[name]), total: total)
            }
        }

        return TopRates(state: current.state, uptimeSeconds: current.uptimeSeconds, seconds: interval,
                        sinceStart: usable == nil, totalPerSecond: rate(current.totalExits, usable?.totalExits),
                        totalExits: current.totalExits, kinds: hottestFirst(kinds, \.self),
                        msrs: hottestFirst(msrs, \.rate), ports: hottestFirst(ports, \.self),
                        hypercalls: hottestFirst(hypercalls, \.self), vcpus: vcpus, kvm: kvm,
                        kvmUnavailableReason: current.kvm.available ? nil : (current.kvm.reason ?? "no reason given"))
    }

    private struct PortKey: Hashable { var port: Int?; var direction: AccessDirection }
    private struct MSRKey: Hashable { var index: Hex64?; var direction: AccessDirection }

    /// Rows by key; a duplicated key keeps its first row.
    private static func lookup<Row, Key: Hashable>(_ rows: [Row]?, key: (Row) -> Key) -> [Key: Row] {
        Dictionary((rows ?? []).map { (key($0), $0) }, uniquingKeysWith: { first, _ in first })
    }

    private static func summedCounters(_ stats: KVMBinaryStats) -> [String: UInt64] {
        stats.vcpus.reduce(into: [:]) { sum, vcpu in
            for (name, value) in vcpu { sum[name, default: 0] &+= value }
        }
    }

    private static func hottestFirst<Row>(_ rows: [Row], _ rate: KeyPath<Row, TopRates.Row>) -> [Row] {
        rows.sorted {
            let (a, b) = ($0[keyPath: rate], $1[keyPath: rate])
            if a.perSecond != b.perSecond { return a.perSecond > b.perSecond }
            if a.total != b.total { return a.total > b.total }
            return a.label < b.label
        }
    }

    private static func portLabel(_ row: PortRow) -> String {
        guard let port = row.port else { return "other" }
        return "0x" + String(port, radix: 16) + (row.direction == .read ? " in" : " out")
    }

    // MARK: Terminal screen

    /// The full-screen view for a terminal of `width` × `height` characters:
    /// a header, then the exit kinds, MSRs, ports, hypercalls, vCPUs and
    /// KVM's counters. Every line is cut at `width` (never wrapped); when the
    /// sections do not all fit, each keeps its heading and its hottest rows
    /// and the last visible row of a cut section (from two rows on) says how
    /// many are hidden.
    public static func screen(_ rates: TopRates, info: VMInfo?, width: Int, height: Int) -> TopScreen {
        guard width > 0, height > 0 else { return TopScreen(lines: [], headings: []) }
        var header = "\(info.map { basename($0.configuration.image) } ?? "VM")  \(rates.state.rawValue)  up \(duration(rates.uptimeSeconds))"
        if let info {
            let c = info.configuration
            header += "  paused \(duration(info.pausedSeconds))  \(c.mode), \(c.vcpus) vCPU\(c.vcpus == 1 ? "" : "s"), \(c.memoryMib) MiB"
        }
        let window = rates.sinceStart ? "average since start" : "last \(fixed(rates.seconds, 1)) s"
        let summary = "\(rate(rates.totalPerSecond)) exits/s (\(window)), \(rates.totalExits) exits in all; p50/p99 since start"

        var sections: [Section] = []
        let timingHeading = "  exits/s     total  handle p50  handle p99  KVM_RUN p50"
        func timingColumns(_ r: TopRates.Row) -> String {
            lpad(rate(r.perSecond), 9) + lpad("\(r.total)", 10) + lpad(nanoseconds(r.handlingP50Ns), 12)
                + lpad(nanoseconds(r.handlingP99Ns), 12) + lpad(nanoseconds(r.inKvmRunP50Ns), 13)
        }
        sections.append(Section(heading: pad("EXIT KIND", 16) + timingHeading,
                                rows: rates.kinds.map { pad($0.label, 16) + timingColumns($0) }))
        if !rates.msrs.isEmpty {
            sections.append(Section(heading: pad("MSR", 12) + pad("NAME", 28) + pad("DIR", 4) + timingHeading,
                                    rows: rates.msrs.map { pad($0.index, 12) + pad($0.name, 28) + pad($0.direction, 4) + timingColumns($0.rate) }))
        }
        if !rates.ports.isEmpty {
            sections.append(Section(heading: pad("PORT", 16) + timingHeading,
                                    rows: rates.ports.map { pad($0.label, 16) + timingColumns($0) }))
        }
        if !rates.hypercalls.isEmpty {
            sections.append(Section(heading: pad("HYPERCALL", 28) + timingHeading,
                                    rows: rates.hypercalls.map { pad($0.label, 28) + timingColumns($0) }))
        }
        if !rates.vcpus.isEmpty {
            sections.append(Section(heading: pad("VCPU", 8) + lpad("exits/s", 9) + lpad("total", 10) + lpad("KVM_RUN %", 11) + lpad("handling %", 12),
                                    rows: rates.vcpus.map {
                                        pad("\($0.vcpu)", 8) + lpad(rate($0.perSecond), 9) + lpad("\($0.total)", 10)
                                            + lpad(fixed($0.inKvmRunPercent, 1), 11) + lpad(fixed($0.handlingPercent, 1), 12)
                                    }))
        }
        if let kvm = rates.kvm {
            // Name/rate pairs packed across the width: the counters are many and short.
            let cells = kvm.map { pad($0.name, 20) + lpad(rate($0.perSecond), 9) + "/s" }
            let perLine = max(1, (width + 3) / 34)
            let rows = stride(from: 0, to: cells.count, by: perLine).map {
                cells[$0..<min($0 + perLine, cells.count)].joined(separator: "   ")
            }
            sections.append(Section(heading: "KVM (KVM_GET_STATS_FD, all vCPUs)", rows: rows.isEmpty ? ["no counters reported"] : rows))
        } else {
            sections.append(Section(heading: "KVM statistics", rows: ["not available: \(rates.kvmUnavailableReason ?? "no reason given")"]))
        }

        var lines = [header, summary]
        var headings: Set<Int> = []
        let budget = allocate(sections, lines: height - lines.count)
        for (section, shown) in zip(sections, budget) where shown > 0 {
            headings.insert(lines.count)
            lines.append(section.heading)
            let rows = shown - 1
            if rows < section.rows.count, rows >= 2 {
                lines += section.rows.prefix(rows - 1)
                lines.append("  … \(section.rows.count - rows + 1) more")
            } else {
                lines += section.rows.prefix(rows)
            }
        }
        return TopScreen(lines: lines.prefix(height).map { cut($0, width) }, headings: headings.filter { $0 < height })
    }

    private struct Section {
        var heading: String
        var rows: [String]
    }

    /// Lines per section (heading included; 0 = left out). First every
    /// section in order gets its heading and up to three rows, then the rest
    /// of the space goes to the sections in order (the hottest kinds of
    /// exit first).
    private static func allocate(_ sections: [Section], lines: Int) -> [Int] {
        var left = max(0, lines)
        var shown = [Int](repeating: 0, count: sections.count)
        for (i, section) in sections.enumerated() where left >= 2 {
            shown[i] = min(1 + min(section.rows.count, 3), left)
            left -= shown[i]
        }
        for (i, section) in sections.enumerated() where shown[i] > 0 {
            let more = min(1 + section.rows.count - shown[i], left)
            shown[i] += more
            left -= more
        }
        return shown
    }

    // MARK: Plain lines

    /// One group of lines per interval, for a log or a pipe: the timestamp,
    /// state and exits per second by kind on the first line, the three
    /// hottest MSRs and ports indented below it.
    public static func plain(_ rates: TopRates, timestamp: String) -> String {
        let kinds = rates.kinds.map { "\($0.label)=\(rate($0.perSecond))" }.joined(separator: " ")
        var lines = ["\(timestamp) \(rates.state.rawValue) up=\(fixed(rates.uptimeSeconds, 1))s exits/s=\(rate(rates.totalPerSecond))"
                     + (kinds.isEmpty ? "" : " " + kinds) + (rates.sinceStart ? " (average since start)" : "")]
        func place(_ label: String, _ r: TopRates.Row) -> String {
            "\(label) \(rate(r.perSecond))/s p50=\(nanoseconds(r.handlingP50Ns)) p99=\(nanoseconds(r.handlingP99Ns))"
        }
        if !rates.msrs.isEmpty {
            lines.append("  msrs: " + rates.msrs.prefix(3).map {
                place([$0.index, $0.name == "-" ? nil : $0.name, $0.direction].compactMap { $0 }.joined(separator: " "), $0.rate)
            }.joined(separator: ", "))
        }
        if !rates.ports.isEmpty {
            lines.append("  ports: " + rates.ports.prefix(3).map { place($0.label, $0) }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Formatting

    /// A rate: one decimal below 100 per second, whole numbers above.
    static func rate(_ value: Double) -> String { value < 99.95 ? fixed(value, 1) : fixed(value, 0) }

    /// A latency in the unit that keeps it short: 850ns, 7.2µs, 12.3ms, 1.20s.
    static func nanoseconds(_ ns: UInt64) -> String {
        switch ns {
        case 0: "-"
        case ..<1_000: "\(ns)ns"
        case ..<1_000_000: fixed(Double(ns) / 1e3, 1) + "µs"
        case ..<1_000_000_000: fixed(Double(ns) / 1e6, 1) + "ms"
        default: fixed(Double(ns) / 1e9, 2) + "s"
        }
    }

    /// "3m 12s", "2h 05m", or "12.3s" under a minute.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        if seconds < 60 { return fixed(seconds, 1) + "s" }
        let whole = Int(seconds)
        if whole < 3600 { return "\(whole / 60)m \(twoDigits(whole % 60))s" }
        return "\(whole / 3600)h \(twoDigits(whole / 60 % 60))m"
    }

    /// `value` with `decimals` digits after the point, rounded half up (no Foundation).
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "?" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return value < 0 ? "-inf" : "inf" }
        let units = UInt64(scaled), factor = UInt64(scale)
        let sign = value < 0 && units > 0 ? "-" : ""
        guard decimals > 0 else { return sign + "\(units)" }
        let fraction = String(units % factor)
        return sign + "\(units / factor)." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }

    private static func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    private static func basename(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    private static func cut(_ line: String, _ width: Int) -> String {
        line.count <= width ? line : String(line.prefix(width))
    }

    private static func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
    private static func lpad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(1, n - s.count)) + s }
}
