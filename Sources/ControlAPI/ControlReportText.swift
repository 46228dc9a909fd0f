// ControlAPI: the readable output of `deflect ctl` (tables in the layout of
// `deflect run --stats`, with the percentiles the API adds).

/// Text renderings of the API's reports.
public enum ControlReportText {
    /// `deflect ctl stats`: exit kinds, then ports, MSRs, hypercalls, vCPUs
    /// and KVM's own counters; empty sections are left out.
    public static func stats(_ report: StatsReport) -> String {
        var sections = [
            "state \(report.state.rawValue), up \(seconds(report.uptimeSeconds)), \(report.totalExits) exits",
            timingTable(title: "exits", rows: report.exits.map { ($0.kind, $0.timing) }, total: report.totalExits),
        ]
        if !report.ports.isEmpty {
            sections.append(timingTable(title: "ports", rows: report.ports.map {
                (($0.port.map { "0x" + String($0, radix: 16) } ?? "other") + " " + ($0.direction == .read ? "in" : "out"), $0.timing)
            }))
        }
        if !report.msrs.isEmpty {
            sections.append(timingTable(title: "msrs", rows: report.msrs.map {
                ([$0.index?.description ?? "other", $0.name, $0.direction.rawValue].compactMap { $0 }.joined(separator: " "), $0.timing)
            }))
        }
        if !report.hypercalls.isEmpty {
            sections.append(timingTable(title: "hypercalls", rows: report.hypercalls.map {
                ([$0.number.map { "nr \($0)" } ?? "other", $0.name].compactMap { $0 }.joined(separator: " "), $0.timing)
            }))
        }
        if !report.vcpus.isEmpty {
            var lines = [pad("vcpu", 8) + lpad("exits", 12) + lpad("in KVM_RUN µs", 16) + lpad("handle µs", 12)]
            for row in report.vcpus {
                lines.append(pad("\(row.vcpu)", 8) + lpad("\(row.exits)", 12) + lpad(micro(row.inKvmRunNs), 16) + lpad(micro(row.handlingNs), 12))
            }
            sections.append(lines.joined(separator: "\n"))
        }
        sections.append(kvmStats(report.kvm))
        return sections.joined(separator: "\n\n")
    }

    /// KVM's binary statistics, or why there are none.
    static func kvmStats(_ kvm: KVMBinaryStats) -> String {
        guard kvm.available else { return "KVM statistics: not available (\(kvm.reason ?? "no reason given"))" }
        var lines = ["KVM statistics (KVM_GET_STATS_FD)"]
        lines += kvm.vm.sorted { $0.key < $1.key }.map { "  vm \($0.key) \($0.value)" }
        for (vcpu, values) in kvm.vcpus.enumerated() {
            lines += values.sorted { $0.key < $1.key }.map { "  vcpu\(vcpu) \($0.key) \($0.value)" }
        }
        return lines.joined(separator: "\n")
    }

