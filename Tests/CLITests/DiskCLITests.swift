// CLITests: `--disk` and `--net` refusals as a user meets them — a malformed
// value, a missing file, a directory, a TAP that does not exist, a platform
// without PCI: one line naming the option, status 64 or 66, before the guest
// starts.
import DeflectTestSupport
import Foundation
import Glibc
import Testing

@Suite("deflect run --disk", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct DiskCLITests {
    @Test func badDisksAreRefusedBeforeTheGuestStarts() throws {
        let kernel = try GuestImages.path("multiboot/platform.elf")
        let directory = try scratchDirectory("deflect-disk")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [([String], Int32, String)] = [
            ([kernel, "--disk", "readonly=on"], 64, "--disk readonly=on: path=FILE is required"),
            ([kernel, "--disk", "path=\(directory)/x.img,cache=none"], 64, "unknown key cache"),
            ([kernel, "--disk", "path=\(directory)/missing.img"], 66, "--disk path=\(directory)/missing.img: cannot open: No such file or directory"),
            ([kernel, "--disk", "path=\(directory)"], 66, "--disk path=\(directory): cannot open: Is a directory"),
            ([try GuestImages.path("real/hello.bin"), "--mode", "real", "--disk", "path=\(directory)/x.img"], 64, "--disk, --net, --vsock, --rng and --console virtio need --platform pc"),
            ([kernel, "--net", "mac=52:54:00:00:00:01"], 64, "--net mac=52:54:00:00:00:01: tap=NAME is required"),
            ([kernel, "--net", "tap=t0,mac=01:00:5e:00:00:01"], 64, "is not a unicast MAC address"),
            ([kernel, "--net", "tap=a-name-longer-than-15"], 64, "1 to 15 bytes"),
            ([kernel, "--net", "tap=dfl-none-\(UInt16.random(in: 1000...9999))"], 66, "no such TAP device"),
        ]
        for (arguments, status, fragment) in cases {
            let result = try deflect(["run"] + arguments + ["--timeout", "5"])
            #expect(result.status == status, "\(arguments.joined(separator: " ")): \(result.stderr)")
            expectOneLineError(result, fragment)
            #expect(result.stdout.isEmpty, "the guest did not start: \(result.stdout)")
        }
    }

    /// direct=on on a file system without O_DIRECT: one line, status 66.
    /// tmpfs takes O_DIRECT since Linux 6.6, ramfs does not: a ramfs is
    /// mounted in a mount namespace of the test's own (root and unshare(1)
    /// needed; skipped, saying so, otherwise).
    @Test func directOnAFileSystemWithoutODirectIsRefused() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else {
            print("DiskCLITests: direct=on refusal not checked: needs root and /usr/bin/unshare to mount a ramfs")
            return
        }
        let kernel = try GuestImages.path("multiboot/platform.elf")
        let directory = "/var/tmp/deflect-ramfs-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = "mount -t ramfs none \(directory) && truncate -s 1M \(directory)/d.img && exec \(deflectBinary) run \(kernel) --disk path=\(directory)/d.img,direct=on --timeout 5"
        let result = try runProgram("/usr/bin/unshare", ["-m", "sh", "-c", script])
        #expect(result.status == 66, "\(result.stderr)")
        expectOneLineError(result, "--disk path=\(directory)/d.img,direct=on: the file system does not support O_DIRECT")
        #expect(result.stdout.isEmpty)
    }
}
