// VMM: the event stream: things a guest did that the user should hear about
// (an access nobody owns, an exit Deflect does not handle), rate-limited so a
// guest cannot flood the host.
import KVMABI
import Devices
import Dispatch
import Synchronization

/// Something worth a line in the event stream.
public enum MachineEvent: Sendable, Equatable, CustomStringConvertible {
    case unownedPortRead(vcpu: Int, port: UInt16, size: Int)
    case unownedPortWrite(vcpu: Int, port: UInt16, size: Int, value: UInt32)
    case unownedMMIORead(vcpu: Int, address: UInt64, length: Int)
    case unownedMMIOWrite(vcpu: Int, address: UInt64, length: Int, value: UInt64)
    /// A guest write to read-only memory (the PC platform's BIOS area with the ACPI tables).
    case readOnlyMemoryWrite(vcpu: Int, address: UInt64, length: Int, value: UInt64)
    /// An MSR exit with no MSR engine configured: answered with #GP.
    case unhandledMSR(vcpu: Int, index: UInt32, isWrite: Bool, value: UInt64)
    /// A hypercall exit nobody handles: answered with -KVM_ENOSYS.
    case unhandledHypercall(vcpu: Int, number: UInt64)
    /// An exit reason Deflect does not handle (the vCPU continues).
    case unexpectedExit(vcpu: Int, description: String)
    /// An MSR access the policy says to report: default action, denied, or a rule marked `log`.
    case msrAccess(MSRAccessEvent)
    /// A hypercall handled in user space (KVM_HC_MAP_GPA_RANGE).
    case hypercall(HypercallEvent)
    /// A device got an access it answers but finds odd (unknown fw_cfg selector, odd width ...).
    case deviceAnomaly(vcpu: Int, DeviceAnomaly)
    /// The guest entered ACPI S3: every vCPU stopped, memory kept.
    case suspended(vcpu: Int)
    /// A wake event ended S3: the guest resumes at its FACS waking vector.
    case resumed(wakeSource: String, wakingVector: UInt32)
    /// A PCI device's host side has something to say (a queue the guest broke, a fallback taken).
    case deviceNote(device: String, message: String)

    /// The key of an MSR access event, known before the event is built.
    /// Rate-limited per (MSR, RIP): a storm from one place is one line.
    static func msrAccessKey(index: UInt32, isWrite: Bool, rip: UInt64) -> EventKey {
        EventKey(kind: isWrite ? 9 : 8, location: UInt64(index) << 32 ^ rip)
    }

    /// The rate-limiting key: the same kind of event at the same place.
    var key: EventKey {
        switch self {
        case let .unownedPortRead(_, port, _): return EventKey(kind: 0, location: UInt64(port))
        case let .unownedPortWrite(_, port, _, _): return EventKey(kind: 1, location: UInt64(port))
        case let .unownedMMIORead(_, address, _): return EventKey(kind: 2, location: address)
        case let .unownedMMIOWrite(_, address, _, _): return EventKey(kind: 3, location: address)
        case let .readOnlyMemoryWrite(_, address, _, _): return EventKey(kind: 12, location: address)
        case let .unhandledMSR(_, index, isWrite, _): return EventKey(kind: isWrite ? 5 : 4, location: UInt64(index))
        case let .unhandledHypercall(_, number): return EventKey(kind: 6, location: number)
        case .unexpectedExit: return EventKey(kind: 7, location: 0)
        case let .msrAccess(e):
            return Self.msrAccessKey(index: e.index, isWrite: e.isWrite, rip: e.rip)
        case let .hypercall(e):
            // Per hypercall number and first argument (the GPA for MAP_GPA_RANGE).
            return EventKey(kind: 10, location: e.number << 48 ^ (e.arguments.first ?? 0))
        case let .deviceAnomaly(_, a):
            return EventKey(kind: 11, location: UInt64(a.offset) << 32 ^ UInt64(UInt(bitPattern: a.device.hashValue) & 0xFFFF_FFFF))
        case .suspended: return EventKey(kind: 13, location: 0)
        case .resumed: return EventKey(kind: 14, location: 0)
        case let .deviceNote(device, _): return EventKey(kind: 15, location: UInt64(UInt(bitPattern: device.hashValue) & 0xFFFF_FFFF))
        }
    }

