// The pod's network through a TAP, in network namespaces the test makes: a
// "pod" namespace whose eth0 is one end of a veth pair (an address, a
// default route, as CNI leaves it) and a "peer" namespace with the other
// end. No address, route or interface outside these namespaces is touched.
// Frames cross between the pod's eth0 and the shim's TAP both ways (a small
// responder on the TAP answers the peer's ARP and pings); a task with `net`
// and `disks` runs the virtio test guest, which answers the peer's pings on
// the pod's address and checks its disk, through the Task service and
// through a real containerd (`ctr run --with-ns`). Skipped, with the reason,
// without root, iproute2, nsenter or python3 (the task tests without
// /dev/kvm, the ctr test without containerd).
import DeflectTestSupport
import Foundation
import SwiftProtobuf
import Testing
import TTRPC
import Virtio
@testable import ContainerdShim

/// The two namespaces and the veth pair between them.
final class PodNamespaces {
    static let podMAC = "02:00:0a:fb:00:02"
    static let podAddress = "10.251.0.2"
    static let peerAddress = "10.251.0.1"
    /// Not 1500, so the TAP's MTU shows it was copied from the pod's interface.
    static let mtu = 1400
    static let python = "/usr/bin/python3"

    let pod: String
    let peer: String
    var podPath: String { "/var/run/netns/" + pod }

    /// nil when namespaces can be made here; otherwise why not.
    static let unavailableReason: String? = {
        guard getuid() == 0 else { return "network namespaces need root: pod network test skipped" }
        for tool in ["ip", "tc", "nsenter"] {
            if (try? NamespaceTools.find(tool)) == nil { return "\(tool) is missing (iproute2, util-linux): pod network test skipped" }
        }
        guard FileManager.default.isExecutableFile(atPath: python) else { return "\(python) is missing: pod network test skipped" }
        let probe = "dfsp-probe-\(getpid())"
        guard run(["netns", "add", probe]).status == 0 else { return "ip netns add is not permitted here: pod network test skipped" }
        _ = run(["netns", "del", probe])
        return nil
    }()

    init() throws {
        let tag = "\(getpid() % 100_000)\(UInt16.random(in: 100...999))"
        pod = "dfsp-pod-\(tag)"
        peer = "dfsp-peer-\(tag)"
        let steps: [[String]] = [
            ["netns", "add", pod], ["netns", "add", peer],
            ["link", "add", "dfp\(tag)", "netns", pod, "address", Self.podMAC, "mtu", "\(Self.mtu)",
             "type", "veth", "peer", "name", "dfq\(tag)", "netns", peer, "mtu", "\(Self.mtu)"],
            ["-n", pod, "link", "set", "dfp\(tag)", "name", "eth0"],
            ["-n", pod, "addr", "add", Self.podAddress + "/24", "dev", "eth0"],
            ["-n", pod, "link", "set", "eth0", "up"],
            ["-n", pod, "route", "add", "default", "via", Self.peerAddress],
            ["-n", peer, "addr", "add", Self.peerAddress + "/24", "dev", "dfq\(tag)"],
            ["-n", peer, "link", "set", "dfq\(tag)", "up"],
        ]
        for step in steps {
            let result = Self.run(step)
            guard result.status == 0 else {
                remove()
                throw ContainerdStartError(description: "ip \(step.joined(separator: " ")): \(result.stderr)")
            }
        }
    }

    /// Deletes both namespaces, and with them the veth pair, the TAP and the filters.
    func remove() {
        _ = Self.run(["netns", "del", pod])
        _ = Self.run(["netns", "del", peer])
    }

    @discardableResult
    static func run(_ arguments: [String]) -> Finished {
        guard let ip = try? NamespaceTools.find("ip"), let running = try? Running(ip, arguments) else {
            return Finished(status: -1, stdoutBytes: Data(), stderr: "ip cannot run")
        }
        return running.finish(limit: 20)
    }

    func inPod(_ arguments: [String]) -> Finished { Self.run(["-n", pod] + arguments) }

    /// Whether the pod's namespace still has the TAP or an ingress qdisc on eth0.
    var leftovers: [String] {
        var found: [String] = []
        if inPod(["link", "show", "dev", PodNetwork.tapName]).status == 0 { found.append("the TAP") }
        if let tc = try? NamespaceTools.find("tc"), let nsenter = try? NamespaceTools.find("nsenter"),
           let qdiscs = try? Running(nsenter, ["--net=" + podPath, "--", tc, "qdisc", "show", "dev", "eth0"]),
           qdiscs.finish(limit: 20).stdout.contains("ingress") {
            found.append("eth0's ingress qdisc")
        }
        return found
    }

