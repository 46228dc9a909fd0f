// deflect.json's devices (`disks`, `net`) field by field, disk paths that
// try to leave the root filesystem, `net` without a network namespace of the
// task's own, and the network namespace the shim reads from config.json.
import Foundation
import Testing
import Virtio
@testable import ContainerdShim

@Suite struct DeviceDescriptionTests {
    static let namespace = TaskNetworkNamespace.path("/var/run/netns/cni-test")

    /// A root filesystem with a guest, two disks (one in a directory, one a
    /// symlink inside), a symlink out, a directory and a file with a comma.
    private func rootfs() throws -> (root: String, real: String) {
        let root = NSTemporaryDirectory() + "deflect-disks-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/data/dir", withIntermediateDirectories: true)
        for file in ["g.elf", "disk.img", "data/d2.img", "a,b.img"] { try Data([1]).write(to: URL(fileURLWithPath: "\(root)/\(file)")) }
        try FileManager.default.createSymbolicLink(atPath: root + "/outside", withDestinationPath: "/etc/passwd")
        try FileManager.default.createSymbolicLink(atPath: root + "/linked.img", withDestinationPath: "data/d2.img")
        return (root, try #require(realpath(root, nil).map { String(cString: $0) }))
    }

    private func parse(_ json: String, _ root: String, network: TaskNetworkNamespace = namespace) throws(VMDescriptionError) -> VMDescription {
        try VMDescription.parse(Data(json.utf8), rootfs: root, network: network)
    }

    private func problems(_ json: String, _ root: String, network: TaskNetworkNamespace = namespace) throws -> [String] {
        let error = #expect(throws: VMDescriptionError.self) { try parse(json, root, network: network) }
        return try #require(error).problems
    }

