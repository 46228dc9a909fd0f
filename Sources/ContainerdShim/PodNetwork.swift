// ContainerdShim: the pod's network handed to a task's VM, as Kata
// Containers' "tcfilter" model does it. Inside the task's network namespace
// (set up by CNI) the shim makes a TAP of its own, `deflect0`, puts an ingress
// qdisc on it and on the pod's interface, and on each a tc filter that
// redirects every frame to the other's egress: what reaches the pod's
// interface leaves through the TAP to the VM, and what the VM sends leaves
// through the pod's interface. The guest gets the pod interface's MAC, so
// frames for the pod's address are the guest's. iproute2's `ip` and `tc` do
// the netlink work, run by absolute path inside the namespace through
// util-linux's `nsenter`; a failure is one line naming the command.
import Foundation
import ReadableErrors
import Synchronization
import Virtio

/// A pod network connected to a TAP for a VM (what Start did; Delete undoes it).
public struct PodNetwork: Codable, Equatable, Sendable {
    /// The TAP's name in the pod's namespace (one VM per pod takes the network).
    public static let tapName = "deflect0"

    /// The task's network namespace (a path nsenter opens).
    public var namespace: String
    /// The pod's interface (CNI's).
    public var interface: String
    public var tap: String
    /// The guest's MAC.
    public var mac: MACAddress
    /// The pod interface's addresses ("10.88.0.5/16"): the guest's to use.
    public var addresses: [String]
    /// The namespace's default IPv4 gateway, if it has one.
    public var gateway: String?
    public var mtu: Int