    /// `deflect ctl vm`: the state, the configuration, then the PCI devices.
    public static func vmDetails(_ info: VMInfo) -> String {
        let configuration = info.configuration
        var lines = [vm(info),
                     "image \(configuration.image) (\(configuration.mode)), \(configuration.memoryMib) MiB, \(configuration.vcpus) vCPU(s), platform \(configuration.platform), cpu \(configuration.cpuSpec)"]
        if let policy = configuration.policyPath { lines.append("policy \(policy)") }
        if info.devices.isEmpty { lines.append("no PCI devices") }
        for device in info.devices {
            var line = "\(device.address) \(device.type)"
            if let backing = device.backing { line += " \(backing)" }
            if device.readOnly == true { line += " (read-only)" }
            line += ", driver status 0x\(String(device.driverStatus, radix: 16))"
            if let broken = device.broken { line += ", needs reset: \(broken)" }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    /// `deflect ctl cpuid`: the model, its features, then vCPU 0's table.
    public static func cpuid(_ report: CPUIDReport) -> String {
        func hex8(_ value: Hex64) -> String {
            let digits = String(value.value, radix: 16)
            return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
        }
        var lines = ["model \(report.model) (\(report.spec)), vendor \(report.vendor)",
                     "features (\(report.features.count)): \(report.features.joined(separator: " "))",
                     "function index:  eax      ebx      ecx      edx"]
        for leaf in report.leaves {
            lines.append("\(hex8(leaf.function)) \(hex8(leaf.index)): \(hex8(leaf.eax)) \(hex8(leaf.ebx)) \(hex8(leaf.ecx)) \(hex8(leaf.edx))")
        }
        return lines.joined(separator: "\n")
    }

    public static func msrs(_ report: MSRTableReport) -> String {
        var lines = [pad("msr", 12) + pad("name", 28) + lpad("reads", 9) + lpad("writes", 9) + lpad("#GP", 6) + "  "
                     + pad("last value", 20) + pad("last rip", 20) + "outcomes"]
        for row in report.msrs {
            let outcomes = row.outcomes.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.append(pad(row.index.description, 12) + pad(row.name ?? "-", 28) + lpad("\(row.reads)", 9) + lpad("\(row.writes)", 9)
                         + lpad("\(row.gpCount)", 6) + "  " + pad(row.lastValue?.description ?? "-", 20)
                         + pad(row.lastRip?.description ?? "-", 20) + outcomes)
        }
        if report.otherAccesses > 0 { lines.append("other MSRs (beyond the table's cap): \(report.otherAccesses) accesses") }
        return lines.joined(separator: "\n")
    }

    /// `deflect ctl registers N`: the layout of the registers Deflect prints
    /// when a run ends badly.
    public static func registers(_ report: VCPURegistersReport) -> String {
        let g = report.general
        let s = report.special
        func row(_ pairs: [(String, Hex64)]) -> String {
            pairs.map { pad($0.0, 4) + hex16($0.1.value) }.joined(separator: "  ")
        }
        func segment(_ name: String, _ r: SegmentReport) -> String {
            pad(name, 4) + "sel=0x" + String(r.selector, radix: 16) + " base=" + r.base.description + " limit=" + r.limit.description
                + " type=\(r.type) dpl=\(r.dpl)" + (r.present ? " p" : "") + (r.s ? " s" : "") + (r.l ? " l" : "")
                + (r.db ? " db" : "") + (r.g ? " g" : "") + (r.unusable ? " unusable" : "")
        }
        var lines = ["vcpu \(report.vcpu)",
                     row([("rax", g.rax), ("rbx", g.rbx), ("rcx", g.rcx), ("rdx", g.rdx)]),
                     row([("rsi", g.rsi), ("rdi", g.rdi), ("rsp", g.rsp), ("rbp", g.rbp)]),
                     row([("r8", g.r8), ("r9", g.r9), ("r10", g.r10), ("r11", g.r11)]),
                     row([("r12", g.r12), ("r13", g.r13), ("r14", g.r14), ("r15", g.r15)]),
                     row([("rip", g.rip), ("rfl", g.rflags)]),
                     row([("cr0", s.cr0), ("cr2", s.cr2), ("cr3", s.cr3), ("cr4", s.cr4)]),
                     row([("cr8", s.cr8), ("efer", s.efer), ("apic", s.apicBase)])]
        lines += [("cs", s.cs), ("ds", s.ds), ("es", s.es), ("fs", s.fs), ("gs", s.gs), ("ss", s.ss), ("tr", s.tr), ("ldt", s.ldt)]
            .map { segment($0.0, $0.1) }
        lines.append("gdt base=\(s.gdt.base) limit=0x\(String(s.gdt.limit, radix: 16))  idt base=\(s.idt.base) limit=0x\(String(s.idt.limit, radix: 16))")
        return lines.joined(separator: "\n")
    }

    /// One line for `GET /vm` (after pause, resume, shutdown).
    public static func vm(_ info: VMInfo) -> String {
        "state \(info.state.rawValue), up \(seconds(info.uptimeSeconds)), paused \(seconds(info.pausedSeconds)) in all"
    }

    // MARK: Table helpers

    /// The `--stats` table with percentile columns.
    static func timingTable(title: String, rows: [(String, ExitTiming)], total: UInt64? = nil) -> String {
        var lines = [pad(title, 24) + lpad("count", 10) + lpad("handle µs", 12) + lpad("mean ns", 10) + lpad("p50 ns", 9)
                     + lpad("p90 ns", 9) + lpad("p99 ns", 9) + lpad("max ns", 10) + lpad("in KVM_RUN µs", 15) + lpad("p99 ns", 10)]
        for (name, t) in rows {
            let h = t.handling
            lines.append(pad(name, 24) + lpad("\(t.count)", 10) + lpad(micro(h.totalNs), 12) + lpad("\(h.meanNs)", 10)
                         + lpad("\(h.p50Ns)", 9) + lpad("\(h.p90Ns)", 9) + lpad("\(h.p99Ns)", 9) + lpad("\(h.maxNs)", 10)
                         + lpad(micro(t.inKvmRun.totalNs), 15) + lpad("\(t.inKvmRun.p99Ns)", 10))
        }
        if let total { lines.append(pad("total", 24) + lpad("\(total)", 10)) }
        return lines.joined(separator: "\n")
    }

    static func micro(_ ns: UInt64) -> String {
        let tenths = ns / 100
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func seconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }

    static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }

    static func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
    static func lpad(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(1, n - s.count)) + s }
}
