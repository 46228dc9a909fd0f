// CLITests: the virtio test guest (Guests/multiboot/virtio.c) against QEMU's
// own virtio devices, through scripts/virtio-guest-against-qemu: its drivers
// must pass there (read-write and read-only disk, entropy, console both ways,
// network frames both ways on a TAP in a network namespace of the run's own)
// and must fail where the devices differ from what it was told to expect,
// before the same guest judges Deflect's devices. Skipped, with the reason,
// where QEMU is not installed (the test command does not install it).
import DeflectTestSupport
import Foundation
import Testing

enum QEMUInstallation {
    /// The qemu-system-x86_64 on PATH, or nil.
    static let path: String? = {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for directory in directories {
            let candidate = "\(directory)/qemu-system-x86_64"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    static var skipComment: String {
        path == nil ? "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): test skipped" : ""
    }
}

@Suite("virtio test guest against QEMU's devices", .serialized,
       .enabled(if: QEMUInstallation.path != nil, Comment(rawValue: QEMUInstallation.skipComment)),
       .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct VirtioGuestQEMUTests {
    @Test func theGuestPassesAgainstQEMUsDevicesAndFailsOnWrongExpectations() throws {
        let kernel = try GuestImages.path("multiboot/virtio.elf")
        let root = GuestImages.repositoryRoot.path
        let result = try runProgram(root + "/scripts/virtio-guest-against-qemu", ["--kernel", kernel],
                                    limit: 600, directory: root)
        let output = result.stdout + result.stderr
        #expect(result.status == 0, "script exited \(result.status):\n\(output)")
        for run in ["rw", "ro", "mismatch"] {
            #expect(output.contains("run \(run) (kvm): pass"), "run \(run):\n\(output)")
        }
        // The net run needs root and `ip` (a namespace and a TAP); the script
        // says when it skipped it, and otherwise it must pass with the guest
        // answering ARP and the namespace's pings, and asking for the peer.
        if !output.contains("run net (kvm): skipped:") {
            #expect(output.contains("run net (kvm): pass"), "run net:\n\(output)")
            for line in ["PASS net-config mac 52:54:00:12:34:56", "PASS net-arp-reply who-has 10.0.2.15",
                         "PASS net-echo-reply n=3 of 3", "PASS net-arp-peer mac", "PASS net-msix"] {
                #expect(output.contains(line), "\(line):\n\(output)")
            }
        }
        // Every device did its part in the read-write run.
        for line in ["PASS blk-rw-multi-descriptor", "PASS blk-rw-indirect", "PASS blk-msix-mask",
                     "PASS blk-event-idx", "PASS blk-batch", "PASS blk-hostile-loop", "PASS blk-hostile-loop-recovered",
                     "PASS blk-get-id", "PASS blk-read-past-end", "PASS rng-differ",
                     "PASS console-tx", "PASS console-rx", "PASS blk-ro-write-refused", "PASS blk-intx",
                     "FAIL blk-found only a transitional/legacy id", "FAIL blk-get-id", "FAIL blk-capacity",
                     "FAIL net-config mac 52:54:00:12:34:56 (VIRTIO_NET_F_MAC) expected 02:00:00:00:00:01"] {
            #expect(output.contains(line), "\(line):\n\(output)")
        }
    }
}
