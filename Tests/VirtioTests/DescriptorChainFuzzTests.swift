// DescriptorChainFuzzTests.swift — seeded random queues written by a hostile
// driver (loops, out-of-RAM addresses, zero lengths, chains longer than the
// queue, indirect tables inside indirect tables, wild available indices,
// overlapping rings and buffers over the rings), served through the whole
// transport: every run ends, nothing is read or written outside RAM, and the
// device either serves or goes to DEVICE_NEEDS_RESET with a reason.

import Testing
import PCI
import SeededRandom
import Virtio

@Suite struct DescriptorChainFuzzTests {
    static let ramSize = 0x1_0000

    /// An address: mostly inside the small RAM, sometimes at its edge or far out.
    static func address(_ random: inout SeededGenerator) -> UInt64 {
        switch Int.random(in: 0..<10, using: &random) {
        case 0: return UInt64(ramSize) - UInt64.random(in: 0...32, using: &random)
        case 1: return UInt64.random(in: 0...UInt64.max, using: &random)
        case 2: return UInt64.max - UInt64.random(in: 0...64, using: &random)
        default: return UInt64.random(in: 0..<UInt64(ramSize), using: &random)
        }
    }

    static func length(_ random: inout SeededGenerator) -> UInt32 {
        switch Int.random(in: 0..<8, using: &random) {
        case 0: return 0
        case 1: return UInt32.random(in: 0...UInt32.max, using: &random)
        case 2: return 16 * UInt32.random(in: 1...40, using: &random) // an indirect table's length
        default: return UInt32.random(in: 1...512, using: &random)
        }
    }

    /// A descriptor: with probability `hostility` anything, else a plain
    /// in-RAM buffer that may chain on (and may still end up in a loop or
    /// with readable after writable).
    static func descriptor(_ random: inout SeededGenerator, size: UInt16, hostility: Double) -> (UInt64, UInt32, UInt16, UInt16) {
        if Double.random(in: 0..<1, using: &random) >= hostility {
            let flags = (Int.random(in: 0..<3, using: &random) == 0 ? TestRing.next : 0) | (Bool.random(using: &random) ? TestRing.write : 0)
            return (UInt64.random(in: 0x9000..<UInt64(ramSize - 512), using: &random), UInt32.random(in: 1...256, using: &random),
                    flags, UInt16.random(in: 0..<size, using: &random))
        }
        let flags = UInt16.random(in: 0...7, using: &random) | (Bool.random(using: &random) ? 1 : 0)
        let next = Int.random(in: 0..<4, using: &random) == 0 ? UInt16.random(in: 0...UInt16.max, using: &random)
                                                             : UInt16.random(in: 0..<size, using: &random)
        return (address(&random), length(&random), flags, next)
    }

