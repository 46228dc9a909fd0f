// Migration: the payloads of the handshake and of memory messages, the
// limits a receiver holds a sender's claims to, and the receiver's check of
// a hello against this host (docs/migration-protocol.md).
import Snapshot

/// The sender's first message: what it is about to send.
///
///   +0  magic "DFLCTMIG" 8 | +8 protocol version u32 | +12 KVM API u32
///   +16 CPU vendor 12 (NUL-padded) | +28 family u32 | +32 model u32 | +36 stepping u32
///   +40 guest RAM bytes u64 | +48 vCPU count u32 | +52 flags u32 (bit 0 authenticated)
///   +56 the sender's session nonce 32
///   +88 CPU model length u32 | +92 the CPU model (JSON, at most 64 KiB; empty: the host's CPUID)
public struct MigrationHello: Sendable, Equatable {
    public static let magic: [UInt8] = Array("DFLCTMIG".utf8)
    /// The protocol version this code speaks.
    public static let protocolVersion: UInt32 = 3
    /// The hello without its CPU model.
    public static let fixedSize = 92
    /// The largest CPU model a hello may carry.
    public static let maximumCPUModelBytes = 64 << 10
    static let vendorSize = 12

    public var protocolVersion: UInt32
    public var kvmAPIVersion: UInt32
    public var host: SnapshotHost
    public var memoryBytes: UInt64
    public var vcpuCount: UInt32
    public var authenticated: Bool
    /// `SessionNonce.size` random bytes, new for each connection.
    public var nonce: [UInt8]
    /// The guest's CPU model as the VMM serialises it (opaque here), so the
    /// receiver refuses a model its host cannot give before any memory is
    /// sent. Empty: the guest sees its host's CPUID.
    public var cpuModel: [UInt8]

    public init(protocolVersion: UInt32 = Self.protocolVersion, kvmAPIVersion: UInt32, host: SnapshotHost,
                memoryBytes: UInt64, vcpuCount: UInt32, authenticated: Bool, nonce: [UInt8] = SessionNonce.random(),
                cpuModel: [UInt8] = []) {
        (self.protocolVersion, self.kvmAPIVersion, self.host) = (protocolVersion, kvmAPIVersion, host)
        (self.memoryBytes, self.vcpuCount, self.authenticated, self.nonce) = (memoryBytes, vcpuCount, authenticated, nonce)
        self.cpuModel = cpuModel
    }

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(bytes: Self.magic)
        writer.put(protocolVersion)
        writer.put(kvmAPIVersion)
        let vendor = Array(host.vendor.utf8.prefix(Self.vendorSize))
        writer.bytes += vendor + [UInt8](repeating: 0, count: Self.vendorSize - vendor.count)
        writer.put(host.family)
        writer.put(host.model)
        writer.put(host.stepping)
        writer.put(memoryBytes)
        writer.put(vcpuCount)
        writer.put(UInt32(authenticated ? 1 : 0))
        writer.bytes += nonce.prefix(SessionNonce.size) + [UInt8](repeating: 0, count: max(0, SessionNonce.size - nonce.count))
        let model = cpuModel.prefix(Self.maximumCPUModelBytes)
        writer.put(UInt32(model.count))
        writer.bytes += model
        return writer.bytes
    }

    public init(decoding payload: [UInt8]) throws(MigrationError) {
        guard payload.prefix(8).elementsEqual(Self.magic) else { throw .malformed("the hello does not start with \"DFLCTMIG\"") }
        var reader = ByteReader(payload[8...])
        protocolVersion = try reader.get("protocol version")
        // Another version's hello has another size: say which version, not which size.
        guard protocolVersion == Self.protocolVersion else {
            throw .malformed("protocol version \(protocolVersion) is not supported (this receiver speaks version \(Self.protocolVersion))")
        }
        guard payload.count >= Self.fixedSize else {
            throw .malformed("a hello is at least \(Self.fixedSize) bytes, this one \(payload.count)")
        }
        kvmAPIVersion = try reader.get("KVM API version")
        let vendorBytes = try reader.bytes(Self.vendorSize, "CPU vendor")
        let vendor = vendorBytes.prefix { $0 != 0 }
        guard vendor.allSatisfy({ (0x20...0x7E).contains($0) }) else { throw .malformed("the CPU vendor is not printable ASCII") }
        let family: UInt32 = try reader.get("CPU family")
        let model: UInt32 = try reader.get("CPU model")
        let stepping: UInt32 = try reader.get("CPU stepping")
        host = SnapshotHost(vendor: String(decoding: vendor, as: UTF8.self), family: family, model: model, stepping: stepping)
        memoryBytes = try reader.get("guest RAM size")
        vcpuCount = try reader.get("vCPU count")
        let flags: UInt32 = try reader.get("hello flags")
        guard flags & ~1 == 0 else { throw .malformed("the hello has unknown flags 0x\(String(flags, radix: 16))") }
        authenticated = flags & 1 != 0
        nonce = Array(try reader.bytes(SessionNonce.size, "session nonce"))
        let modelBytes: UInt32 = try reader.get("CPU model length")
        guard modelBytes <= Self.maximumCPUModelBytes else {
            throw .malformed("the hello's CPU model is \(modelBytes) bytes, more than \(Self.maximumCPUModelBytes)")
        }
        guard payload.count == Self.fixedSize + Int(modelBytes) else {
            throw .malformed("a hello with a \(modelBytes)-byte CPU model is \(Self.fixedSize + Int(modelBytes)) bytes, this one \(payload.count)")
        }
        cpuModel = Array(try reader.bytes(Int(modelBytes), "CPU model"))
    }
}

