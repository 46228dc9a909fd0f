// CLITests: `--disk` refusals as a user meets them — a malformed value, a
// missing file, a directory, a platform without PCI: one line naming the
// option, status 64 or 66, before the guest starts.
import DeflectTestSupport
import Foundation
import Testing

@Suite("deflect run --disk", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct DiskCLITests {
    @Test func badDisksAreRefusedBeforeTheGuestStarts() throws {
        let kernel = try GuestImages.path("multiboot/platform.elf")
        let directory = NSTemporaryDirectory() + "deflect-disk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [([String], Int32, String)] = [
            ([kernel, "--disk", "readonly=on"], 64, "--disk readonly=on: path=FILE is required"),
            ([kernel, "--disk", "path=\(directory)/x.img,cache=none"], 64, "unknown key cache"),
            ([kernel, "--disk", "path=\(directory)/missing.img"], 66, "--disk path=\(directory)/missing.img: cannot open: No such file or directory"),
            ([kernel, "--disk", "path=\(directory)"], 66, "--disk path=\(directory): cannot open: Is a directory"),
            ([try GuestImages.path("real/hello.bin"), "--mode", "real", "--disk", "path=\(directory)/x.img"], 64, "--disk, --net, --rng and --console virtio need --platform pc"),
        ]
        for (arguments, status, fragment) in cases {
            let result = try deflect(["run"] + arguments + ["--timeout", "5"])
            #expect(result.status == status, "\(arguments.joined(separator: " ")): \(result.stderr)")
            expectOneLineError(result, fragment)
            #expect(result.stdout.isEmpty, "the guest did not start: \(result.stdout)")
        }
    }
}