    public var description: String {
        switch self {
        case let .unownedPortRead(vcpu, port, size):
            return "vcpu=\(vcpu) unowned port read port=\(hex(port)) size=\(size) -> all ones"
        case let .unownedPortWrite(vcpu, port, size, value):
            return "vcpu=\(vcpu) unowned port write port=\(hex(port)) size=\(size) value=\(hex(value)) dropped"
        case let .unownedMMIORead(vcpu, address, length):
            return "vcpu=\(vcpu) unowned MMIO read address=\(hex(address)) length=\(length) -> all ones"
        case let .unownedMMIOWrite(vcpu, address, length, value):
            return "vcpu=\(vcpu) unowned MMIO write address=\(hex(address)) length=\(length) value=\(hex(value)) dropped"
        case let .readOnlyMemoryWrite(vcpu, address, length, value):
            return "vcpu=\(vcpu) write to read-only memory address=\(hex(address)) length=\(length) value=\(hex(value)) dropped"
        case let .unhandledMSR(vcpu, index, isWrite, value):
            return "vcpu=\(vcpu) \(isWrite ? "wrmsr" : "rdmsr") msr=\(hex(index))\(isWrite ? " value=\(hex(value))" : "") not handled -> #GP"
        case let .unhandledHypercall(vcpu, number):
            return "vcpu=\(vcpu) hypercall nr=\(number) not handled -> -KVM_ENOSYS"
        case let .unexpectedExit(vcpu, description):
            return "vcpu=\(vcpu) unexpected exit: \(description)"
        case let .msrAccess(e):
            return e.description
        case let .hypercall(e):
            return e.description
        case let .deviceAnomaly(vcpu, a):
            return "vcpu=\(vcpu) device \(a)"
        case let .suspended(vcpu):
            return "vcpu=\(vcpu) guest suspended to RAM (ACPI S3); waiting for a wake event"
        case let .resumed(source, vector):
            return "guest woke from S3 (\(source)); resuming at waking vector \(hex(vector))"
        case let .deviceNote(device, message):
            return "device \(device): \(message)"
        }
    }

    /// The event as one JSON object (for JSON-lines output).
    public var json: String {
        func h<T: BinaryInteger>(_ v: T) -> String { "\"" + hex(v) + "\"" }
        switch self {
        case let .unownedPortRead(vcpu, port, size):
            return #"{"event":"unowned-port-read","vcpu":\#(vcpu),"port":\#(h(port)),"size":\#(size)}"#
        case let .unownedPortWrite(vcpu, port, size, value):
            return #"{"event":"unowned-port-write","vcpu":\#(vcpu),"port":\#(h(port)),"size":\#(size),"value":\#(h(value))}"#
        case let .unownedMMIORead(vcpu, address, length):
            return #"{"event":"unowned-mmio-read","vcpu":\#(vcpu),"address":\#(h(address)),"length":\#(length)}"#
        case let .unownedMMIOWrite(vcpu, address, length, value):
            return #"{"event":"unowned-mmio-write","vcpu":\#(vcpu),"address":\#(h(address)),"length":\#(length),"value":\#(h(value))}"#
        case let .readOnlyMemoryWrite(vcpu, address, length, value):
            return #"{"event":"read-only-memory-write","vcpu":\#(vcpu),"address":\#(h(address)),"length":\#(length),"value":\#(h(value))}"#
        case let .unhandledMSR(vcpu, index, isWrite, value):
            return #"{"event":"unhandled-msr","vcpu":\#(vcpu),"msr":\#(h(index)),"access":"\#(isWrite ? "write" : "read")","value":\#(h(value))}"#
        case let .unhandledHypercall(vcpu, number):
            return #"{"event":"unhandled-hypercall","vcpu":\#(vcpu),"nr":\#(number)}"#
        case let .unexpectedExit(vcpu, description):
            return #"{"event":"unexpected-exit","vcpu":\#(vcpu),"exit":\#(JSONText.quote(description))}"#
        case let .msrAccess(e):
            return e.json
        case let .hypercall(e):
            return e.json
        case let .deviceAnomaly(vcpu, a):
            return #"{"event":"device","vcpu":\#(vcpu),"device":\#(JSONText.quote(a.device)),"detail":\#(JSONText.quote(a.description))}"#
        case let .suspended(vcpu):
            return #"{"event":"suspended","vcpu":\#(vcpu),"state":"S3"}"#
        case let .resumed(source, vector):
            return #"{"event":"resumed","source":\#(JSONText.quote(source)),"waking_vector":\#(h(vector))}"#
        case let .deviceNote(device, message):
            return #"{"event":"device-note","device":\#(JSONText.quote(device)),"detail":\#(JSONText.quote(message))}"#
        }
    }
}

struct EventKey: Hashable, Sendable {
    var kind: UInt8
    var location: UInt64
}

/// Where events go. `occurrence` counts events at the same place; it is
/// above the burst only for sampled repeats.
public protocol EventSink: Sendable {
    func emit(_ event: MachineEvent, occurrence: Int, sampled: Bool)
}

/// Writes readable event lines to standard error.
public struct StandardErrorEventSink: EventSink {
    public init() {}
    public func emit(_ event: MachineEvent, occurrence: Int, sampled: Bool) {
        StandardStreams.writeError("deflect: event: \(event)\(sampled ? " (occurrence \(occurrence))" : "")\n")
    }
}

/// Writes one JSON object per line to a file (`--events FILE`).
public final class JSONLinesEventSink: EventSink {
    private let file: Mutex<FileDescriptorSink>

    /// `label` names the file in errors (e.g. "--events PATH").
    public init(path: String, label: String? = nil) throws(MachineError) {
        file = Mutex(try FileDescriptorSink.file(path, label: label ?? "events file \(path)"))
    }

    /// Called once when writing an event fails (see `FileDescriptorSink`).
    public func onFailure(_ handler: @escaping @Sendable (String) -> Void) {
        file.withLock { $0.onFailure = handler }
    }

