// HypercallHandlerTests.swift — the exit handler as the VMM uses it: a return
// value on every exit, unknown numbers, 32-bit callers, bounded counters
// under garbage, concurrent vCPU threads, snapshot and restore.

import SeededRandom
import Testing
import Hypercalls

@Suite struct HypercallHandlerTests {
    static let memory: UInt64 = 64 << 20
    static let einval = KVMErrorCode.returnValue(KVMErrorCode.einval)
    static let enosys = KVMErrorCode.returnValue(KVMErrorCode.enosys)

    @Test func successReturnsZeroAndUpdatesTheMap() {
        let handler = HypercallHandler(memorySize: Self.memory)
        let outcome = handler.handle(number: 12, arguments: [0x20_0000, 512, 1, 0, 0, 0], longMode: true)
        #expect(outcome.returnValue == 0)
        #expect(outcome.error == nil)
        #expect(outcome.request?.range == 0x20_0000..<0x40_0000)
        #expect(handler.snapshot().sharedRanges == [0x20_0000..<0x40_0000])
    }

    @Test func refusedCallsLeaveTheMapAlone() {
        let handler = HypercallHandler(memorySize: Self.memory)
        let calls: [[UInt64]] = [[0, 1, 0x20], [0, 1, 3], [0, 0, 0], [0x1000, 512, 1],
                                 [0, UInt64.max, 0], [Self.memory - 4096, 2, 0], [UInt64.max - 4095, 1, 0]]
        for arguments in calls {
            let outcome = handler.handle(number: 12, arguments: arguments, longMode: true)
            #expect(outcome.returnValue == Self.einval)
            #expect(outcome.error != nil)
            #expect(outcome.request == nil)
        }
        #expect(handler.snapshot() == GPAAttributeMap(size: Self.memory))
        #expect(handler.callCounts == [12: UInt64(calls.count)])
    }

    /// RAM below 3 GiB and from 4 GiB: a conversion above 4 GiB is taken; one
    /// in the hole between, or across it, is refused and changes nothing.
    @Test func conversionsMustLieInsideOneRAMRange() {
        let fourGiB: UInt64 = 1 << 32
        let handler = HypercallHandler(ramRanges: [0..<0xC000_0000, fourGiB..<fourGiB + (1 << 30)])
        #expect(handler.memorySize == fourGiB + (1 << 30))
        let high = handler.handle(number: 12, arguments: [fourGiB + 0x20_0000, 512, 1], longMode: true)
        #expect(high.returnValue == 0 && high.request?.range == fourGiB + 0x20_0000..<fourGiB + 0x40_0000)
        let before = handler.snapshot()
        for (start, pages) in [(UInt64(0xC000_0000), UInt64(1)), (0xBFFF_F000, 2), (fourGiB - 4096, 2), (0, 0x10_0001)] {
            let outcome = handler.handle(number: 12, arguments: [start, pages, 0], longMode: true)
            #expect(outcome.returnValue == Self.einval)
            #expect(outcome.error == .notRAM(start: start, end: start + pages * 4096), "\(String(describing: outcome.error))")
        }
        #expect(handler.snapshot() == before)
        #expect(handler.snapshot().sharedRanges == [fourGiB + 0x20_0000..<fourGiB + 0x40_0000])
    }

    @Test func unknownNumbersGetENOSYS() {
        let handler = HypercallHandler(memorySize: Self.memory)
        for number: UInt64 in [0, 1, 5, 11, 13, 1000, .max] {
            let outcome = handler.handle(number: number, arguments: [], longMode: true)
            #expect(outcome == HypercallHandler.Outcome(returnValue: Self.enosys, number: number))
        }
        #expect(handler.snapshot().rangeCount == 1)
    }

    @Test func missingArgumentsReadAsZero() {
        let handler = HypercallHandler(memorySize: Self.memory)
        #expect(handler.handle(number: 12, arguments: [], longMode: true).error == .zeroPages)
        #expect(handler.handle(number: 12, arguments: [0x1000, 1], longMode: true).returnValue == 0)
        #expect(handler.snapshot().sharedRanges == [0x1000..<0x2000])
    }

