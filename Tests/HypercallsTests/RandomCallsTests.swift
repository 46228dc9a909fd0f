// RandomCallsTests.swift — hostile and random MAP_GPA_RANGE traffic through
// the handler, checked against the per-page reference model and the
// independent reference validator: every return value, every point query,
// the whole map every `checkEvery` calls and at the end, and the invariants.
//
// Call count: 1,000,000 by default. Set HYPERCALL_RANDOM_CALLS=<n> to run a
// different number (e.g. fewer while iterating on the map).

import SeededRandom
import Foundation
import Testing
import Hypercalls

@Suite struct RandomCallsTests {
    static let memory: UInt64 = 64 << 20
    static let checkEvery = 2000

    static var callCount: Int {
        if let text = ProcessInfo.processInfo.environment["HYPERCALL_RANDOM_CALLS"], let n = Int(text), n > 0 {
            return n
        }
        return 1_000_000
    }

    /// One random call: mostly plausible requests of every page size (some
    /// straddling the end of memory or misaligned), the rest garbage.
    static func randomArguments(_ rng: inout SeededGenerator) -> (a0: UInt64, a1: UInt64, a2: UInt64) {
        let roll = rng.next() % 100
        let attribute: UInt64 = rng.next() & 1 == 0 ? 0 : MapGPARangeAttributes.encrypted
        switch roll {
        case 0..<70:   // 4 KiB pages, 1..64 of them
            let pages = 1 + rng.next() % 64
            let start = (rng.next() % (memory / 4096 + 16)) * 4096
            return (start, pages, attribute)
        case 70..<82:  // 2 MiB pages, 1..4 of them
            let count = 1 + rng.next() % 4
            let start = (rng.next() % (memory >> 21 + 2)) << 21
            return (start, count * 512, attribute | 1)
        case 82..<85:  // 1 GiB: always past the end of this memory
            return ((rng.next() % 4) << 30, 262_144 * (1 + rng.next() % 2), attribute | 2)
        case 85..<90:  // misaligned start or length for the page size
            let encoding = rng.next() % 2 == 0 ? UInt64(1) : 2
            return ((rng.next() % memory) & ~0xFFF, 1 + rng.next() % 2048, attribute | encoding)
        case 90..<95:  // edge values that overflow or are zero
            let edges: [UInt64] = [0, 1, 4095, 4096, memory, memory - 4096, UInt64.max, UInt64.max >> 12,
                                   (UInt64.max >> 12) + 1, UInt64.max - 4095, 1 << 63]
            return (edges[Int(rng.next() % UInt64(edges.count))], edges[Int(rng.next() % UInt64(edges.count))], attribute)
        default:       // garbage in every register
            return (rng.next(), rng.next() >> (rng.next() % 64), rng.next() >> (rng.next() % 64))
        }
    }

    @Test func randomCallsMatchTheReferenceModel() {
        var rng = SeededGenerator(seed: 0xDEF1EC7)
        let handler = HypercallHandler(memorySize: Self.memory)
        var model = PageModel(size: Self.memory)
        var accepted = 0
        var failures = 0
        let total = Self.callCount

        for call in 1...total {
            let (a0, a1, a2) = Self.randomArguments(&rng)
            let outcome = handler.handle(number: HypercallNumber.mapGPARange, arguments: [a0, a1, a2, 0, 0, 0], longMode: true)
            let expected = referenceDecode(a0: a0, a1: a1, a2: a2, limit: Self.memory)
            switch expected {
            case .success(let request):
                accepted += 1
                model.set(request.range, to: request.attribute)
                if outcome != HypercallHandler.Outcome(returnValue: 0, request: request, number: 12) {
                    Issue.record("call \(call) (\(a0), \(a1), \(a2)): \(outcome), expected \(request)")
                    failures += 1
                }
            case .failure(let error):
                if outcome != HypercallHandler.Outcome(returnValue: KVMErrorCode.returnValue(KVMErrorCode.einval), error: error, number: 12) {
                    Issue.record("call \(call) (\(a0), \(a1), \(a2)): \(outcome), expected \(error)")
                    failures += 1
                }
            }
            if call % Self.checkEvery == 0 || call == total {
                let map = handler.snapshot()
                if let problem = difference(map.ranges, model.ranges) {
                    Issue.record("after \(call) calls: \(problem)")
                    failures += 1
                }
                if let problem = invariantProblems(map) {
                    Issue.record("after \(call) calls: \(problem)")
                    failures += 1
                }
                // A handful of point queries against the model.
                for _ in 0..<64 {
                    let address = rng.next() % (Self.memory + 8192)
                    if map.attribute(at: address) != model.attribute(at: address) {
                        Issue.record("after \(call) calls: attribute(at: \(address)) differs")
                        failures += 1
                    }
                }
            }
            if failures > 20 { break }   // enough to diagnose; don't flood
        }
        #expect(failures == 0)
        // The mix must exercise both paths substantially.
        #expect(accepted > total / 2)
        #expect(accepted < total)
        #expect(handler.callCounts == [12: UInt64(total)])
    }
}