    @Test func hostileQueuesNeverCrashHangOrEscapeRAM() throws {
        var random = SeededGenerator(seed: 0x5EED_F0CC)
        var served = 0, broken = 0, refusedAtEnable = 0
        for _ in 0..<1500 {
            let memory = InMemoryGuestMemory(size: Self.ramSize)
            let size = UInt16(1) << UInt16.random(in: 0...4, using: &random)
            let hostility: Double = [0.0, 0.02, 0.1, 0.5, 1.0].randomElement(using: &random) ?? 1
            let device = EchoDevice(queueMaxSizes: [16])
            let transport = try VirtioPCIDevice(device: device, memory: memory)
            let driver = TestDriver(transport: transport)
            let features = Bool.random(using: &random) ? standardFeatures : VirtioFeature.version1
            #expect(driver.negotiate(features))
            let ring = TestRing(memory: memory, size: size, base: 0x1000 * UInt64.random(in: 0...4, using: &random))
            // Descriptor table, then indirect tables scattered in RAM.
            for index in 0..<Int(size) {
                let (address, length, flags, next) = Self.descriptor(&random, size: size, hostility: hostility)
                try ring.setDescriptor(index, address: address, length: length, flags: flags, next: next)
            }
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                let table = UInt64.random(in: 0..<UInt64(Self.ramSize - 640), using: &random) & ~15
                for index in 0..<Int.random(in: 1...40, using: &random) {
                    let (address, length, flags, next) = Self.descriptor(&random, size: 40, hostility: hostility)
                    try ring.setDescriptor(index, address: address, length: length, flags: flags, next: next, table: table)
                }
            }
            // Sometimes a writable buffer over the available ring's index: the
            // device's own writes then move it.
            if Int.random(in: 0..<6, using: &random) == 0 {
                try ring.setDescriptor(0, address: ring.availableRing, length: 4, flags: TestRing.write)
            }
            for _ in 0..<Int.random(in: 0...Int(size) + 2, using: &random) {
                try ring.makeAvailable(Int.random(in: 0..<8, using: &random) == 0 ? UInt16.random(in: 0...UInt16.max, using: &random)
                                                                                  : UInt16.random(in: 0..<size, using: &random))
            }
            if Int.random(in: 0..<8, using: &random) == 0 { try ring.setAvailableIndex(UInt16.random(in: 0...UInt16.max, using: &random)) }
            // Sometimes overlapping or misplaced rings.
            var used = ring.usedRing
            switch Int.random(in: 0..<20, using: &random) {
            case 0: used = ring.availableRing & ~3
            case 1: used = ring.descriptorTable
            case 2: used = UInt64(Self.ramSize) - 8
            default: break
            }
            driver.write(Common.queueSelect, 2, 0)
            driver.write(Common.queueSize, 2, UInt64(size))
            driver.write(Common.queueDesc, 8, ring.descriptorTable)
            driver.write(Common.queueDriver, 8, ring.availableRing)
            driver.write(Common.queueDevice, 8, used)
            driver.write(Common.queueEnable, 2, 1)
            driver.driverOK()
            guard transport.queues[0].ready else {
                #expect(driver.status & VirtioStatus.deviceNeedsReset != 0)
                refusedAtEnable += 1
                continue
            }
            // Serve until the queue is drained or the device breaks; each
            // call does at most one batch, so the loop is bounded too.
            var calls = 0
            while transport.notify(queue: 0), calls < 64 { calls += 1 }
            #expect(calls < 64)
            if driver.status & VirtioStatus.deviceNeedsReset != 0 {
                #expect(transport.brokenReason != nil)
                broken += 1
            } else {
                #expect(transport.brokenReason == nil)
                served += device.served
            }
            // Whatever happened, the device published exactly what it served.
            #expect(Int(transport.queues[0].nextUsed) == device.served)
        }
        // The generator reaches every outcome.
        #expect(served > 100 && broken > 100 && refusedAtEnable > 50)
    }

    @Test func aBufferOverTheAvailableIndexCannotKeepTheDeviceBusy() throws {
        let memory = InMemoryGuestMemory(size: Self.ramSize)
        let device = EchoDevice(queueMaxSizes: [4])
        let transport = try VirtioPCIDevice(device: device, memory: memory)
        let driver = TestDriver(transport: transport)
        let ring = TestRing(memory: memory, size: 4, base: 0x1000)
        // Each request echoes 0x03,0x00 onto the available index: it jumps ahead by three every time.
        try memory.write([0x00, 0x03], at: 0x8000)
        try ring.setDescriptor(0, address: 0x8000, length: 2, flags: TestRing.next, next: 1)
        try ring.setDescriptor(1, address: ring.availableRing + 2, length: 2, flags: TestRing.write)
        for _ in 0..<4 { try ring.makeAvailable(0) }
        #expect(driver.start(ring))
        var calls = 0
        while transport.notify(queue: 0), calls < 100 { calls += 1 }
        #expect(calls < 100)
        #expect(device.served <= 4 * (calls + 1))
    }
}
