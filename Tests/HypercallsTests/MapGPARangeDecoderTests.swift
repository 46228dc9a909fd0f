// MapGPARangeDecoderTests.swift — MAP_GPA_RANGE argument decoding: the ABI
// constants, valid requests of each page size, and one test per invalid
// field (reserved bits, page size, alignment, zero pages, overflow, bounds).

import Testing
import Hypercalls

@Suite struct MapGPARangeDecoderTests {
    static let mib: UInt64 = 1 << 20
    static let gib: UInt64 = 1 << 30
    static let memory: UInt64 = 4 * gib

    func decode(_ a0: UInt64, _ a1: UInt64, _ a2: UInt64, limit: UInt64 = memory) -> Result<MapGPARangeRequest, MapGPARangeError> {
        MapGPARangeDecoder.decode(a0: a0, a1: a1, a2: a2, memoryLimit: limit)
    }

    @Test func abiConstantsMatchKvmPara() {
        #expect(HypercallNumber.mapGPARange == 12)
        #expect(KVMErrorCode.enosys == 1000)
        #expect(KVMErrorCode.einval == 22)
        #expect(KVMErrorCode.efault == 14)
        #expect(KVMErrorCode.e2big == 7)
        #expect(KVMErrorCode.eperm == 1)
        #expect(KVMErrorCode.eopnotsupp == 95)
        #expect(KVMErrorCode.returnValue(22) == 0xFFFF_FFFF_FFFF_FFEA)
        #expect(KVMErrorCode.returnValue(1000) == UInt64(bitPattern: -1000))
        #expect(KVMErrorCode.returnValue(0) == 0)
        #expect(MapGPARangeAttributes.encrypted == 0x10)
        #expect(MapGPARangeAttributes.word(.private, pageSizeEncoding: 2) == 0x12)
    }

    @Test func valid4KRequests() throws {
        let shared = try decode(0x1000, 3, 0).get()
        #expect(shared == MapGPARangeRequest(start: 0x1000, pageCount: 3, pageSize: 4096, attribute: .shared, byteLength: 0x3000))
        #expect(shared.range == 0x1000..<0x4000)
        let priv = try decode(0, 1, 0x10).get()
        #expect(priv.attribute == .private)
        // The last page of memory is allowed; the end may equal the limit.
        let last = try decode(Self.memory - 4096, 1, 0).get()
        #expect(last.range.upperBound == Self.memory)
    }

    @Test func valid2MAnd1GRequests() throws {
        let twoMeg = try decode(2 * Self.mib, 1024, MapGPARangeAttributes.pageSize2M | 0x10).get()
        #expect(twoMeg.pageSize == 2 * Self.mib)
        #expect(twoMeg.byteLength == 4 * Self.mib)
        #expect(twoMeg.pageCount == 1024)
        let oneGig = try decode(Self.gib, 262_144, MapGPARangeAttributes.pageSize1G).get()
        #expect(oneGig.pageSize == Self.gib)
        #expect(oneGig.range == Self.gib..<2 * Self.gib)
        #expect(oneGig.attribute == .shared)
    }

    @Test(arguments: [UInt64(1) << 5, 1 << 6, 1 << 32, 1 << 63, 0xFFFF_FFFF_FFFF_FFE0, 0x30])
    func reservedAttributeBits(bits: UInt64) {
        let a2 = bits | 0x10
        #expect(decode(0, 1, a2) == .failure(.reservedAttributeBits(a2)))
    }

    @Test(arguments: UInt64(3)...15)
    func badPageSizeEncodings(encoding: UInt64) {
        #expect(decode(0, 512, encoding) == .failure(.badPageSize(encoding)))
        #expect(decode(0, 512, encoding | 0x10) == .failure(.badPageSize(encoding)))
    }

    @Test func zeroPages() {
        for a2: UInt64 in [0, 0x10, 1, 2] {
            #expect(decode(0, 0, a2) == .failure(.zeroPages))
        }
    }

    @Test func misalignedStart() {
        #expect(decode(0x1001, 1, 0) == .failure(.misaligned(start: 0x1001, pageSize: 4096)))
        #expect(decode(0x1000, 512, 1) == .failure(.misaligned(start: 0x1000, pageSize: 2 * Self.mib)))
        #expect(decode(Self.mib, 512, 1) == .failure(.misaligned(start: Self.mib, pageSize: 2 * Self.mib)))
        #expect(decode(2 * Self.mib, 262_144, 2) == .failure(.misaligned(start: 2 * Self.mib, pageSize: Self.gib)))
    }

