// HypercallHandler.swift — the answer to every KVM_EXIT_HYPERCALL: decode,
// validate, update the page map, count, and produce the value for
// run->hypercall.ret. Shared by all vCPU threads, so its state sits behind a
// mutex; a guest can make it neither trap nor grow without bound.

import KVMABI
import Synchronization

/// Why `HypercallHandler.restore` refused a map.
public enum HypercallRestoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The saved map covers a different amount of guest memory.
    case sizeMismatch(expected: UInt64, actual: UInt64)
    /// The saved map is internally inconsistent.
    case corrupt([String])

    public var description: String {
        switch self {
        case .sizeMismatch(let expected, let actual):
            return "page map covers \(hex(actual)) bytes, guest memory is \(hex(expected))"
        case .corrupt(let problems):
            return "page map is inconsistent: " + problems.joined(separator: "; ")
        }
    }
}

public final class HypercallHandler: Sendable {
    /// What one exit produced: the value to store in `run->hypercall.ret`
    /// (always — success is 0) and what it meant, for the event stream.
    public struct Outcome: Sendable, Equatable {
        public var returnValue: UInt64
        /// The conversion applied (MAP_GPA_RANGE accepted).
        public var request: MapGPARangeRequest?
        /// Why a MAP_GPA_RANGE call was refused.
        public var error: MapGPARangeError?
        /// The hypercall number as handled (low 32 bits outside long mode).
        public var number: UInt64

        public init(returnValue: UInt64, request: MapGPARangeRequest? = nil, error: MapGPARangeError? = nil, number: UInt64) {
            self.returnValue = returnValue
            self.request = request
            self.error = error
            self.number = number
        }
    }

    /// At most this many distinct hypercall numbers get their own counter; a
    /// guest cycling through 2^64 numbers must not grow the table.
    public static let trackedNumbersLimit = 64
    /// The `callCounts` key under which all other numbers are counted. It is
    /// never used for a number of its own (a guest calling 2^64−1 lands here too).
    public static let otherNumbersKey: UInt64 = .max

    private struct State {
        var map: GPAAttributeMap
        var counts: [UInt64: UInt64] = [:]
        var otherCount: UInt64 = 0
    }

    /// The page map covers `[0, memorySize)`: the end of the last RAM range.
    public let memorySize: UInt64
    /// The guest-physical RAM ranges a conversion must lie inside (one of them).
    public let ramRanges: [Range<UInt64>]
    private let state: Mutex<State>

    /// All of `[0, memorySize)` starts as `initial` (private for a
    /// confidential guest, whose memory is encrypted until it says otherwise).
    public convenience init(memorySize: UInt64, initial: PageAttribute = .private) {
        self.init(ramRanges: [0..<memorySize], initial: initial)
    }

    /// Guest RAM in `ramRanges` (ascending, e.g. below the PCI hole and from
    /// 4 GiB); the page map covers up to the last one's end, the hole included.
    public init(ramRanges: [Range<UInt64>], initial: PageAttribute = .private) {
        self.ramRanges = ramRanges
        memorySize = ramRanges.last?.upperBound ?? 0
        state = Mutex(State(map: GPAAttributeMap(size: memorySize, initial: initial)))
    }

    /// Handles one exit. `arguments` are a0…a5 (missing ones read as 0);
    /// `longMode` is bit 0 of `run->hypercall.flags`. Unknown numbers get
    /// `-KVM_ENOSYS`; the map changes only for a valid MAP_GPA_RANGE.
    public func handle(number: UInt64, arguments: [UInt64], longMode: Bool) -> Outcome {
        // Outside long mode the guest passed 32-bit registers; KVM truncates
        // them the same way before exiting, this keeps the handler honest if
        // it is fed raw values.
        let mask: UInt64 = longMode ? .max : 0xFFFF_FFFF
        let nr = number & mask
        func argument(_ index: Int) -> UInt64 {
            index < arguments.count ? arguments[index] & mask : 0
        }

        guard nr == HypercallNumber.mapGPARange else {
            state.withLock { Self.count(nr, in: &$0) }
            return Outcome(returnValue: KVMErrorCode.returnValue(KVMErrorCode.enosys), number: nr)
        }

        // Decoding is pure: do it before taking the lock.
        var decoded = MapGPARangeDecoder.decode(a0: argument(0), a1: argument(1), a2: argument(2),
                                               memoryLimit: memorySize)
        if case let .success(request) = decoded,
           !ramRanges.contains(where: { $0.lowerBound <= request.range.lowerBound && request.range.upperBound <= $0.upperBound }) {
            decoded = .failure(.notRAM(start: request.range.lowerBound, end: request.range.upperBound))
        }
        switch decoded {
        case .success(let request):
            state.withLock {
                Self.count(nr, in: &$0)
                $0.map.set(request.range, to: request.attribute)
            }
            return Outcome(returnValue: 0, request: request, number: nr)
        case .failure(let error):
            state.withLock { Self.count(nr, in: &$0) }
            return Outcome(returnValue: KVMErrorCode.returnValue(error.returnCode), error: error, number: nr)
        }
    }

    /// A copy of the page map (copy-on-write: cheap until the next update).
    public func snapshot() -> GPAAttributeMap {
        state.withLock { $0.map }
    }

    /// Replaces the page map, e.g. from a snapshot. It must cover exactly
    /// this guest's memory and be internally consistent.
    public func restore(_ map: GPAAttributeMap) throws(HypercallRestoreError) {
        guard map.size == memorySize else {
            throw .sizeMismatch(expected: memorySize, actual: map.size)
        }
        let problems = map.invariantViolations()
        guard problems.isEmpty else { throw .corrupt(problems) }
        state.withLock { $0.map = map }
    }

    /// Calls per hypercall number, every call counted once (also refused
    /// ones). Numbers beyond the first `trackedNumbersLimit` distinct ones
    /// are summed under `otherNumbersKey`.
    public var callCounts: [UInt64: UInt64] {
        state.withLock { state in
            var counts = state.counts
            if state.otherCount > 0 {
                counts[Self.otherNumbersKey] = state.otherCount
            }
            return counts
        }
    }

    private static func count(_ number: UInt64, in state: inout State) {
        if let current = state.counts[number] {
            state.counts[number] = current &+ 1
        } else if number != otherNumbersKey && state.counts.count < trackedNumbersLimit {
            state.counts[number] = 1
        } else {
            state.otherCount &+= 1
        }
    }
}
