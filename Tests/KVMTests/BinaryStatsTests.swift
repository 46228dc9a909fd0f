// KVMTests: KVM's binary statistics: the file layout parsed from synthetic
// bytes (any host), and the real VM and vCPU files where the host has them.
import DeflectTestSupport
import Foundation
import Testing
@testable import KVM

/// A stats file as KVM lays it out: header, id, descriptors, data.
private func statsFile(id: String, stats: [(name: String, flags: UInt32, values: [UInt64])], nameSize: Int = 48) -> [UInt8] {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func name(_ s: String) -> [UInt8] { Array(s.utf8.prefix(nameSize - 1)) + [UInt8](repeating: 0, count: nameSize - min(s.utf8.count, nameSize - 1)) }
    let idOffset = 24, descOffset = idOffset + nameSize
    let dataOffset = descOffset + stats.count * (16 + nameSize)
    var bytes = le(UInt32(0)) + le(UInt32(nameSize)) + le(UInt32(stats.count)) + le(UInt32(idOffset))
        + le(UInt32(descOffset)) + le(UInt32(dataOffset))
    bytes += name(id)
    var offset = 0
    for stat in stats {
        bytes += le(stat.flags) + le(Int16(-9)) + le(UInt16(stat.values.count)) + le(UInt32(offset)) + le(UInt32(0)) + name(stat.name)
        offset += stat.values.count * 8
    }
    for stat in stats { for v in stat.values { bytes += le(v) } }
    return bytes
}

private func reader(_ bytes: [UInt8]) -> (Int, Int) throws(KVMError) -> [UInt8] {
    { (offset, count) throws(KVMError) -> [UInt8] in
        guard offset >= 0, offset + count <= bytes.count else { throw .invalidArgument(request: "test", reason: "short") }
        return Array(bytes[offset..<offset + count])
    }
}

@Suite("KVM binary statistics: layout")
struct BinaryStatsLayoutTests {
    @Test func parsesHeaderDescriptorsAndData() throws {
        let bytes = statsFile(id: "kvm-42/vcpu-0", stats: [
            ("exits", 0x00, [1234]),
            ("halt_poll_success_hist", 0x04 | 0x20, [1, 2, 3]),   // log histogram, seconds
            ("max_mmu_page_hash_collisions", 0x02, [7]),
        ])
        let layout = try KVMStatsLayout.parse(reader(bytes))
        #expect(layout.id == "kvm-42/vcpu-0")
        #expect(layout.descriptors.map(\.name) == ["exits", "halt_poll_success_hist", "max_mmu_page_hash_collisions"])
        #expect(layout.descriptors[1].kind == .logHistogram && layout.descriptors[1].unit == .seconds)
        #expect(layout.descriptors[1].exponent == -9 && layout.descriptors[1].base == 10)
        let data = Array(bytes[layout.dataOffset..<layout.dataOffset + layout.dataSize])
        let stats = layout.values(from: data)
        #expect(stats[0].value == 1234)
        #expect(stats[1].values == [1, 2, 3])
        #expect(stats[2].descriptor.kind == .peak && stats[2].value == 7)
    }

    @Test func malformedHeadersAreErrorsNotCrashes() {
        var bytes = statsFile(id: "kvm-1", stats: [("exits", 0, [1])])
        bytes[8] = 0xFF; bytes[9] = 0xFF; bytes[10] = 0xFF   // num_desc far beyond the file
        #expect(throws: KVMError.self) { try KVMStatsLayout.parse(reader(bytes)) }
        #expect(throws: KVMError.self) { try KVMStatsLayout.parse(reader(Array(bytes.prefix(10)))) }
        var noName = statsFile(id: "kvm-1", stats: [])
        noName[4] = 0   // name_size 0
        #expect(throws: KVMError.self) { try KVMStatsLayout.parse(reader(noName)) }
    }
}

private let statsAvailable: Bool = {
    guard KVMAvailability.usable, let system = try? KVMSystem() else { return false }
    return ((try? system.check(.binaryStatsFD)) ?? 0) > 0
}()

@Suite("KVM binary statistics: this host", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)),
       .enabled(if: statsAvailable, "the host's KVM has no KVM_CAP_BINARY_STATS_FD"))
struct BinaryStatsHostTests {
    @Test func vmAndVCPUFilesHaveTheDocumentedCounters() throws {
        let system = try KVMSystem()
        let vm = try system.createVM()
        let vcpu = try vm.createVCPU(id: 0)
        let vmStats = try vm.statsFile()
        let vcpuStats = try vcpu.statsFile()
        #expect(vmStats.layout.id.hasPrefix("kvm-"))
        #expect(vcpuStats.layout.id.contains("vcpu-0"))
        let names = Set(try vcpuStats.read().map(\.name))
        for expected in ["exits", "io_exits", "halt_exits", "signal_exits", "insn_emulation"] {
            #expect(names.contains(expected), "\(expected) missing from \(names.sorted())")
        }
        #expect(try !vmStats.read().isEmpty)
    }
}