    @Test func disksAndNetBecomeRunOptions() throws {
        let (root, real) = try rootfs()
        let vm = try parse("""
            {"image": "g.elf", "platform": "pc",
             "disks": [{"path": "disk.img", "readonly": true, "serial": "DEFLECT 01"}, {"path": "/linked.img", "readonly": false}],
             "net": {"interface": "eth1", "mac": "02:00:00:00:00:09"}}
            """, root)
        #expect(vm.disks == [VMDescription.Disk(path: real + "/disk.img", readOnly: true, serial: "DEFLECT 01"),
                             VMDescription.Disk(path: real + "/data/d2.img")])
        #expect(vm.net == VMDescription.Net(interface: "eth1", mac: MACAddress("02:00:00:00:00:09"), namespace: "/var/run/netns/cni-test"))
        // The TAP and MAC come from Start's PodNetwork; without one, no --net.
        let network = PodNetwork(namespace: "/var/run/netns/cni-test", interface: "eth1", tap: PodNetwork.tapName,
                                 mac: try #require(MACAddress("02:00:00:00:00:09")), addresses: [], gateway: nil, mtu: 1500)
        #expect(vm.runArguments(apiSocket: "/a.sock", network: network) == [
            "run", real + "/g.elf", "--platform", "pc",
            "--disk", "path=\(real)/disk.img,readonly=on,serial=DEFLECT 01", "--disk", "path=\(real)/data/d2.img",
            "--net", "tap=deflect0,mac=02:00:00:00:00:09", "--api-socket", "/a.sock",
        ])
        #expect(!vm.runArguments(apiSocket: "/a.sock").contains("--net"))
        // An empty net object: the pod's eth0 (CNI's name), its MAC taken at Start.
        #expect(try parse(#"{"image": "g.elf", "platform": "pc", "net": {}}"#, root).net
                == VMDescription.Net(interface: "eth0", mac: nil, namespace: "/var/run/netns/cni-test"))
        #expect(try parse(#"{"image": "g.elf", "platform": "pc", "disks": []}"#, root).disks.isEmpty)
    }

    @Test func eachBadDeviceFieldIsNamed() throws {
        let (root, _) = try rootfs()
        let found = try problems("""
            {"image": "g.elf", "platform": "minimal",
             "disks": [{"path": "../../etc/passwd"}, {"path": "outside"}, {"path": "data/dir"}, {"path": "a,b.img"},
                       {"readonly": "yes", "serial": "a serial longer than twenty", "size": 1}, {"path": 7, "serial": "x,y"}, 5],
             "net": {"interface": "a/b", "mac": "01:00:5e:00:00:01", "vlan": 3}}
            """, root)
        let expected = [
            "disks[0].path: '../../etc/passwd' leads outside the root filesystem",
            "disks[1].path: 'outside' leads outside the root filesystem",
            "disks[2].path: 'data/dir' is a directory, not a regular file",
            "disks[3].path: 'a,b.img' has a comma in its host path, which --disk cannot carry",
            "disks[4].size: unknown field (known: path, readonly, serial)",
            "disks[4].path: required (the disk's file in the root filesystem)",
            "disks[4].readonly: must be true or false",
            "disks[4].serial: must be at most 20 printable ASCII characters without a comma",
            "disks[5].path: must be a string",
            "disks[5].serial: must be at most 20 printable ASCII characters without a comma",
            "disks[6]: must be an object ({\"path\": FILE})",
            "net.vlan: unknown field (known: interface, mac)",
            "net.interface: 'a/b' is not an interface name (printable ASCII without '/', ':' or spaces, not starting with '-')",
            "net.mac: '01:00:5e:00:00:01' is not a unicast MAC address (02:00:00:00:00:01)",
            "disks, net: need \"platform\": \"pc\" (the PCI bus the devices sit on), not 'minimal'",
        ]
        #expect(found == expected)
        // The one error names them all, in one line.
        #expect(!VMDescriptionError(found).description.contains("\n"))
    }

    @Test func wrongShapesAndLimits() throws {
        let (root, _) = try rootfs()
        #expect(try problems(#"{"image": "g.elf", "platform": "pc", "disks": {"path": "disk.img"}, "net": "eth0"}"#, root) == [
            "disks: must be an array of objects ({\"path\": FILE})", "net: must be an object ({\"interface\": \"eth0\"})",
        ])
        let many = Array(repeating: #"{"path": "disk.img", "readonly": true}"#, count: 17).joined(separator: ",")
        #expect(try problems(#"{"image": "g.elf", "platform": "pc", "disks": [\#(many)]}"#, root) == ["disks: 17 disks, more than 16"])
        #expect(try problems(#"{"image": "g.elf", "platform": "pc", "disks": [{"path": "disk.img", "readonly": 1}]}"#, root)
                == ["disks[0].readonly: must be true or false"])
        for name in ["", "sixteen-bytes-xx", "..", "-x", "a b", "e:1", "deflect0"] {
            let found = try problems(#"{"image": "g.elf", "platform": "pc", "net": {"interface": "\#(name)"}}"#, root)
            #expect(found.count == 1 && found[0].hasPrefix("net.interface: '\(name)' "), "\(found)")
        }
        #expect(try problems(#"{"image": "g.elf", "platform": "pc", "net": {"interface": 1, "mac": "nope"}}"#, root) == [
            "net.interface: must be a string", "net.mac: 'nope' is not a unicast MAC address (02:00:00:00:00:01)",
        ])
        // Devices without a platform: deflect run would pick minimal for a non-multiboot image.
        #expect(try problems(#"{"image": "g.elf", "disks": [{"path": "disk.img"}]}"#, root)
                == ["disks: need \"platform\": \"pc\" (the PCI bus the devices sit on), and platform is not given"])
    }

    @Test func netNeedsANetworkNamespaceOfTheTasksOwn() throws {
        let (root, _) = try rootfs()
        let json = #"{"image": "g.elf", "platform": "pc", "net": {}}"#
        #expect(try problems(json, root, network: .host) == [
            "net: the task has no network namespace of its own (its spec names none: the host's network, as in a host-network pod), and the shim never hands the host's interfaces to a VM",
        ])
        #expect(try problems(json, root, network: .new) == [
            "net: the task's spec asks for a new, empty network namespace (no path): there is no pod network in it to take over",
        ])
        #expect(try problems(json, root, network: .path("netns/cni-1")) == ["net: the spec's network namespace 'netns/cni-1' is not an absolute path"])
        // Disks need no namespace.
        #expect(try parse(#"{"image": "g.elf", "platform": "pc", "disks": [{"path": "disk.img"}]}"#, root, network: .host).disks.count == 1)
    }

    @Test func theSpecNamesTheNetworkNamespace() throws {
        func spec(_ json: String) throws -> BundleSpec { try JSONDecoder().decode(BundleSpec.self, from: Data(json.utf8)) }
        #expect(try spec(#"{"root": {"path": "rootfs"}}"#).networkNamespace == .host)
        #expect(try spec(#"{"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}"#).networkNamespace == .host)
        #expect(try spec(#"{"linux": {"namespaces": [{"type": "network"}]}}"#).networkNamespace == .new)
        #expect(try spec(#"{"linux": {"namespaces": [{"type": "network", "path": ""}]}}"#).networkNamespace == .new)
        #expect(try spec(#"{"linux": {"resources": {}, "namespaces": [{"type": "ipc"}, {"type": "network", "path": "/var/run/netns/cni-1"}]}}"#)
            .networkNamespace == .path("/var/run/netns/cni-1"))
    }
}
