// ControlAPITests: the `deflect ctl` client against the scripted VM: each
// call, its one-line errors, and the readable output.
@testable import ControlAPI
import Foundation
import NIOCore
import NIOPosix
import Testing

@Suite("Control API client")
struct ControlClientTests {
    @Test func everyCallRoundTrips() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, path in
            let client = ControlClient(socketPath: path)
            #expect(try await client.info() == (await vm.info()))
            #expect(try await client.setState(.paused).state == .paused)
            #expect(try await client.registers(vcpu: 0) == FakeVM.registers(vcpu: 0))
            #expect(try await client.setState(.running).state == .running)
            #expect(try await client.stats() == FakeVM.stats(state: .running))
            #expect(try await client.msrs() == FakeVM.msrTable)
            #expect(try await client.metrics().contains("# TYPE deflect_vm_state gauge"))
            try await client.replacePolicy(text: "default = \"kernel\"\n")
            #expect(vm.recorded.withLock { $0.policies } == ["default = \"kernel\"\n"])
            #expect(try await client.shutdown().state == .stopping)
        }
    }

    /// PUT /migrate with every option (snake_case on the wire), then GET /migration.
    @Test func migrationRoundTrips() async throws {
        let vm = FakeVM()
        try await withServer(vm) { _, path in
            let client = ControlClient(socketPath: path)
            #expect(try await client.migration() == .idle)
            let started = try await client.migrate(MigrationRequest(to: "tcp:127.0.0.1:4444", downtimeMs: 50, timeoutS: 9,
                                                                    force: true, pskFile: "/k", pauseAndCopy: true))
            #expect(started.phase == .connecting && started.destination == "tcp:127.0.0.1:4444")
            #expect(try await client.migration() == started)
            #expect(vm.recorded.withLock { $0.migrationRequests } == [MigrationRequest(to: "tcp:127.0.0.1:4444", downtimeMs: 50,
                                                                                         timeoutS: 9, force: true, pskFile: "/k",
                                                                                         pauseAndCopy: true)])
            await #expect(throws: ControlClientError.self) { try await client.migrate(MigrationRequest(to: "nowhere")) }
        }
    }

    @Test func apiErrorsComeBackWithTheirMessage() async throws {
        try await withServer { _, path in
            let client = ControlClient(socketPath: path)
            await #expect(throws: ControlClientError.api(status: 409, body: ErrorBody(
                error: "vCPU registers can be read only while the VM is paused", status: 409, diagnostics: nil))) {
                try await client.registers(vcpu: 0)
            }
            do throws(ControlClientError) {
                try await client.replacePolicy(text: "bogus = 1\n")
                Issue.record("a policy with errors was accepted")
            } catch {
                guard case .api(422, let body) = error else { throw error }
                #expect(body.diagnostics?.first == PolicyDiagnostic(line: 3, column: 1, message: "unknown key bogus"))
            }
            do throws(ControlClientError) {
                _ = try await client.registers(vcpu: 7)
                Issue.record("vCPU 7 of 2 answered")
            } catch {
                #expect(error.description == "no vCPU 7: the VM has 2 vCPUs")
            }
        }
    }

    @Test func missingSocketAndDeadSocketSayWhatIsWrongAtOnce() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/api.sock"
        // A deadline far beyond what the answers take, even on a loaded machine:
        // a client that retried until its deadline would be seen.
        let client = ControlClient(socketPath: path, timeout: .seconds(120))
        let start = ContinuousClock.now
        defer { #expect(ContinuousClock.now - start < .seconds(60), "the client waited for its deadline") }
        await #expect(throws: ControlClientError.noSocket(path: path)) { try await client.info() }
        try await makeStaleSocket(at: path)
        await #expect(throws: ControlClientError.refused(path: path)) { try await client.info() }
        #expect(ControlClientError.refused(path: path).description
                == "nothing is serving the API socket \(path) (the VM has stopped)")
    }

    /// Something accepts on the socket and hangs up without answering: one
    /// readable line, not the HTTP client's type name.
    @Test func aServerThatHangsUpIsSaidInWords() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/api.sock"
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.close() }
            .bind(unixDomainSocketPath: path).get()
        defer { listener.close(promise: nil) }
        do throws(ControlClientError) {
            _ = try await ControlClient(socketPath: path, timeout: .seconds(10)).info()
            Issue.record("an answer from a server that hangs up")
        } catch {
            // The hang-up is seen as the end of the stream or, when the request
            // was still being written, as a reset: either in words.
            let reasons = ["the server closed the connection without answering",
                           String(cString: strerror(ECONNRESET)), String(cString: strerror(EPIPE))]
            #expect(reasons.map { "cannot talk to the API socket \(path): \($0)" }.contains(error.description), "\(error.description)")
        }
    }

    @Test func statsTableHasTheRunStatsLayoutWithPercentiles() {
        let text = ControlReportText.stats(FakeVM.stats(state: .paused))
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first == "state paused, up 12.5 s, 1500 exits")
        #expect(lines.contains { $0.hasPrefix("exits") && $0.contains("count") && $0.contains("p99 ns") && $0.contains("in KVM_RUN µs") })
        // msr-read: 1000 exits, 900 µs handling, mean 900, p50 900, p90 1800, p99 2700, max 6300.
        let msrRead = lines.first { $0.hasPrefix("msr-read") }
        #expect(msrRead?.split(separator: " ").map(String.init) == ["msr-read", "1000", "900.0", "900", "900", "1800", "2700", "6300", "2700.0", "4500"])
        #expect(lines.contains { $0.hasPrefix("0x3f8 out") })
        #expect(lines.contains { $0.hasPrefix("0x1b IA32_APIC_BASE read") })
        #expect(lines.contains { $0.hasPrefix("nr 12 KVM_HC_MAP_GPA_RANGE") })
        #expect(lines.contains("  vcpu1 halt_exits 1"))
        let unavailable = ControlReportText.kvmStats(.unavailable("KVM_CAP_BINARY_STATS_FD is not offered"))
        #expect(unavailable == "KVM statistics: not available (KVM_CAP_BINARY_STATS_FD is not offered)")
    }

    @Test func registersAndMSRTextShowTheValues() {
        let registers = ControlReportText.registers(FakeVM.registers(vcpu: 1))
        #expect(registers.contains("rax 0000000000001234"))
        #expect(registers.contains("r15 ffffffffffffffff"))
        #expect(registers.contains("efer 0000000000000500"))
        #expect(registers.contains("cs  sel=0x8 base=0x0 limit=0xffffffff type=11 dpl=0 p s l g"))
        let msrs = ControlReportText.msrs(FakeVM.msrTable)
        #expect(msrs.contains("0x1b"))
        #expect(msrs.contains("IA32_APIC_BASE"))
        #expect(msrs.contains("gp=3"))
        #expect(msrs.contains("other MSRs (beyond the table's cap): 7 accesses"))
    }

    @Test func hexValuesRoundTripAndRejectNumbers() throws {
        let data = try ControlJSON.encoder().encode([Hex64(UInt64.max), Hex64(0)])
        #expect(String(decoding: data, as: UTF8.self) == #"["0xffffffffffffffff","0x0"]"#)
        #expect(try ControlJSON.decoder().decode([Hex64].self, from: data) == [Hex64(UInt64.max), Hex64(0)])
        #expect(throws: DecodingError.self) { try ControlJSON.decoder().decode([Hex64].self, from: Data("[12]".utf8)) }
        #expect(throws: DecodingError.self) { try ControlJSON.decoder().decode([Hex64].self, from: Data(#"["12"]"#.utf8)) }
    }
}