    /// One event as its JSON object with the occurrence count, no newline.
    static func line(_ event: MachineEvent, occurrence: Int) -> String {
        var line = event.json
        line.removeLast()  // the closing brace: append the occurrence count
        return line + #","occurrence":\#(occurrence)}"#
    }

    public func emit(_ event: MachineEvent, occurrence: Int, sampled: Bool) {
        let line = Self.line(event, occurrence: occurrence) + "\n"
        file.withLock { sink in
            for byte in line.utf8 { sink.write(byte) }
        }
    }

    public func flush() { file.withLock { $0.flush() } }

    /// Why writing failed, once it has.
    public var failure: String? { file.withLock { $0.failure } }
}

/// Keeps event lines in memory (tests, embedding).
public final class CollectingEventSink: EventSink {
    private let lines = Mutex<[String]>([])
    private let stored = Mutex<[MachineEvent]>([])
    public init() {}
    public func emit(_ event: MachineEvent, occurrence: Int, sampled: Bool) {
        lines.withLock { $0.append(sampled ? "\(event) (occurrence \(occurrence))" : event.description) }
        stored.withLock { $0.append(event) }
    }
    public var collected: [String] { lines.withLock { $0 } }
    public var events: [MachineEvent] { stored.withLock { $0 } }
}

/// Rate limiter in front of a sink: the first `burst` events per key pass,
/// then one in every `sampleEvery`; at most `maxKeys` keys are tracked (later
/// keys share one overflow counter), so memory stays bounded whatever the guest does.
public final class EventLog: Sendable {
    public struct Limits: Sendable {
        public var burst: Int = 10
        public var sampleEvery: Int = 1000
        public var maxKeys: Int = 4096
        /// Across all places: at most `globalBurst` lines at once, refilled at
        /// `globalPerSecond`, so a guest touching ever new places is throttled too.
        public var globalBurst: Double = 200
        public var globalPerSecond: Double = 50
        public init() {}
    }

    private struct State {
        var perKey: [EventKey: Int] = [:]
        var overflowCount = 0
        var suppressed = 0
        var total = 0
        var tokens: Double
        var lastRefill: UInt64
    }

    private let sink: any EventSink
    private let limits: Limits
    private let state: Mutex<State>
    /// Live subscribers (the control API's event stream): each gets every
    /// event that passed the rate limits, as one JSON line without newline.
    private let observers = Mutex<[Int: @Sendable (String) -> Void]>([:])
    private let nextObserver = Atomic<Int>(0)

    /// Adds a subscriber; it must not block (it runs on the thread that
    /// recorded the event). Returns the token `unsubscribe` takes.
    public func subscribe(_ observer: @escaping @Sendable (String) -> Void) -> Int {
        let token = nextObserver.add(1, ordering: .relaxed).newValue
        observers.withLock { $0[token] = observer }
        return token
    }

    public func unsubscribe(_ token: Int) {
        observers.withLock { _ = $0.removeValue(forKey: token) }
    }

    public init(sink: any EventSink = StandardErrorEventSink(), limits: Limits = Limits()) {
        self.sink = sink
        self.limits = limits
        state = Mutex(State(tokens: limits.globalBurst, lastRefill: DispatchTime.now().uptimeNanoseconds))
    }

    public func record(_ event: MachineEvent) {
        record(key: event.key) { event }
    }

    /// Records the event `make` builds, building it only when the rate
    /// limiter lets it through: a suppressed event costs no name lookups or
    /// register reads.
    func record(key: EventKey, _ make: () -> MachineEvent) {
        let seen: Int? = state.withLock { s in
            s.total += 1
            let n: Int
            if let existing = s.perKey[key] {
                n = existing + 1
                s.perKey[key] = n
            } else if s.perKey.count < limits.maxKeys {
                n = 1
                s.perKey[key] = n
            } else {
                s.overflowCount += 1
                n = s.overflowCount
            }
            var pass = n <= limits.burst || n % limits.sampleEvery == 0
            if pass {
                let now = DispatchTime.now().uptimeNanoseconds
                s.tokens = min(limits.globalBurst, s.tokens + Double(now &- s.lastRefill) / 1e9 * limits.globalPerSecond)
                s.lastRefill = now
                if s.tokens >= 1 { s.tokens -= 1 } else { pass = false }
            }
            if !pass { s.suppressed += 1 }
            return pass ? n : nil
        }
        guard let seen else { return }
        let event = make()
        sink.emit(event, occurrence: seen, sampled: seen > limits.burst)
        let observers = self.observers.withLock { $0.isEmpty ? nil : Array($0.values) }
        if let observers {
            let line = JSONLinesEventSink.line(event, occurrence: seen)
            for observer in observers { observer(line) }
        }
    }

    /// Events seen, and how many of them were not printed.
    public var counts: (total: Int, suppressed: Int) {
        state.withLock { ($0.total, $0.suppressed) }
    }

    /// A closing line when events were suppressed.
    public func summary() -> String? {
        let (total, suppressed) = counts
        return suppressed > 0 ? "\(total) events, \(suppressed) not shown (rate limit)" : nil
    }
}
