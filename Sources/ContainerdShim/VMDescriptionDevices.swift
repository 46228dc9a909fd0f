// ContainerdShim: the devices of deflect.json — `disks` (virtio-blk disks
// whose files are in the task's root filesystem, under the same rules as
// `image`) and `net` (the pod's network, taken over through a TAP: see
// PodNetwork) — checked field by field, and the `deflect run` options they become.
import Foundation
import Virtio

extension VMDescription {
    /// One virtio-blk disk.
    public struct Disk: Equatable, Sendable {
        /// The host path, resolved inside the root filesystem.
        public var path: String
        public var readOnly = false
        /// What the guest's GET_ID reads; nil: none.
        public var serial: String?
    }

    /// The pod's network, handed to the VM.
    public struct Net: Equatable, Sendable {
        /// The pod's interface (CNI's, in the task's network namespace) whose traffic the VM takes over.
        public var interface: String
        /// The guest's MAC; nil: the pod interface's, so the pod's address reaches the guest.
        public var mac: MACAddress?
        /// The task's network namespace (its spec's path).
        public var namespace: String
    }

    static let maximumDisks = 16
    /// The longest serial VIRTIO_BLK_T_GET_ID carries.
    static let maximumSerialBytes = 20
    /// CNI's default name for a pod's interface (CNI_IFNAME).
    static let defaultInterface = "eth0"

    /// `disks`: an array of {"path", "readonly", "serial"}.
    static func disks(_ value: Any?, rootfs: String, problems: inout [String]) -> [Disk] {
        guard let value else { return [] }
        guard let list = value as? [Any] else { problems.append("disks: must be an array of objects ({\"path\": FILE})"); return [] }
        if list.count > maximumDisks { problems.append("disks: \(list.count) disks, more than \(maximumDisks)") }
        var disks: [Disk] = []
        for (index, entry) in list.prefix(maximumDisks).enumerated() {
            let name = "disks[\(index)]"
            guard let object = entry as? [String: Any] else { problems.append("\(name): must be an object ({\"path\": FILE})"); continue }
            problems += unknownKeys(object, known: ["path", "readonly", "serial"], in: name)
            var disk = Disk(path: "")
            var good = true
            switch object["path"] {
            case nil: problems.append("\(name).path: required (the disk's file in the root filesystem)"); good = false
            case let relative as String:
                do {
                    disk.path = try RootfsPath.resolve(relative, in: rootfs)
                    // deflect's --disk option is KEY=VALUE,…: a comma cannot be carried.
                    if disk.path.contains(",") {
                        problems.append("\(name).path: \(Shown.quoted(relative)) has a comma in its host path, which --disk cannot carry"); good = false
                    }
                } catch {
                    problems.append("\(name).path: \(error.description)"); good = false
                }
            default: problems.append("\(name).path: must be a string"); good = false
            }
            if let readOnly = object["readonly"] {
                if let flag = boolean(readOnly) { disk.readOnly = flag } else { problems.append("\(name).readonly: must be true or false"); good = false }
            }
            switch object["serial"] {
            case nil: break
            case let serial as String:
                guard serial.utf8.count <= maximumSerialBytes, serial.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ",") }) else {
                    problems.append("\(name).serial: must be at most \(maximumSerialBytes) printable ASCII characters without a comma"); good = false
                    break
                }
                disk.serial = serial
            default: problems.append("\(name).serial: must be a string"); good = false
            }
            if good { disks.append(disk) }
        }
        return disks
    }

    /// `net`: {"interface": NAME, "mac": MAC}, both optional; it needs the task's own network namespace.
    static func net(_ value: Any?, network: TaskNetworkNamespace, problems: inout [String]) -> Net? {
        guard let value else { return nil }
        guard let object = value as? [String: Any] else { problems.append("net: must be an object ({\"interface\": \"eth0\"})"); return nil }
        problems += unknownKeys(object, known: ["interface", "mac"], in: "net")
        var good = true
        var net = Net(interface: defaultInterface, namespace: "")
        switch object["interface"] {
        case nil: break
        case let name as String:
            if let problem = interfaceNameProblem(name) { problems.append("net.interface: \(Shown.quoted(name)) \(problem)"); good = false }
            net.interface = name
        default: problems.append("net.interface: must be a string"); good = false
        }
        switch object["mac"] {
        case nil: break
        case let text as String:
            guard let mac = MACAddress(text), !mac.isMulticast else {
                problems.append("net.mac: \(Shown.quoted(text)) is not a unicast MAC address (02:00:00:00:00:01)"); good = false
                break
            }
            net.mac = mac
        default: problems.append("net.mac: must be a string"); good = false
        }
        switch network {
        case .host:
            problems.append("net: the task has no network namespace of its own (its spec names none: the host's network, as in a host-network pod), and the shim never hands the host's interfaces to a VM")
            good = false
        case .new:
            problems.append("net: the task's spec asks for a new, empty network namespace (no path): there is no pod network in it to take over")
            good = false
        case .path(let path) where !path.hasPrefix("/"):
            problems.append("net: the spec's network namespace \(Shown.quoted(path)) is not an absolute path")
            good = false
        case .path(let path):
            net.namespace = path
        }
        return good ? net : nil
    }

    /// Why `name` cannot be a Linux interface name (dev_valid_name), nil when it can.
    static func interfaceNameProblem(_ name: String) -> String? {
        guard !name.isEmpty, name.utf8.count <= 15 else { return "is not an interface name of 1 to 15 bytes" }
        guard name != ".", name != "..", !name.hasPrefix("-"),
              name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: ":") }) else {
            return "is not an interface name (printable ASCII without '/', ':' or spaces, not starting with '-')"
        }
        guard name != PodNetwork.tapName else { return "is the TAP the shim makes for the VM" }
        return nil
    }

    /// What the devices need of the platform: the PCI bus of `pc`.
    static func platformProblem(disks: Any?, net: Any?, platform: String?) -> String? {
        let devices = [disks.map { _ in "disks" }, net.map { _ in "net" }].compactMap { $0 }
        guard !devices.isEmpty, platform != "pc" else { return nil }
        let given = platform.map { "not \(Shown.quoted($0))" } ?? "and platform is not given"
        return "\(devices.joined(separator: ", ")): need \"platform\": \"pc\" (the PCI bus the devices sit on), \(given)"
    }

    static func unknownKeys(_ object: [String: Any], known: [String], in name: String) -> [String] {
        // The key is named (shortened, escaped); its value is never shown.
        object.keys.sorted().filter { !known.contains($0) }.map {
            "\(name).\(Shown.text($0)): unknown field (known: \(known.joined(separator: ", ")))"
        }
    }

    /// A JSON true or false (an NSNumber of type "c"; numbers are not booleans here).
    static func boolean(_ value: Any) -> Bool? {
        guard let number = value as? NSNumber, String(cString: number.objCType) == "c" else { return nil }
        return number.boolValue
    }

    /// `--disk` and `--net` for `deflect run`; `network` is the pod network Start connected.
    func deviceArguments(network: PodNetwork?) -> [String] {
        var arguments: [String] = []
        for disk in disks {
            arguments += ["--disk", "path=\(disk.path)" + (disk.readOnly ? ",readonly=on" : "") + (disk.serial.map { ",serial=\($0)" } ?? "")]
        }
        if let network { arguments += ["--net", "tap=\(network.tap),mac=\(network.mac)"] }
        return arguments
    }
}