    /// Connects `interface` in `namespace` to a new TAP. Nothing is left
    /// behind when it fails: what it made is removed again.
    public static func connect(namespace: String, interface: String, mac: MACAddress?) throws(PodNetworkError) -> PodNetwork {
        let tools = try NamespaceTools(namespace: namespace)
        let link = try tools.link(interface)
        guard link.type == "ether" else {
            throw PodNetworkError("the pod's interface \(interface) is not an Ethernet interface (link type \(link.type)): a TAP cannot take over its frames")
        }
        guard let guestMAC = mac ?? link.mac else {
            throw PodNetworkError("the pod's interface \(interface) has no MAC address: give net.mac")
        }
        var network = PodNetwork(namespace: namespace, interface: interface, tap: tapName, mac: guestMAC,
                                 addresses: try tools.addresses(interface), gateway: try tools.gateway(), mtu: link.mtu)
        // The interface's ingress qdisc first: a second VM of the pod stops here, before making anything.
        do throws(PodNetworkError) {
            try tools.run(tools.tc, ["qdisc", "add", "dev", interface, "ingress"])
        } catch {
            throw PodNetworkError("\(error.description) (an ingress qdisc on \(interface) already? another VM of this pod may hold its network)")
        }
        var tapMade = false
        do throws(PodNetworkError) {
            try tools.run(tools.ip, ["tuntap", "add", "dev", tapName, "mode", "tap"])
            tapMade = true
            try tools.run(tools.ip, ["link", "set", "dev", tapName, "mtu", String(link.mtu), "up"])
            try tools.run(tools.tc, ["qdisc", "add", "dev", tapName, "ingress"])
            for (from, to) in [(interface, tapName), (tapName, interface)] {
                try tools.run(tools.tc, ["filter", "add", "dev", from, "parent", "ffff:", "protocol", "all",
                                         "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to])
            }
        } catch {
            if !tapMade { network.tap = "" }   // a TAP of that name that was there already is not ours to remove
            _ = network.disconnect()
            throw error
        }
        return network
    }

    /// Removes the filters, the qdiscs and the TAP. Returns what could not be
    /// removed, nil when all went (or the namespace itself has gone, taking them with it).
    @discardableResult
    public func disconnect() -> String? {
        guard FileManager.default.fileExists(atPath: namespace) else { return nil }
        let tools: NamespaceTools
        do throws(PodNetworkError) { tools = try NamespaceTools(namespace: namespace) } catch { return error.description }
        var problems: [String] = []
        // The interface's qdisc takes its filter with it; the TAP its own qdisc and filter.
        do throws(PodNetworkError) {
            try tools.run(tools.tc, ["qdisc", "del", "dev", interface, "ingress"])
        } catch {
            problems.append(error.description)
        }
        if !tap.isEmpty {
            do throws(PodNetworkError) { try tools.run(tools.ip, ["link", "del", "dev", tap]) } catch { problems.append(error.description) }
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// `executable arguments` run inside the namespace: nsenter enters it and
    /// execs the program, so the pid stays the program's.
    public func command(running executable: String, _ arguments: [String]) throws(PodNetworkError) -> (executable: String, arguments: [String]) {
        (try NamespaceTools.find("nsenter"), ["--net=\(namespace)", "--", executable] + arguments)
    }

    /// One line for the task's log: what the guest should use.
    public var summary: String {
        let addressed = addresses.isEmpty ? "no address" : addresses.joined(separator: ", ")
        let routed = gateway.map { ", gateway \($0)" } ?? ""
        return "the pod's network reaches the VM: \(interface) (\(addressed)\(routed), MTU \(mtu)) through TAP \(tap); the guest's MAC \(mac)"
    }
}

/// Why the pod's network could not be connected (one line).
public struct PodNetworkError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// iproute2 and nsenter, run by absolute path inside one network namespace.
struct NamespaceTools {
    let namespace: String
    let nsenter: String
    let ip: String
    let tc: String

    /// Where the tools are looked for: fixed directories, never $PATH.
    static let directories = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    /// A tool that does not answer within this many seconds is killed.
    static let timeLimit: TimeInterval = 10

    init(namespace: String) throws(PodNetworkError) {
        self.namespace = namespace
        nsenter = try Self.find("nsenter")
        ip = try Self.find("ip")
        tc = try Self.find("tc")
    }

    static func find(_ tool: String) throws(PodNetworkError) -> String {
        for directory in directories where FileManager.default.isExecutableFile(atPath: "\(directory)/\(tool)") {
            return "\(directory)/\(tool)"
        }
        let package = tool == "nsenter" ? "util-linux" : "iproute2"
        throw PodNetworkError("the pod's network needs \(tool) (\(package)), which is not in \(directories.joined(separator: ", "))")
    }

    /// Runs `tool arguments` in the namespace; its output, or its first error line as the error.
    @discardableResult
    func run(_ tool: String, _ arguments: [String]) throws(PodNetworkError) -> Data {
        let shown = ((tool as NSString).lastPathComponent + " " + arguments.joined(separator: " "))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: nsenter)
        process.arguments = ["--net=\(namespace)", "--", tool] + arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw PodNetworkError("cannot run \(nsenter): \(ReadableError.reason(error))") }
        let pid = process.processIdentifier
        let timer = DispatchWorkItem { Foundation.kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + Self.timeLimit, execute: timer)
        // Both pipes drained at once: neither tool can block on a full one.
        let collected = CollectedOutput()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            collected.bytes.withLock { $0 = errors.fileHandleForReading.readDataToEndOfFile() }
            drained.signal()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        let message = collected.bytes.withLock { $0 }
        process.waitUntilExit()
        timer.cancel()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            let line = String(decoding: message, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            let why = process.terminationReason == .uncaughtSignal ? "no answer within \(Int(Self.timeLimit)) s"
                : line.isEmpty ? "status \(process.terminationStatus)" : line
            throw PodNetworkError("\(shown) in the network namespace \(namespace): \(why)")
        }
        return data
    }

    struct Link {
        var type: String
        var mac: MACAddress?
        var mtu: Int
    }

    /// `ip -j link show dev NAME`.
    func link(_ name: String) throws(PodNetworkError) -> Link {
        let entry: [String: Any]
        do throws(PodNetworkError) {
            entry = try json(run(ip, ["-j", "link", "show", "dev", name])).first ?? [:]
        } catch {
            throw PodNetworkError("the pod's interface \(name) is not in the task's network namespace: \(error.description)")
        }
        return Link(type: entry["link_type"] as? String ?? "unknown", mac: (entry["address"] as? String).flatMap { MACAddress($0) },
                    mtu: (entry["mtu"] as? NSNumber)?.intValue ?? 1500)
    }

    /// The interface's global addresses, "A/PREFIX" (`ip -j addr show dev NAME`).
    func addresses(_ name: String) throws(PodNetworkError) -> [String] {
        let entries = try json(run(ip, ["-j", "addr", "show", "dev", name]))
        return entries.flatMap { ($0["addr_info"] as? [[String: Any]]) ?? [] }.compactMap { info in
            guard info["scope"] as? String == "global", let local = info["local"] as? String,
                  let prefix = (info["prefixlen"] as? NSNumber)?.intValue else { return nil }
            return "\(local)/\(prefix)"
        }
    }

    /// The default IPv4 route's gateway (`ip -j route show default`).
    func gateway() throws(PodNetworkError) -> String? {
        try json(run(ip, ["-j", "-4", "route", "show", "default"])).lazy.compactMap { $0["gateway"] as? String }.first
    }

    /// A tool's standard error, read on another thread.
    private final class CollectedOutput: Sendable {
        let bytes = Mutex(Data())
    }

    private func json(_ data: Data) throws(PodNetworkError) -> [[String: Any]] {
        // Some iproute2 versions print nothing, not [], for an empty list.
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A }) { return [] }
        guard let parsed = try? JSONSerialization.jsonObject(with: data), let list = parsed as? [[String: Any]] else {
            throw PodNetworkError("ip's JSON output was not understood: \(Shown.quoted(String(decoding: data.prefix(200), as: UTF8.self)))")
        }
        return list
    }
}