    /// `count` echo requests from the peer to the pod's address (ping, or
    /// scripts/netns-tap-ping's raw-socket echo where ping is not installed).
    func pingFromPeer(count: Int) throws -> Finished {
        let ping = ["/usr/bin/ping", "/bin/ping"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let command = ping.map { [$0, "-c", "\(count)", "-W", "2", Self.podAddress] }
            ?? [Self.python, GuestImages.repositoryRoot.path + "/scripts/netns-tap-ping", "--icmp-echo", Self.podAddress, "--count", "\(count)"]
        return try Running(try NamespaceTools.find("nsenter"), ["--net=/var/run/netns/" + peer, "--"] + command)
            .finish(limit: Double(count) * 3 + 10)
    }
}

@Suite(.serialized, .enabled(if: PodNamespaces.unavailableReason == nil, Comment(rawValue: PodNamespaces.unavailableReason ?? "")))
struct PodNetworkTests {
    static let responder = GuestImages.repositoryRoot.path + "/scripts/tap-responder"

    @Test func framesCrossBetweenThePodsInterfaceAndTheTap() throws {
        let namespaces = try PodNamespaces()
        defer { namespaces.remove() }
        let network = try PodNetwork.connect(namespace: namespaces.podPath, interface: "eth0", mac: nil)
        #expect(network.mac == MACAddress(PodNamespaces.podMAC))
        #expect(network.addresses == [PodNamespaces.podAddress + "/24"] && network.gateway == PodNamespaces.peerAddress)
        #expect(network.summary == "the pod's network reaches the VM: eth0 (10.251.0.2/24, gateway 10.251.0.1, MTU 1400) through TAP deflect0; the guest's MAC 02:00:0a:fb:00:02")
        let tap = namespaces.inPod(["link", "show", "dev", PodNetwork.tapName]).stdout
        #expect(tap.contains("mtu \(PodNamespaces.mtu)") && tap.contains(",UP"), "\(tap)")

        // A second VM of the pod cannot take the interface too.
        let second = #expect(throws: PodNetworkError.self) { try PodNetwork.connect(namespace: namespaces.podPath, interface: "eth0", mac: nil) }
        #expect(second?.description.contains("another VM of this pod may hold its network") == true, "\(String(describing: second))")

        // The peer's ARP request and pings reach the TAP, the answers leave through eth0:
        // the pod namespace's own stack no longer sees them (the responder counts them).
        let responder = try Running(try NamespaceTools.find("nsenter"),
                                    ["--net=" + namespaces.podPath, "--", PodNamespaces.python, Self.responder, "--tap", PodNetwork.tapName,
                                     "--ip", PodNamespaces.podAddress, "--mac", PodNamespaces.podMAC, "--count", "3", "--timeout", "30"])
        #expect(responder.waitFor("tap-responder ready", limit: 10), "\(responder.stdout)")
        let ping = try namespaces.pingFromPeer(count: 3)
        let answered = responder.finish(limit: 40)
        #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")
        #expect(answered.status == 0 && answered.stdout.contains("tap-responder answered arp")
                && answered.stdout.contains("tap-responder answered 3 echo requests"), "\(answered.stdout)\(answered.stderr)")

        // A shim containerd lost: its `delete` action disconnects what the bundle records.
        let bundle = NSTemporaryDirectory() + "deflect-podnet-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
        try JSONEncoder().encode(network).write(to: URL(fileURLWithPath: TaskBundle(path: bundle).podNetworkFile))
        var arguments = ShimArguments()
        arguments.id = "gone"
        arguments.bundle = bundle
        _ = try ShimCommands.delete(arguments)
        #expect(namespaces.leftovers.isEmpty, "\(namespaces.leftovers)")
        #expect(!FileManager.default.fileExists(atPath: TaskBundle(path: bundle).podNetworkFile))
        // The pod's own stack answers again.
        #expect(try namespaces.pingFromPeer(count: 1).status == 0)
        #expect(network.disconnect() != nil, "a second disconnect finds nothing to remove and says so")
    }