/// What a receiver accepts from a sender: the machine limits of this Deflect.
public struct MigrationLimits: Sendable, Equatable {
    public var memoryBytes: ClosedRange<UInt64>
    public var vcpuCount: ClosedRange<UInt32>
    /// Largest state message (all its frames together).
    public var maximumStateBytes: Int

    public init(memoryBytes: ClosedRange<UInt64>, vcpuCount: ClosedRange<UInt32>, maximumStateBytes: Int) {
        (self.memoryBytes, self.vcpuCount, self.maximumStateBytes) = (memoryBytes, vcpuCount, maximumStateBytes)
    }
}

extension MigrationHello {
    /// Why a receiver on `host` with `kvmAPIVersion` and `limits` cannot take
    /// this VM, or nil when it can. `keyed`: the receiver has a pre-shared key.
    public func refusal(host local: SnapshotHost, kvmAPIVersion api: UInt32, limits: MigrationLimits,
                        keyed: Bool) -> String? {
        if protocolVersion != Self.protocolVersion {
            return "protocol version \(protocolVersion) is not supported (this receiver speaks version \(Self.protocolVersion))"
        }
        if authenticated != keyed {
            return keyed ? "this receiver needs an authenticated stream: start the sender with the same --psk-file"
                : "the sender authenticates with a pre-shared key but this receiver has none (--psk-file)"
        }
        if host.vendor != local.vendor { return "the VM runs on a \(host.vendor) CPU; this host is \(local.vendor)" }
        if kvmAPIVersion != api { return "the sender has KVM API \(kvmAPIVersion); this host has \(api)" }
        let mib = memoryBytes >> 20
        if !limits.memoryBytes.contains(memoryBytes) || memoryBytes % (1 << 20) != 0 {
            return "guest RAM of \(memoryBytes) bytes (\(mib) MiB) is outside this receiver's \(limits.memoryBytes.lowerBound >> 20)–\(limits.memoryBytes.upperBound >> 20) MiB"
        }
        if !limits.vcpuCount.contains(vcpuCount) {
            return "\(vcpuCount) vCPUs is outside this receiver's \(limits.vcpuCount.lowerBound)–\(limits.vcpuCount.upperBound)"
        }
        return nil
    }
}

/// A run of guest pages in a memory message.
public struct PageRange: Sendable, Equatable {
    public static let pageSize: UInt64 = 4096

    public var guestPhysicalAddress: UInt64
    public var pageCount: UInt32
    /// `pageCount` × 4096 bytes.
    public var bytes: ArraySlice<UInt8>

    public init(guestPhysicalAddress: UInt64, pageCount: UInt32, bytes: ArraySlice<UInt8>) {
        (self.guestPhysicalAddress, self.pageCount, self.bytes) = (guestPhysicalAddress, pageCount, bytes)
    }
}

