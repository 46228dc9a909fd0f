// LoaderTests: a synthetic bzImage laid out per boot.rst (setup sectors with
// the setup header at 0x1f1, then the protected-mode kernel), every field
// overridable, and the Debian test guest's real images when the script
// (scripts/debian-linux-guest) has built them.
import Foundation
@testable import Loader

struct BzImageBuilder {
    var setupSects: UInt8 = 4
    var bootFlag: UInt16 = 0xAA55
    var magic: UInt32 = 0x5372_6448       // "HdrS"
    var version: UInt16 = 0x020F          // 2.15
    var loadflags: UInt8 = 0x01           // LOADED_HIGH
    var initrdAddrMax: UInt32 = 0x7FFF_FFFF
    var kernelAlignment: UInt32 = 0x20_0000
    var relocatable: UInt8 = 1
    var minAlignment: UInt8 = 21
    var xloadflags: UInt16 = 0x3          // KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
    var cmdlineSize: UInt32 = 2047
    var prefAddress: UInt64 = 0x100_0000  // 16 MiB
    var initSize: UInt32 = 0x80_0000      // 8 MiB
    /// The byte at 0x201: the header ends at 0x202 + this.
    var headerLengthByte: UInt8 = 0x6A    // 0x26C, through kernel_info_offset
    var kernel: [UInt8] = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }

    var kernelOffset: Int { (Int(setupSects == 0 ? 4 : setupSects) + 1) * 512 }

    func build() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: kernelOffset)
        out[0] = 0x4D; out[1] = 0x5A  // "MZ", as an EFI-stub bzImage starts
        out[0x1F1] = setupSects
        put16(&out, 0x1FE, bootFlag)
        out[0x200] = 0xEB
        out[0x201] = headerLengthByte
        put32(&out, 0x202, magic)
        put16(&out, 0x206, version)
        out[0x211] = loadflags
        put32(&out, 0x214, 0x10_0000)     // code32_start
        put32(&out, 0x22C, initrdAddrMax)
        put32(&out, 0x230, kernelAlignment)
        out[0x234] = relocatable
        out[0x235] = minAlignment
        put16(&out, 0x236, xloadflags)
        put32(&out, 0x238, cmdlineSize)
        put64(&out, 0x258, prefAddress)
        put32(&out, 0x260, initSize)
        return out + kernel
    }
}

func get16(_ b: [UInt8], _ at: Int) -> UInt64 { getLE(b, at, 2) }
func get32(_ b: [UInt8], _ at: Int) -> UInt64 { getLE(b, at, 4) }
func get64(_ b: [UInt8], _ at: Int) -> UInt64 { getLE(b, at, 8) }

private func getLE(_ b: [UInt8], _ at: Int, _ width: Int) -> UInt64 {
    (0..<width).reversed().reduce(0) { $0 << 8 | UInt64(b[at + $1]) }
}

/// The images scripts/debian-linux-guest leaves in its cache
/// (.build/linux-guest/, or $DEFLECT_LINUX_GUEST_DIR).
enum DebianGuest {
    static let directory: URL = {
        if let dir = ProcessInfo.processInfo.environment["DEFLECT_LINUX_GUEST_DIR"] {
            return URL(fileURLWithPath: dir)
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/linux-guest")
    }()

    static let bzImage: [UInt8]? = read("bzImage")
    static let vmlinux: [UInt8]? = read("vmlinux")

    static let missingBzImage = "no Debian bzImage in \(directory.path): run scripts/debian-linux-guest (test skipped)"
    static let missingVmlinux = "no Debian vmlinux in \(directory.path): run scripts/debian-linux-guest (test skipped)"

    private static func read(_ name: String) -> [UInt8]? {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(name)) else { return nil }
        return [UInt8](data)
    }
}