    @Test func aConnectThatFailsLeavesNothingBehind() throws {
        let namespaces = try PodNamespaces()
        defer { namespaces.remove() }
        let missing = #expect(throws: PodNetworkError.self) { try PodNetwork.connect(namespace: namespaces.podPath, interface: "eth9", mac: nil) }
        #expect(missing?.description == "the pod's interface eth9 is not in the task's network namespace: ip -j link show dev eth9 in the network namespace \(namespaces.podPath): Device \"eth9\" does not exist.")
        let loopback = #expect(throws: PodNetworkError.self) { try PodNetwork.connect(namespace: namespaces.podPath, interface: "lo", mac: nil) }
        #expect(loopback?.description.hasPrefix("the pod's interface lo is not an Ethernet interface (link type loopback)") == true, "\(String(describing: loopback))")
        let gone = #expect(throws: PodNetworkError.self) { try PodNetwork.connect(namespace: namespaces.podPath + "-none", interface: "eth0", mac: nil) }
        #expect(gone?.description.contains("cannot open \(namespaces.podPath)-none: No such file or directory") == true, "\(String(describing: gone))")
        #expect(namespaces.leftovers.isEmpty)

        // A TAP of that name made by someone else: the connect fails after its
        // first step, which it undoes, and leaves the other TAP alone.
        #expect(namespaces.inPod(["tuntap", "add", "dev", PodNetwork.tapName, "mode", "tap"]).status == 0)
        let taken = #expect(throws: PodNetworkError.self) {
            try PodNetwork.connect(namespace: namespaces.podPath, interface: "eth0", mac: MACAddress("02:00:00:00:00:07"))
        }
        #expect(taken?.description.contains("ip tuntap add dev deflect0 mode tap") == true, "\(String(describing: taken))")
        #expect(namespaces.leftovers == ["the TAP"])
        #expect(namespaces.inPod(["link", "del", "dev", PodNetwork.tapName]).status == 0)

        // Through the Task service: Start fails in one line, the task stays created, nothing is left.
        let bundle = NSTemporaryDirectory() + "deflect-podfail-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try Data([0xF4]).write(to: URL(fileURLWithPath: bundle + "/rootfs/g.bin"))
        try Data(#"{"image": "g.bin", "mode": "real", "platform": "pc", "net": {"interface": "eth9"}}"#.utf8)
            .write(to: URL(fileURLWithPath: bundle + "/rootfs/deflect.json"))
        try Data(#"{"linux": {"namespaces": [{"type": "network", "path": "\#(namespaces.podPath)"}]}}"#.utf8)
            .write(to: URL(fileURLWithPath: bundle + "/config.json"))
        let registry = try createdTask(bundle: bundle, deflect: "/bin/false")
        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        let refused = #expect(throws: TTRPCError.self) { try callTask(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self) }
        #expect(refused?.code == .failedPrecondition)
        #expect(refused?.message.hasPrefix("cannot connect the pod's network: the pod's interface eth9 is not in the task's network namespace") == true,
                "\(String(describing: refused))")
        #expect(refused?.message.contains("\n") == false)
        var state = Containerd_Task_V2_StateRequest()
        state.id = "vm"
        #expect(try callTask(registry, "State", state, as: Containerd_Task_V2_StateResponse.self).status == .created)
        #expect(namespaces.leftovers.isEmpty && !FileManager.default.fileExists(atPath: TaskBundle(path: bundle).podNetworkFile))
    }