/// Where a run of pages goes, without its bytes (`MigrationConnection.sendPages`).
public struct PageRun: Sendable, Equatable {
    public var guestPhysicalAddress: UInt64
    public var pageCount: UInt32

    public init(guestPhysicalAddress: UInt64, pageCount: UInt32) {
        (self.guestPhysicalAddress, self.pageCount) = (guestPhysicalAddress, pageCount)
    }
}

/// The payload of a memory message: u32 range count, then per range
/// { gpa u64, page count u32, the pages' bytes }.
public enum PagesMessage {
    /// Bytes a range adds to a payload besides its pages.
    public static let rangeOverhead = 12

    /// The payload bytes of a message with these runs.
    public static func payloadSize(_ runs: [PageRun]) -> Int {
        4 + runs.reduce(0) { $0 + rangeOverhead + Int($1.pageCount) * Int(PageRange.pageSize) }
    }

    public static func encode(_ ranges: [PageRange]) -> [UInt8] {
        var writer = ByteWriter()
        writer.bytes.reserveCapacity(4 + ranges.reduce(0) { $0 + rangeOverhead + $1.bytes.count })
        writer.put(UInt32(ranges.count))
        for range in ranges {
            writer.put(range.guestPhysicalAddress)
            writer.put(range.pageCount)
            writer.bytes += range.bytes
        }
        return writer.bytes
    }

    /// The ranges of `payload`, each checked to be page-aligned, non-empty
    /// and inside guest RAM of `memoryBytes` from 0; the payload must end
    /// exactly after the last range.
    public static func decode(_ payload: [UInt8], memoryBytes: UInt64) throws(MigrationError) -> [PageRange] {
        try decode(payload, ram: [0..<memoryBytes])
    }

    /// The ranges of `payload`, each checked as above to lie inside one of
    /// the guest-physical `ram` ranges (RAM below the PCI hole, RAM from 4 GiB).
    public static func decode(_ payload: [UInt8], ram: [Range<UInt64>]) throws(MigrationError) -> [PageRange] {
        var reader = ByteReader(payload[...])
        let count: UInt32 = try reader.get("page range count")
        guard UInt64(count) * UInt64(rangeOverhead) <= UInt64(payload.count) else {
            throw .malformed("\(count) page ranges cannot fit in \(payload.count) bytes")
        }
        var ranges: [PageRange] = []
        ranges.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let address: UInt64 = try reader.get("page range \(index) address")
            let pages: UInt32 = try reader.get("page range \(index) count")
            let length = UInt64(pages) * PageRange.pageSize
            guard address % PageRange.pageSize == 0, pages > 0 else {
                throw .malformed("page range \(index) at 0x\(String(address, radix: 16)) is not page-aligned or empty")
            }
            guard ram.contains(where: { address >= $0.lowerBound && address <= $0.upperBound && length <= $0.upperBound - address }) else {
                let described = ram.map { "0x\(String($0.lowerBound, radix: 16))..<0x\(String($0.upperBound, radix: 16))" }.joined(separator: ", ")
                throw .malformed("page range \(index) (0x\(String(address, radix: 16)), \(pages) pages) is outside guest RAM (\(described))")
            }
            let bytes = try reader.bytes(Int(length), "page range \(index)")
            ranges.append(PageRange(guestPhysicalAddress: address, pageCount: pages, bytes: bytes))
        }
        guard reader.isAtEnd else { throw .malformed("bytes after the last page range") }
        return ranges
    }
}

/// A reason text (refuse, abort): UTF-8, at most this many bytes are kept.
public enum ReasonText {
    public static let maximumBytes = 1024

    public static func encode(_ reason: String) -> [UInt8] { Array(reason.utf8.prefix(maximumBytes)) }

    /// One printable line, whatever the peer sent.
    public static func decode(_ payload: [UInt8]) -> String {
        let text = String(decoding: payload.prefix(maximumBytes), as: UTF8.self)
        return String(text.map { $0.isNewline || $0.asciiValue.map { $0 < 0x20 } == true ? " " : $0 })
    }
}
