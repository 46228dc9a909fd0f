// ControlAPI: `GET /metrics`: the live statistics in the Prometheus text
// format 0.0.4, emitted by swift-prometheus (names, label escaping, TYPE and
// HELP lines) from a registry filled fresh from each snapshot.
import Prometheus

/// Turns a `StatsReport` into Prometheus metrics.
///
/// Percentiles are gauges with a `quantile` label (`1` is the maximum), as a
/// summary would carry them; sums are `*_seconds_total` counters. Times are
/// in seconds, the Prometheus convention.
public enum PrometheusExposition {
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func text(info: VMInfo, stats: StatsReport) -> String {
        let registry = PrometheusCollectorRegistry()
        let metrics = Metrics(registry: registry)
        for state in VMState.allCases {
            metrics.gauge("deflect_vm_state", "1 for the state the VM is in, 0 for the others.", [("state", state.rawValue)])
                .set(to: state == info.state ? 1.0 : 0.0)
        }
        metrics.gauge("deflect_vm_uptime_seconds", "Seconds since the VM started.", []).set(info.uptimeSeconds)
        metrics.gauge("deflect_vm_paused_seconds", "Seconds the VM spent paused.", []).set(info.pausedSeconds)
        metrics.gauge("deflect_vm_vcpus", "Number of vCPUs.", []).set(Double(info.configuration.vcpus))

        for row in stats.exits {
            metrics.timing("deflect_exit", "exits", [("kind", row.kind)], row.timing)
        }
        for row in stats.ports {
            metrics.timing("deflect_port", "port exits", [("port", row.port.map { "0x" + String($0, radix: 16) } ?? "other"),
                                                           ("direction", row.direction.rawValue)], row.timing)
        }
        for row in stats.msrs {
            metrics.timing("deflect_msr", "MSR exits", [("msr", row.index?.description ?? "other"), ("name", row.name ?? ""),
                                                       ("direction", row.direction.rawValue)], row.timing)
        }
        for row in stats.hypercalls {
            metrics.timing("deflect_hypercall", "hypercall exits", [("nr", row.number.map { "\($0)" } ?? "other"),
                                                                   ("name", row.name ?? "")], row.timing)
        }
        for row in stats.vcpus {
            let labels = [("vcpu", "\(row.vcpu)")]
            metrics.counter("deflect_vcpu_exits_total", "Exits that reached user space, per vCPU.", labels).increment(by: Double(row.exits))
            metrics.counter("deflect_vcpu_in_kvm_run_seconds_total", "Time inside KVM_RUN, per vCPU.", labels)
                .increment(by: seconds(row.inKvmRunNs))
            metrics.counter("deflect_vcpu_handling_seconds_total", "Time handling exits in user space, per vCPU.", labels)
                .increment(by: seconds(row.handlingNs))
        }
        metrics.gauge("deflect_kvm_stats_available", "1 if the host offers KVM_GET_STATS_FD.", []).set(to: stats.kvm.available ? 1.0 : 0.0)
        for (name, value) in stats.kvm.vm.sorted(by: { $0.key < $1.key }) {
            metrics.gauge("deflect_kvm_vm_stat", "KVM's own VM statistics (KVM_GET_STATS_FD), by name.", [("name", name)])
                .set(Double(value))
        }
        for (vcpu, values) in stats.kvm.vcpus.enumerated() {
            for (name, value) in values.sorted(by: { $0.key < $1.key }) {
                metrics.gauge("deflect_kvm_vcpu_stat", "KVM's own vCPU statistics (KVM_GET_STATS_FD), by name.",
                              [("vcpu", "\(vcpu)"), ("name", name)]).set(Double(value))
            }
        }
        return registry.emitToString()
    }

    static func seconds(_ nanoseconds: UInt64) -> Double { Double(nanoseconds) / 1e9 }
}

/// Registry helpers: one help text per metric name, as swift-prometheus
/// requires. The unit is part of each name already (`_seconds`, `_total`).
private struct Metrics {
    let registry: PrometheusCollectorRegistry

    func gauge(_ name: String, _ help: String, _ labels: [(String, String)]) -> Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func counter(_ name: String, _ help: String, _ labels: [(String, String)]) -> Counter {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// Count, sums and percentiles of one group of exits.
    func timing(_ prefix: String, _ what: String, _ labels: [(String, String)], _ timing: ExitTiming) {
        counter("\(prefix)s_total", "Number of \(what).", labels).increment(by: Double(timing.count))
        for (phase, summary, help) in [("in_kvm_run", timing.inKvmRun, "time inside KVM_RUN before"),
                                       ("handling", timing.handling, "time handling in user space")] {
            counter("\(prefix)_\(phase)_seconds_total", "Total \(help) \(what).", labels)
                .increment(by: PrometheusExposition.seconds(summary.totalNs))
            for (quantile, value) in [("0.5", summary.p50Ns), ("0.9", summary.p90Ns), ("0.99", summary.p99Ns), ("1", summary.maxNs)] {
                gauge("\(prefix)_\(phase)_seconds", "Percentiles of \(help) \(what) (quantile 1 is the maximum).",
                      labels + [("quantile", quantile)]).set(PrometheusExposition.seconds(value))
            }
        }
    }
}