    @Test func thirtyTwoBitCallersSeeTruncatedRegisters() {
        let handler = HypercallHandler(memorySize: Self.memory)
        // High halves are garbage a 32-bit guest cannot have meant.
        let outcome = handler.handle(number: 0xDEAD_0000_0000_000C,
                                     arguments: [0xFFFF_0000_0000_3000, 0x1_0000_0001, 0xABCD_0000_0000_0000],
                                     longMode: false)
        #expect(outcome.number == 12)
        #expect(outcome.returnValue == 0)
        #expect(outcome.request?.range == 0x3000..<0x4000)
        #expect(outcome.request?.attribute == .shared)
        // The same registers in long mode are refused.
        let long = handler.handle(number: 12, arguments: [0xFFFF_0000_0000_3000, 1, 0], longMode: true)
        #expect(long.returnValue == Self.einval)
    }

    @Test func countersStayBoundedUnderGarbage() {
        let handler = HypercallHandler(memorySize: Self.memory)
        var rng = SeededGenerator(seed: 42)
        var returnValues = Set<UInt64>()
        let calls = 50_000
        for _ in 0..<calls {
            let number = rng.next() % 4 == 0 ? 12 : rng.next()
            let arguments = (0..<Int(rng.next() % 8)).map { _ in rng.next() >> (rng.next() % 64) }
            let outcome = handler.handle(number: number, arguments: arguments, longMode: rng.next() & 1 == 0)
            returnValues.insert(outcome.returnValue)
            // A defined answer every time.
            #expect(outcome.returnValue == 0 || outcome.returnValue == Self.einval || outcome.returnValue == Self.enosys)
            #expect((outcome.returnValue == 0) == (outcome.request != nil))
        }
        let counts = handler.callCounts
        #expect(counts.count <= HypercallHandler.trackedNumbersLimit + 1)
        #expect(counts.values.reduce(0, +) == UInt64(calls))
        #expect(counts[HypercallHandler.otherNumbersKey, default: 0] > 0)
        let map = handler.snapshot()
        #expect(map.rangeCount <= Int(Self.memory / 4096))
        #expect(invariantProblems(map) == nil)
    }

    @Test func concurrentVCPUsOnDisjointRanges() async {
        let handler = HypercallHandler(memorySize: Self.memory)
        let vcpus = 8, callsPerVCPU = 2000
        await withTaskGroup(of: Void.self) { group in
            for vcpu in 0..<vcpus {
                group.addTask {
                    // vCPU i owns the i-th 8 MiB slice and shares its even pages.
                    let base = UInt64(vcpu) * (8 << 20)
                    for call in 0..<callsPerVCPU {
                        let page = UInt64(call % 1024) * 2
                        _ = handler.handle(number: 12, arguments: [base + page * 4096, 1, 0], longMode: true)
                        _ = handler.handle(number: 99, arguments: [], longMode: true)
                    }
                }
            }
        }
        let map = handler.snapshot()
        #expect(map.sharedRanges.count == vcpus * 1024)
        #expect(invariantProblems(map) == nil)
        #expect(handler.callCounts == [12: UInt64(vcpus * callsPerVCPU), 99: UInt64(vcpus * callsPerVCPU)])
    }

    @Test func snapshotAndRestore() throws {
        let handler = HypercallHandler(memorySize: Self.memory)
        _ = handler.handle(number: 12, arguments: [0, 16, 0], longMode: true)
        let saved = handler.snapshot()
        _ = handler.handle(number: 12, arguments: [0, 16384, 0], longMode: true)
        #expect(handler.snapshot().sharedRanges == [0..<Self.memory])
        #expect(saved.sharedRanges == [0..<0x10000])   // the snapshot did not move
        try handler.restore(saved)
        #expect(handler.snapshot() == saved)

        #expect(throws: HypercallRestoreError.sizeMismatch(expected: Self.memory, actual: 4096)) {
            try handler.restore(GPAAttributeMap(size: 4096))
        }
    }
}
