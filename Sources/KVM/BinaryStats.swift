// KVM: KVM's binary statistics (KVM_GET_STATS_FD on a VM or vCPU): the
// file's header and descriptors are read once, the data block on every read.
// Layout (KVM API documentation, "KVM_GET_STATS_FD"):
//
//   header   { u32 flags, name_size, num_desc, id_offset, desc_offset, data_offset }
//   id       char[name_size] at id_offset ("kvm-<pid>" / "kvm-<pid>/vcpu-<n>")
//   desc[i]  { u32 flags; s16 exponent; u16 size; u32 offset; u32 bucket_size;
//              char name[name_size] } at desc_offset + i * (16 + name_size)
//   data     u64[size] per descriptor at data_offset + desc.offset
//
// Flags bits 0–3: type (cumulative, instant, peak, linear/log histogram),
// 4–7: unit (none, bytes, seconds, cycles, boolean), 8–11: base (10, 2).
internal import CKVM
import Glibc

/// One statistic's description.
public struct KVMStatDescriptor: Sendable, Equatable {
    public enum Kind: UInt32, Sendable { case cumulative = 0, instant = 1, peak = 2, linearHistogram = 3, logHistogram = 4 }
    public enum Unit: UInt32, Sendable { case none = 0, bytes = 1, seconds = 2, cycles = 3, boolean = 4 }

    public var name: String
    /// nil for a type this reader does not know (newer kernels).
    public var kind: Kind?
    public var unit: Unit?
    /// Base 10 or 2, and the exponent: value × base^exponent is in `unit`.
    public var base: Int
    public var exponent: Int16
    /// How many u64 values (1 for counters, the bucket count for histograms).
    public var size: Int
    /// Offset of the values within the data block.
    public var offset: Int
    public var bucketSize: UInt32
}

/// A statistic's values at one read.
public struct KVMStat: Sendable, Equatable {
    public var descriptor: KVMStatDescriptor
    public var values: [UInt64]
    public var name: String { descriptor.name }
    /// The value of a counter (the first value).
    public var value: UInt64 { values.first ?? 0 }
}

/// The layout of a stats file, parsed from its bytes (pure: testable with
/// synthetic files).
public struct KVMStatsLayout: Sendable, Equatable {
    /// Descriptors larger than this (or more of them) are refused as malformed.
    static let maxDescriptors = 4096
    static let maxNameSize = 4096
    static let maxValuesPerStat = 1 << 16

    public var id: String
    public var descriptors: [KVMStatDescriptor]
    public var dataOffset: Int
    /// Bytes of the data block.
    public var dataSize: Int

    /// Parses the header, id and descriptors through `read(offset, count)`.
    public static func parse(_ read: (Int, Int) throws(KVMError) -> [UInt8]) throws(KVMError) -> KVMStatsLayout {
        let header = try read(0, 24)
        func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) }
        }
        let nameSize = Int(u32(header, 4)), count = Int(u32(header, 8))
        let idOffset = Int(u32(header, 12)), descOffset = Int(u32(header, 16)), dataOffset = Int(u32(header, 20))
        guard nameSize > 0, nameSize <= maxNameSize, count <= maxDescriptors else {
            throw .invalidArgument(request: "KVM stats file", reason: "header claims \(count) statistics with names of \(nameSize) bytes")
        }
        let id = cString(try read(idOffset, nameSize))
        let stride = 16 + nameSize
        let block = count == 0 ? [] : try read(descOffset, count * stride)
        var descriptors: [KVMStatDescriptor] = []
        var dataEnd = 0
        for i in 0..<count {
            let d = Array(block[(i * stride)..<((i + 1) * stride)])
            let flags = u32(d, 0)
            let exponent = Int16(bitPattern: UInt16(d[4]) | UInt16(d[5]) << 8)
            let size = Int(UInt16(d[6]) | UInt16(d[7]) << 8)
            let offset = Int(u32(d, 8))
            guard size <= maxValuesPerStat, offset % 8 == 0 else {
                throw .invalidArgument(request: "KVM stats file", reason: "statistic \(i) has \(size) values at offset \(offset)")
            }
            descriptors.append(KVMStatDescriptor(
                name: cString(Array(d[16...])), kind: .init(rawValue: flags & 0xF), unit: .init(rawValue: (flags >> 4) & 0xF),
                base: (flags >> 8) & 0xF == 1 ? 2 : 10, exponent: exponent, size: size, offset: offset, bucketSize: u32(d, 12)))
            dataEnd = max(dataEnd, offset + size * 8)
        }
        return KVMStatsLayout(id: id, descriptors: descriptors, dataOffset: dataOffset, dataSize: dataEnd)
    }

    /// The statistics, from the data block's bytes.
    public func values(from data: [UInt8]) -> [KVMStat] {
        descriptors.map { d in
            let values = (0..<d.size).map { k -> UInt64 in
                let at = d.offset + k * 8
                guard at + 8 <= data.count else { return 0 }
                return (0..<8).reduce(UInt64(0)) { $0 | UInt64(data[at + $1]) << (8 * UInt64($1)) }
            }
            return KVMStat(descriptor: d, values: values)
        }
    }

    private static func cString(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// An open stats file of a VM or vCPU. Reading is a pread of the data block:
/// safe from any thread while the guest runs.
public final class KVMStatsFile: Sendable {
    private let fd: CInt
    public let layout: KVMStatsLayout

    init(owner fd: CInt, what: String) throws(KVMError) {
        let statsFD = try Syscall.ioctl(fd, CKVM_GET_STATS_FD, "KVM_GET_STATS_FD (\(what))")
        do {
            layout = try KVMStatsLayout.parse { (offset, count) throws(KVMError) -> [UInt8] in
                try Syscall.pread(statsFD, count: count, offset: offset, what: "KVM stats \(what)")
            }
        } catch {
            Syscall.close(statsFD)
            throw error
        }
        self.fd = statsFD
    }

    deinit { Syscall.close(fd) }

    /// Every statistic's current values.
    public func read() throws(KVMError) -> [KVMStat] {
        layout.values(from: try Syscall.pread(fd, count: layout.dataSize, offset: layout.dataOffset, what: "KVM stats data"))
    }
}

extension VirtualMachine {
    /// KVM_GET_STATS_FD on the VM (needs KVM_CAP_BINARY_STATS_FD).
    public func statsFile() throws(KVMError) -> KVMStatsFile { try KVMStatsFile(owner: fd, what: "VM") }
}

extension VCPU {
    /// KVM_GET_STATS_FD on the vCPU (needs KVM_CAP_BINARY_STATS_FD).
    public func statsFile() throws(KVMError) -> KVMStatsFile { try KVMStatsFile(owner: fd, what: "vCPU") }
}
