// LoaderTests: a tiny ELF64 writer so tests build exactly the images they
// need (valid ones and deliberately broken ones) without binary fixtures.

/// Writes an ELF64 file: 64-byte header, program-header table at offset 64,
/// then each segment's file bytes in order. Every field can be overridden.
struct ELFBuilder {
    struct Segment {
        var type: UInt32 = 1            // PT_LOAD
        var flags: UInt32 = 5           // R | X
        var physicalAddress: UInt64
        var virtualAddress: UInt64? = nil  // defaults to the physical address
        var data: [UInt8] = []
        var memorySize: UInt64? = nil      // defaults to data.count
        var offsetOverride: UInt64? = nil
        var fileSizeOverride: UInt64? = nil
    }

    var magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
    var elfClass: UInt8 = 2
    var dataEncoding: UInt8 = 1
    var identVersion: UInt8 = 1
    var type: UInt16 = 2
    var machine: UInt16 = 62
    var version: UInt32 = 1
    var entry: UInt64 = 0x10_0000
    var programHeaderEntrySize: UInt16 = 56
    var programHeaderOffsetOverride: UInt64? = nil
    var programHeaderCountOverride: UInt16? = nil
    var segments: [Segment] = []

    /// A small valid program: code at 1 MiB (entry), data with BSS at 2 MiB,
    /// and a PT_GNU_STACK header that the loader must ignore.
    static func sample() -> ELFBuilder {
        var b = ELFBuilder()
        b.segments = [
            Segment(flags: 5, physicalAddress: 0x10_0000, data: [0x90, 0x90, 0xF4]),
            Segment(flags: 6, physicalAddress: 0x20_0000, data: [1, 2, 3, 4], memorySize: 0x1000),
            Segment(type: 0x6474_E551, flags: 6, physicalAddress: 0, data: [], memorySize: 0),
        ]
        return b
    }

    func build() -> [UInt8] {
        let headerSize = 64
        let tableSize = segments.count * Int(programHeaderEntrySize)
        var out = [UInt8](repeating: 0, count: headerSize + tableSize)
        var dataOffsets: [Int] = []
        for segment in segments {
            dataOffsets.append(out.count)
            out += segment.data
        }

        out.replaceSubrange(0..<4, with: magic.prefix(4))
        out[4] = elfClass; out[5] = dataEncoding; out[6] = identVersion
        put16(&out, 16, type)
        put16(&out, 18, machine)
        put32(&out, 20, version)
        put64(&out, 24, entry)
        put64(&out, 32, programHeaderOffsetOverride ?? UInt64(headerSize))
        put16(&out, 52, UInt16(headerSize))
        put16(&out, 54, programHeaderEntrySize)
        put16(&out, 56, programHeaderCountOverride ?? UInt16(segments.count))

        for (i, segment) in segments.enumerated() {
            let base = headerSize + i * Int(programHeaderEntrySize)
            guard base + 56 <= out.count else { continue }  // entry size smaller than 56: leave it
            put32(&out, base, segment.type)
            put32(&out, base + 4, segment.flags)
            put64(&out, base + 8, segment.offsetOverride ?? UInt64(dataOffsets[i]))
            put64(&out, base + 16, segment.virtualAddress ?? segment.physicalAddress)
            put64(&out, base + 24, segment.physicalAddress)
            put64(&out, base + 32, segment.fileSizeOverride ?? UInt64(segment.data.count))
            put64(&out, base + 40, segment.memorySize ?? UInt64(segment.data.count))
            put64(&out, base + 48, 0x1000)
        }
        return out
    }
}

func put16(_ b: inout [UInt8], _ at: Int, _ v: UInt16) { putLE(&b, at, UInt64(v), 2) }
func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { putLE(&b, at, UInt64(v), 4) }
func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) { putLE(&b, at, v, 8) }

private func putLE(_ b: inout [UInt8], _ at: Int, _ v: UInt64, _ width: Int) {
    for i in 0..<width { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
}
