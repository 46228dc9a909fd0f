// ControlAPITests: every route of the control API against the scripted VM:
// the answers on success and the JSON errors (400, 404, 405, 409, 413, 415, 422).
@testable import ControlAPI
import Foundation
import NIOHTTP1
import Testing

@Suite("Control API routes")
struct ControlRoutesTests {
    @Test func getVMAnswersStateConfigurationAndClocks() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let answer = try await request(socket, .GET, "/vm")
            #expect(answer.status == 200)
            #expect(answer.headers["content-type"] == "application/json")
            #expect(try answer.decode(VMInfo.self) == (await vm.info()))
            // snake_case keys on the wire.
            #expect(answer.text.contains(#""memory_mib":64"#))
            #expect(answer.text.contains(#""uptime_seconds":12.5"#))
        }
    }

    @Test func putStatePausesAndResumesIdempotently() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            for state in ["paused", "paused", "running", "running"] {
                let answer = try await request(socket, .PUT, "/vm/state", body: Data(#"{"state":"\#(state)"}"#.utf8),
                                               contentType: "application/json")
                #expect(answer.status == 200)
                #expect(try answer.decode(VMInfo.self).state.rawValue == state)
            }
            #expect(vm.recorded.withLock { $0.stateRequests } == [.paused, .paused, .running, .running])
        }
    }

    @Test(arguments: [
        (#"{"state": "frozen"}"#, "invalid value at state"),
        (#"{"state": 1}"#, "wrong type at state"),
        (#"{}"#, "missing key state"),
        (#"{"state": "paused""#, "not valid JSON"),
        ("", "not valid JSON"),
    ])
    func putStateRejectsMalformedJSON(body: String, message: String) async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let answer = try await request(socket, .PUT, "/vm/state", body: Data(body.utf8), contentType: "application/json")
            #expect(answer.status == 400)
            let error = try answer.errorBody()
            #expect(error.status == 400)
            #expect(error.error.contains(message), "\(error.error)")
            #expect(vm.recorded.withLock { $0.stateRequests }.isEmpty)
        }
    }

    @Test func putStateRefusesOtherContentTypesAndLargeBodies() async throws {
        try await withServer { _, socket in
            let xml = try await request(socket, .PUT, "/vm/state", body: Data("<state/>".utf8), contentType: "application/xml")
            #expect(xml.status == 415)
            #expect(try xml.errorBody().error.contains("application/xml"))
            let padding = String(repeating: " ", count: 5_000)
            let large = try await request(socket, .PUT, "/vm/state", body: Data(#"{"state":"paused"\#(padding)}"#.utf8),
                                          contentType: "application/json")
            #expect(large.status == 413)
            #expect(try large.errorBody().status == 413)
        }
    }

    @Test func shutdownIsAcceptedAndConflictsOnceStopped() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let answer = try await request(socket, .PUT, "/vm/shutdown")
            #expect(answer.status == 202)
            #expect(try answer.decode(VMInfo.self).state == .stopping)
            #expect(vm.recorded.withLock { $0.shutdowns } == 1)
            vm.recorded.withLock { $0.state = .stopped }
            let again = try await request(socket, .PUT, "/vm/shutdown")
            #expect(again.status == 409)
            let paused = try await request(socket, .PUT, "/vm/state", body: Data(#"{"state":"paused"}"#.utf8))
            #expect(paused.status == 409)
        }
    }

    @Test func registersOnlyWhilePaused() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let running = try await request(socket, .GET, "/vcpus/1/registers")
            #expect(running.status == 409)
            #expect(try running.errorBody().error == "vCPU registers can be read only while the VM is paused")
            try await vm.setState(.paused)
            let paused = try await request(socket, .GET, "/vcpus/1/registers")
            #expect(paused.status == 200)
            #expect(try paused.decode(VCPURegistersReport.self) == FakeVM.registers(vcpu: 1))
            #expect(paused.text.contains(#""r15":"0xffffffffffffffff""#))
            #expect(paused.text.contains(#""apic_base":"0xfee00900""#))
        }
    }

    @Test(arguments: [("2", 404), ("-1", 404), ("99999999999999999999", 400), ("abc", 400), ("1x", 400)])
    func registersIndexOutOfRangeOrNotANumber(index: String, status: Int) async throws {
        let vm = FakeVM()
        try await vm.setState(.paused)
        try await withServer(vm) { _, socket in
            let answer = try await request(socket, .GET, "/vcpus/\(index)/registers")
            #expect(answer.status == status)
            #expect(try answer.errorBody().status == status)
        }
    }

    @Test func statsAndMSRsAreTheVMsReports() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let stats = try await request(socket, .GET, "/stats")
            #expect(stats.status == 200)
            #expect(try stats.decode(StatsReport.self) == FakeVM.stats(state: .running))
            #expect(stats.text.contains(#""p99_ns":"#))
            let msrs = try await request(socket, .GET, "/msrs")
            #expect(msrs.status == 200)
            #expect(try msrs.decode(MSRTableReport.self) == FakeVM.msrTable)
        }
    }

    @Test func metricsAreThePrometheusTextFormat() async throws {
        try await withServer { _, socket in
            let answer = try await request(socket, .GET, "/metrics")
            #expect(answer.status == 200)
            #expect(answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            let lines = answer.text.split(separator: "\n").map(String.init)
            #expect(lines.contains(#"deflect_vm_state{state="running"} 1"#) || lines.contains(#"deflect_vm_state{state="running"} 1.0"#))
            #expect(lines.contains("# TYPE deflect_exits_total counter"))
            #expect(lines.contains { $0.hasPrefix(#"deflect_exits_total{kind="msr-read"} 1000"#) })
            // p99 of the handling time of RDMSR 0x1b: 2400 ns.
            let p99 = lines.first { $0.hasPrefix(#"deflect_msr_handling_seconds{msr="0x1b",name="IA32_APIC_BASE",direction="read",quantile="0.99"} "#) }
            #expect(p99.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } } == 2.4e-6)
            #expect(lines.contains { $0.hasPrefix(#"deflect_port_handling_seconds{port="other",direction="read",quantile="1"}"#) })
            #expect(lines.contains { $0.hasPrefix(#"deflect_kvm_vcpu_stat{vcpu="1",name="halt_exits"} 1"#) })
            // Every sample line is `name{labels} value` or `name value`.
            for line in lines where !line.hasPrefix("#") {
                #expect(line.range(of: #"^[a-z_]+(\{[^}]*\})? [-0-9.e+]+$"#, options: .regularExpression) != nil, "\(line)")
            }
        }
    }

    @Test func policyIsReplacedOrRefusedWithLocatedErrors() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let good = "default = \"kernel\"\n"
            let ok = try await request(socket, .PUT, "/policy", body: Data(good.utf8), contentType: "application/toml")
            #expect(ok.status == 204)
            let plain = try await request(socket, .PUT, "/policy", body: Data(good.utf8), contentType: "text/plain; charset=utf-8")
            #expect(plain.status == 204)
            #expect(vm.recorded.withLock { $0.policies } == [good, good])

            let bad = try await request(socket, .PUT, "/policy", body: Data("x = 1\n\nbogus = 2\n".utf8), contentType: "text/plain")
            #expect(bad.status == 422)
            let error = try bad.errorBody()
            #expect(error.diagnostics == [PolicyDiagnostic(line: 3, column: 1, message: "unknown key bogus"),
                                          PolicyDiagnostic(line: nil, column: nil, message: "no default action")])
            #expect(vm.recorded.withLock { $0.policies.count } == 2)

            let json = try await request(socket, .PUT, "/policy", body: Data("{}".utf8), contentType: "application/json")
            #expect(json.status == 415)
            let binary = try await request(socket, .PUT, "/policy", body: Data([0xff, 0xfe, 0x00]), contentType: "text/plain")
            #expect(binary.status == 400)
        }
    }

    @Test func policyLargerThanOneMiBIs413() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, socket in
            let text = String(repeating: "# comment line\n", count: (1 << 20) / 15 + 10)
            let answer = try await request(socket, .PUT, "/policy", body: Data(text.utf8), contentType: "text/plain")
            #expect(answer.status == 413)
            #expect(try answer.errorBody().status == 413)
            #expect(vm.recorded.withLock { $0.policies }.isEmpty)
        }
    }

    @Test(arguments: ["/", "/vms", "/vm/state/extra", "/vcpus", "/vcpus/0", "/vcpus/0/registers/x", "/nope"])
    func unknownRouteIsJSON404(path: String) async throws {
        try await withServer { _, socket in
            let answer = try await request(socket, .GET, path)
            #expect(answer.status == 404)
            #expect(answer.headers["content-type"] == "application/json")
            #expect(try answer.errorBody().error.contains("no route"))
        }
    }

    @Test func wrongMethodIsJSON405WithAllow() async throws {
        try await withServer { _, socket in
            let cases: [(HTTPMethod, String, String)] = [(.POST, "/vm", "GET"), (.GET, "/vm/state", "PUT"), (.DELETE, "/policy", "PUT"),
                                                         (.PUT, "/stats", "GET"), (.PATCH, "/vcpus/0/registers", "GET")]
            for (method, path, allowed) in cases {
                let answer = try await request(socket, method, path)
                #expect(answer.status == 405, "\(method) \(path)")
                #expect(answer.headers["allow"] == allowed)
                #expect(try answer.errorBody().status == 405)
            }
        }
    }

    @Test func errorBodiesAreOneLine() async throws {
        for error: ControlError in [.badRequest("a"), .conflict("b"), .invalidPolicy("c", diagnostics: [])] {
            let body = try ControlJSON.encoder().encode(error.body)
            #expect(!String(decoding: body, as: UTF8.self).contains("\n"))
        }
    }
}