    @Test func misalignedLength() {
        // 2M page size but 511 4K pages, 1G page size but 2M of pages.
        #expect(decode(0, 511, 1) == .failure(.misalignedLength(byteLength: 511 * 4096, pageSize: 2 * Self.mib)))
        #expect(decode(0, 512, 2) == .failure(.misalignedLength(byteLength: 2 * Self.mib, pageSize: Self.gib)))
    }

    @Test func pageCountOverflow() {
        // a1 * 4096 does not fit in 64 bits.
        #expect(decode(0, UInt64.max, 0) == .failure(.overflow))
        #expect(decode(0, (UInt64.max >> 12) + 1, 0) == .failure(.overflow))
        // The largest count that fits is then caught by the end check.
        if case .failure(.overflow) = decode(4096, UInt64.max >> 12, 0) {} else {
            Issue.record("start + length overflow not reported")
        }
    }

    @Test func startPlusLengthOverflow() {
        #expect(decode(UInt64.max - 4095, 1, 0) == .failure(.overflow))
        #expect(decode(UInt64.max - 4095, 2, 0) == .failure(.overflow))
        #expect(decode(0xFFFF_FFFF_FFE0_0000, 1024, 1) == .failure(.overflow))
    }

    @Test func pastTheEndOfMemory() {
        let limit = Self.memory
        #expect(decode(limit, 1, 0) == .failure(.outsideMemory(start: limit, end: limit + 4096, limit: limit)))
        #expect(decode(limit - 4096, 2, 0) == .failure(.outsideMemory(start: limit - 4096, end: limit + 4096, limit: limit)))
        #expect(decode(0, 1, 0, limit: 0) == .failure(.outsideMemory(start: 0, end: 4096, limit: 0)))
        #expect(decode(1 << 52, 1, 0) == .failure(.outsideMemory(start: 1 << 52, end: (1 << 52) + 4096, limit: limit)))
    }

    @Test func everyErrorIsEINVALAndDescribed() {
        let errors: [MapGPARangeError] = [
            .reservedAttributeBits(0x20), .badPageSize(3), .zeroPages, .misaligned(start: 1, pageSize: 4096),
            .misalignedLength(byteLength: 4096, pageSize: 2 * Self.mib), .overflow,
            .outsideMemory(start: 0, end: 1, limit: 0),
        ]
        for error in errors {
            #expect(error.returnCode == KVMErrorCode.einval)
            #expect(!error.description.isEmpty)
        }
        #expect(MapGPARangeError.misaligned(start: 0x1000, pageSize: 2 * Self.mib).description.contains("2 MiB"))
    }

    @Test func checkOrderIsFixed() {
        // Several faults at once: the first in the documented order wins.
        #expect(decode(1, 0, 0x23) == .failure(.reservedAttributeBits(0x23)))
        #expect(decode(1, 0, 0x3) == .failure(.badPageSize(3)))
        #expect(decode(1, 0, 0) == .failure(.zeroPages))
        #expect(decode(1, UInt64.max, 0) == .failure(.overflow))
        #expect(decode(UInt64.max, 1, 0) == .failure(.misaligned(start: UInt64.max, pageSize: 4096)))
    }

    @Test func agreesWithReferenceOnEdgeValues() {
        let values: [UInt64] = [0, 1, 4095, 4096, 0x1FFFFF, 0x200000, 0x3FFF_FFFF, 0x4000_0000,
                                Self.memory - 4096, Self.memory, UInt64.max >> 12, (UInt64.max >> 12) + 1,
                                UInt64.max - 4095, UInt64.max]
        let attributes: [UInt64] = [0, 1, 2, 3, 0x10, 0x11, 0x12, 0x1F, 0x20, UInt64.max]
        for a0 in values {
            for a1 in values {
                for a2 in attributes {
                    let expected = referenceDecode(a0: a0, a1: a1, a2: a2, limit: Self.memory)
                    #expect(decode(a0, a1, a2) == expected, "a0=\(a0) a1=\(a1) a2=\(a2)")
                }
            }
        }
    }
}
