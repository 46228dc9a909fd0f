// ControlAPI: the boundary between the control API and the VMM. The server
// only ever talks to a `VMControl`; the VMM implements it (MachineControl,
// around a `Machine`), the tests implement it with scripted state.

/// What the control API needs from a running virtual machine.
///
/// Every method is called from the server's tasks, concurrently with the
/// vCPU threads and with other requests: an implementation answers from its
/// own synchronized state and never blocks on a vCPU that is running guest
/// code (the API keeps answering while the guest storms exits).
public protocol VMControl: Sendable {
    /// The run state, the configuration the VM was started with, and its clocks.
    func info() async -> VMInfo

    /// Pauses or resumes every vCPU at a consistent point. Idempotent:
    /// pausing a paused VM (or resuming a running one) succeeds and changes
    /// nothing. A VM that is stopping or stopped answers `.conflict`.
    func setState(_ state: RequestedState) async throws(ControlError)

    /// Asks the VM to stop; returns once the stop has been requested (the
    /// run then ends as if the user had sent SIGTERM).
    func shutdown() async throws(ControlError)

    /// The registers of vCPU `vcpu` (0-based). Only while the VM is paused:
    /// otherwise `.conflict`, since the registers of a running vCPU are not a
    /// consistent state. The server has already checked `vcpu` against the
    /// configuration's vCPU count.
    func registers(vcpu: Int) async throws(ControlError) -> VCPURegistersReport

    /// Everything `deflect run --stats` shows, now.
    /// The CPU model and the CPUID table vCPU 0 started with (the others
    /// differ only in their APIC ids).
    func cpuid() async -> CPUIDReport

    func stats() async -> StatsReport

    /// The per-MSR table: every MSR the guest touched so far.
    func msrs() async -> MSRTableReport

    /// Replaces the MSR policy with the policy in `text` (TOML, the format of
    /// `--policy`). A policy that does not load is refused with
    /// `.invalidPolicy` and its diagnostics; the previous policy stays.
    func replacePolicy(text: String) async throws(ControlError)

    /// A new subscription to the event log: one JSON object per element, in
    /// the order the VMM produced them, after the VMM's own rate limits.
    /// An `EventBroadcaster` provides these with a bounded buffer per
    /// subscriber, so that a slow client never blocks the producer.
    func events() -> EventSubscription

    /// Pauses the VM (if it runs), writes a snapshot — the state file at
    /// `request.path`, the memory file beside it — and then resumes, stays
    /// paused or stops, as `request.then` says. A path that cannot be written
    /// is `.badRequest` with the reason; the VM is resumed as asked even then.
    func snapshot(_ request: SnapshotRequest) async throws(ControlError) -> SnapshotReport

    /// Starts migrating the VM to `request.to` and answers at once with the
    /// progress (the migration goes on in the background; `migration()`
    /// follows it). Refused with `.badRequest` for a malformed request and
    /// `.conflict` when the VM cannot be migrated now (the guest has not
    /// agreed, a migration runs already, the VM is stopping).
    func migrate(_ request: MigrationRequest) async throws(ControlError) -> MigrationStatus

    /// The outgoing migration's progress (`.idle` before any).
    func migration() async -> MigrationStatus
}

/// The states a client may ask for with `PUT /vm/state`.
public enum RequestedState: String, Codable, Sendable, CaseIterable {
    case paused
    case running
}

/// An error the control API answers with: an HTTP status and a one-line
/// message (plus, for a refused policy, where each problem is).
public enum ControlError: Error, Sendable, Equatable {
    /// 400: the request is malformed (bad JSON, a vCPU index that is not a number).
    case badRequest(String)
    /// 404: no such route or resource (a vCPU index out of range).
    case notFound(String)
    /// 405: the route exists but not with this method.
    case methodNotAllowed(String, allowed: [String])
    /// 408: the client did not send its request in time.
    case requestTimeout(String)
    /// 409: the request does not fit the VM's state (registers while running).
    case conflict(String)
    /// 413: the body is larger than the route accepts.
    case payloadTooLarge(String)
    /// 415: the body's content type is not one the route accepts.
    case unsupportedMediaType(String)
    /// 422: a policy that does not load; the previous policy stays.
    case invalidPolicy(String, diagnostics: [PolicyDiagnostic])
    /// 503: the VM cannot answer now (it is stopping or has stopped).
    case unavailable(String)
    /// 500: the VMM failed to do what was asked.
    case internalError(String)
    /// 501: a method this API implements for no route (CONNECT, one HTTP does not define).
    case notImplemented(String)

    /// The HTTP status code of the answer.
    public var status: Int {
        switch self {
        case .badRequest: 400
        case .notFound: 404
        case .methodNotAllowed: 405
        case .requestTimeout: 408
        case .conflict: 409
        case .payloadTooLarge: 413
        case .unsupportedMediaType: 415
        case .invalidPolicy: 422
        case .unavailable: 503
        case .internalError: 500
        case .notImplemented: 501
        }
    }

    /// The one-line message, as `deflect ctl` prints it.
    public var message: String {
        switch self {
        case .badRequest(let m), .notFound(let m), .methodNotAllowed(let m, _), .requestTimeout(let m),
             .conflict(let m), .payloadTooLarge(let m), .unsupportedMediaType(let m),
             .invalidPolicy(let m, _), .unavailable(let m), .internalError(let m), .notImplemented(let m):
            m
        }
    }

    /// The JSON body every error is answered with.
    public var body: ErrorBody {
        if case .invalidPolicy(_, let diagnostics) = self {
            return ErrorBody(error: message, status: status, diagnostics: diagnostics)
        }
        return ErrorBody(error: message, status: status, diagnostics: nil)
    }
}

/// The JSON body of every error answer: `{"error": "...", "status": 409}`,
/// plus `diagnostics` for a refused policy.
public struct ErrorBody: Codable, Sendable, Equatable {
    /// One line saying what is wrong.
    public var error: String
    /// The HTTP status, repeated for clients that only keep the body.
    public var status: Int
    /// For 422 on `PUT /policy`: every problem with its position in the TOML text.
    public var diagnostics: [PolicyDiagnostic]?

    public init(error: String, status: Int, diagnostics: [PolicyDiagnostic]?) {
        self.error = error
        self.status = status
        self.diagnostics = diagnostics
    }
}

/// One problem in a policy text, located like the CLI's `file:line:column: error:`.
public struct PolicyDiagnostic: Codable, Sendable, Equatable {
    /// 1-based line, or nil when the problem is not tied to a place (a missing key).
    public var line: Int?
    /// 1-based column, or nil when unknown.
    public var column: Int?
    public var message: String

    public init(line: Int?, column: Int?, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }
}