    /// A whole task: Create with `net` and `disks` (the spec naming the pod's
    /// namespace), Start, the peer pings the pod's address and the guest
    /// answers, the guest checks its disk, Delete removes the TAP.
    @Test(.enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
    func aTasksGuestAnswersOnThePodsAddress() throws {
        let namespaces = try PodNamespaces()
        defer { namespaces.remove() }
        let bundle = NSTemporaryDirectory() + "deflect-podvm-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        try FileManager.default.copyItem(atPath: try GuestImages.path("multiboot/virtio.elf"), toPath: bundle + "/rootfs/virtio.elf")
        try Data(count: 2048 * 512).write(to: URL(fileURLWithPath: bundle + "/rootfs/disk.img"))
        try Data("""
            {"root": {"path": "rootfs"}, "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "\(namespaces.podPath)"}]}}
            """.utf8).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        try Data("""
            {"image": "virtio.elf", "mode": "multiboot", "platform": "pc", "memory": 128,
             "append": "blk serial=DFL-POD sectors=2048 net ip=\(PodNamespaces.podAddress) peer=\(PodNamespaces.peerAddress) pings=3 mac=\(PodNamespaces.podMAC)",
             "disks": [{"path": "disk.img", "serial": "DFL-POD"}], "net": {}}
            """.utf8).write(to: URL(fileURLWithPath: bundle + "/rootfs/deflect.json"))
        for output in ["stdout", "stderr"] { try Data().write(to: URL(fileURLWithPath: "\(bundle)/\(output)")) }

        let registry = TTRPCServiceRegistry()
        TaskService(deflectBinary: GuestImages.builtProduct("deflect"), events: EventPublisher(address: nil, namespace: "t")) {}.register(in: registry)
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = bundle
        create.stdout = bundle + "/stdout"
        create.stderr = bundle + "/stderr"
        _ = try callTask(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        let pid = try callTask(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self).pid
        defer { if Foundation.kill(Int32(pid), 0) == 0 { Foundation.kill(Int32(pid), SIGKILL) } }
        #expect(namespaces.inPod(["link", "show", "dev", PodNetwork.tapName]).status == 0)
        #expect(FileManager.default.fileExists(atPath: TaskBundle(path: bundle).podNetworkFile))

        func output(_ name: String) -> String { (try? String(contentsOfFile: "\(bundle)/\(name)", encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(90)
        while !output("stdout").contains("INFO net ready"), Foundation.kill(Int32(pid), 0) == 0, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        let ping = try namespaces.pingFromPeer(count: 3)
        var state = Containerd_Task_V2_StateRequest()
        state.id = "vm"
        while try callTask(registry, "State", state, as: Containerd_Task_V2_StateResponse.self).status != .stopped, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
        }
        let stopped = try callTask(registry, "State", state, as: Containerd_Task_V2_StateResponse.self)
        let stdout = output("stdout"), stderr = output("stderr")
        #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")
        #expect(stopped.status == .stopped && stopped.exitStatus == 3, "status \(stopped.exitStatus)\n\(stdout)\n\(stderr)")
        for line in ["PASS net-config mac \(PodNamespaces.podMAC)", "PASS net-echo-reply n=3 of 3", "PASS net-arp-peer",
                     "PASS blk-get-id", "RESULT pass"] {
            #expect(stdout.contains(line), "\(line):\n\(stdout)")
        }
        #expect(stderr.contains("deflect shim: the pod's network reaches the VM: eth0 (10.251.0.2/24, gateway 10.251.0.1, MTU 1400) through TAP deflect0; the guest's MAC 02:00:0a:fb:00:02"),
                "\(stderr)")
        // The TAP stays until Delete (the task may be inspected), then goes.
        #expect(namespaces.inPod(["link", "show", "dev", PodNetwork.tapName]).status == 0)
        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "vm"
        _ = try callTask(registry, "Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        #expect(namespaces.leftovers.isEmpty, "\(namespaces.leftovers)")
        #expect(!FileManager.default.fileExists(atPath: TaskBundle(path: bundle).podNetworkFile))
    }

    /// The same through a real containerd: `ctr run --with-ns network:PATH`
    /// puts the pod's namespace into the spec containerd writes, as the CRI
    /// plugin does; `--rm` deletes the task, which removes the TAP.
    @Test(.enabled(if: ContainerdAvailability.unusableReason == nil, Comment(rawValue: ContainerdAvailability.unusableReason ?? "")))
    func ctrRunsAVMOnThePodsNetwork() throws {
        let namespaces = try PodNamespaces()
        defer { namespaces.remove() }
        let containerd = try PrivateContainerd()
        defer { containerd.stop() }
        let root = try containerd.rootfs(guest: "multiboot/virtio.elf", description: """
            {"image": "virtio.elf", "mode": "multiboot", "platform": "pc", "memory": 128,
             "append": "net ip=\(PodNamespaces.podAddress) peer=\(PodNamespaces.peerAddress) pings=3 mac=\(PodNamespaces.podMAC)", "net": {}}
            """)
        let run = try containerd.ctrInBackground(["run", "--rm", "--rootfs", "--runtime", shimBinary,
                                                  "--with-ns", "network:" + namespaces.podPath, root, "podvm"])
        #expect(run.waitFor("INFO net ready", limit: 90), "\(run.stdout)")
        let ping = try namespaces.pingFromPeer(count: 3)
        let finished = run.finish(limit: 90)
        #expect(ping.status == 0, "\(ping.stdout)\(ping.stderr)")
        #expect(finished.status == 3, "\(finished.stdout)\n\(finished.stderr)")
        for line in ["PASS net-echo-reply n=3 of 3", "PASS net-arp-peer", "RESULT pass"] {
            #expect(finished.stdout.contains(line), "\(line):\n\(finished.stdout)")
        }
        #expect(namespaces.leftovers.isEmpty, "\(namespaces.leftovers)")
    }
}
