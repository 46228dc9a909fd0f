// ContainerdShim: `deflect.json`, the VM a task runs — `deflect run`'s
// options as JSON, checked field by field, with every path kept inside the
// task's root filesystem — and the `deflect run` arguments it becomes (its
// devices, `disks` and `net`: VMDescriptionDevices). The
// file comes from an image, so it is untrusted: it must be a regular file
// in the root filesystem (no symbolic link to a host file), nothing outside
// the root filesystem is looked at, and errors quote its values only
// shortened and escaped.
import Foundation
import Loader

public struct VMDescription: Equatable, Sendable {
    public static let fileName = "deflect.json"
    static let modes: Set<String> = ["real", "long", "elf", "multiboot"]
    static let platforms: Set<String> = ["minimal", "pc"]
    static let memoryRange = 1...PlatformMemoryLayout.maximumMemoryMiB
    static let vcpuRange = 1...64

    /// Host paths, resolved inside the root filesystem.
    public var image: String
    public var mode: String?
    public var memory: Int?
    public var vcpus: Int?
    public var append: String?
    /// "FILE [ARGS]" with FILE as a host path.
    public var modules: [String] = []
    public var platform: String?
    public var policy: String?
    public var disks: [Disk] = []
    public var net: Net?

    /// A deflect.json larger than this is refused unread.
    static let maximumBytes = 64 << 10

    /// Reads and checks `rootfs/deflect.json`; `network` is where the task's
    /// spec puts its network (`net` needs a namespace of its own). Every bad
    /// field is named in the one error.
    public static func load(rootfs: String, network: TaskNetworkNamespace = .host) throws(VMDescriptionError) -> VMDescription {
        try parse(read(rootfs: rootfs), rootfs: rootfs, network: network)
    }

    /// The file's bytes, if it is a regular file of at most `maximumBytes`: a
    /// symbolic link (to a host file, say) is refused, not followed, and a FIFO
    /// or device is never opened. lstat first, then open without following a
    /// link or blocking, then fstat: a file swapped in between is caught too.
    static func read(rootfs: String) throws(VMDescriptionError) -> Data {
        let path = (rootfs as NSString).appendingPathComponent(fileName)
        var status = stat()
        guard lstat(path, &status) == 0 else {
            throw VMDescriptionError([errno == ENOENT ? "\(fileName) is missing from the root filesystem \(rootfs)"
                                                      : "\(fileName) cannot be read: \(String(cString: strerror(errno)))"])
        }
        try requireRegular(status.st_mode)
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            throw VMDescriptionError([errno == ELOOP ? "\(fileName) is \(FileKind.name(S_IFLNK)), not a regular file: refused"
                                                     : "\(fileName) cannot be opened: \(String(cString: strerror(errno)))"])
        }
        defer { close(fd) }
        guard fstat(fd, &status) == 0 else { throw VMDescriptionError(["\(fileName) cannot be read: \(String(cString: strerror(errno)))"]) }
        try requireRegular(status.st_mode)
        guard status.st_size <= maximumBytes else {
            throw VMDescriptionError(["\(fileName) is \(status.st_size) bytes, more than the \(maximumBytes) a description may have"])
        }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        while data.count <= maximumBytes {
            let count = buffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw VMDescriptionError(["\(fileName) cannot be read: \(String(cString: strerror(errno)))"]) }
            if count == 0 { return data }
            data.append(contentsOf: buffer[0..<count])
        }
        throw VMDescriptionError(["\(fileName) grew past the \(maximumBytes) bytes a description may have"])
    }

    private static func requireRegular(_ mode: mode_t) throws(VMDescriptionError) {
        guard (mode & S_IFMT) == S_IFREG else {
            throw VMDescriptionError(["\(fileName) is \(FileKind.name(mode & S_IFMT)), not a regular file: refused"])
        }
    }

    public static func parse(_ data: Data, rootfs: String, network: TaskNetworkNamespace = .host) throws(VMDescriptionError) -> VMDescription {
        guard let json = try? JSONSerialization.jsonObject(with: data), let object = json as? [String: Any] else {
            throw VMDescriptionError(["\(fileName) is not a JSON object"])
        }
        var problems: [String] = []
        let known: Set<String> = ["image", "mode", "memory", "vcpus", "append", "modules", "platform", "policy", "disks", "net"]
        // The key is named (shortened, escaped) so the author can find it; its value is never shown.
        for key in object.keys.sorted() where !known.contains(key) {
            problems.append("\(Shown.text(key)): unknown field (known: \(known.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String) -> String? {
            guard let value = object[key] else { return nil }
            guard let text = value as? String else { problems.append("\(key): must be a string"); return nil }
            return text
        }
        func integer(_ key: String, in range: ClosedRange<Int>) -> Int? {
            guard let value = object[key] else { return nil }
            // JSON true/false arrive as NSNumbers of type "c" (char); they are not integers here.
            guard let number = value as? NSNumber, String(cString: number.objCType) != "c",
                  let integer = Int(exactly: number.doubleValue) else {
                problems.append("\(key): must be an integer"); return nil
            }
            guard range.contains(integer) else { problems.append("\(key): \(integer) is outside \(range.lowerBound)–\(range.upperBound)"); return nil }
            return integer
        }
        func inside(_ key: String, _ relative: String) -> String? {
            do { return try RootfsPath.resolve(relative, in: rootfs) } catch {
                problems.append("\(key): \(error.description)"); return nil
            }
        }

        var image: String?
        if let relative = string("image") { image = inside("image", relative) } else if object["image"] == nil {
            problems.append("image: required (the guest image's path in the root filesystem)")
        }
        let mode = string("mode")
        if let mode, !modes.contains(mode) { problems.append("mode: \(Shown.quoted(mode)) is not one of \(modes.sorted().joined(separator: ", "))") }
        let platform = string("platform")
        if let platform, !platforms.contains(platform) {
            problems.append("platform: \(Shown.quoted(platform)) is not one of \(platforms.sorted().joined(separator: ", "))")
        }
        let memory = integer("memory", in: memoryRange)
        let vcpus = integer("vcpus", in: vcpuRange)
        let append = string("append")
        let policy = string("policy").flatMap { inside("policy", $0) }
        var modules: [String] = []
        if let value = object["modules"] {
            if let list = value as? [Any], list.allSatisfy({ $0 is String }) {
                for (index, entry) in list.compactMap({ $0 as? String }).enumerated() {
                    let file = String(entry.prefix { $0 != " " })
                    let rest = entry.dropFirst(file.count)
                    if let host = inside("modules[\(index)]", file) { modules.append(host + rest) }
                }
            } else {
                problems.append("modules: must be an array of strings (\"FILE [ARGS]\")")
            }
        }
        let disks = Self.disks(object["disks"], rootfs: rootfs, problems: &problems)
        let net = Self.net(object["net"], network: network, problems: &problems)
        if let problem = platformProblem(disks: object["disks"], net: object["net"], platform: platform) { problems.append(problem) }
        if let image {
            problems += commandLineProblems(image: image, mode: mode, append: append, modules: modules)
        }
        guard problems.isEmpty, let image else { throw VMDescriptionError(problems) }
        return VMDescription(image: image, mode: mode, memory: memory, vcpus: vcpus, append: append,
                             modules: modules, platform: platform, policy: policy, disks: disks, net: net)
    }

    /// What `deflect run` would refuse only once started: a command line
    /// for a kernel that takes none, or longer than the multiboot loader
    /// holds (the kernel's line is "IMAGE APPEND", IMAGE its host path).
    static func commandLineProblems(image: String, mode: String?, append: String?, modules: [String]) -> [String] {
        var problems: [String] = []
        if let mode, modes.contains(mode), mode != "multiboot" {
            if append != nil { problems.append("append: a command line needs mode multiboot, not \(mode)") }
            if !modules.isEmpty { problems.append("modules: need mode multiboot, not \(mode)") }
        }
        let maximum = BootLayout.multibootMaxCommandLineBytes
        if let append {
            let length = image.utf8.count + 1 + append.utf8.count
            if length > maximum {
                problems.append("append: the kernel's command line (the image's path \(image.utf8.count) bytes, a space, append) is \(length) bytes, more than \(maximum)")
            }
            if append.utf8.contains(0) { problems.append("append: contains a NUL character") }
        }
        if modules.count > BootLayout.multibootMaxModules {
            problems.append("modules: \(modules.count) modules, more than \(BootLayout.multibootMaxModules)")
        }
        for (index, module) in modules.enumerated() {
            if module.utf8.count > maximum {
                problems.append("modules[\(index)]: its command line (its path and arguments) is \(module.utf8.count) bytes, more than \(maximum)")
            }
            if module.utf8.contains(0) { problems.append("modules[\(index)]: contains a NUL character") }
        }
        return problems
    }

    /// The `deflect run` arguments for this VM, serving the control API on
    /// `apiSocket`, its `net` on the pod network Start connected.
    public func runArguments(apiSocket: String, network: PodNetwork? = nil) -> [String] {
        var arguments = ["run", image]
        if let mode { arguments += ["--mode", mode] }
        if let memory { arguments += ["--memory", String(memory)] }
        if let vcpus { arguments += ["--vcpus", String(vcpus)] }
        if let append { arguments += ["--append", append] }
        for module in modules { arguments += ["--module", module] }
        if let platform { arguments += ["--platform", platform] }
        if let policy { arguments += ["--policy", policy] }
        arguments += deviceArguments(network: network)
        return arguments + ["--api-socket", apiSocket]
    }
}

/// What is wrong with a deflect.json: one entry per bad field.
public struct VMDescriptionError: Error, Equatable, CustomStringConvertible, Sendable {
    public let problems: [String]
    public init(_ problems: [String]) { self.problems = problems }
    public var description: String { "\(VMDescription.fileName): " + problems.joined(separator: "; ") }
}

/// Paths a task names, kept inside its root filesystem.
public enum RootfsPath {
    public struct Escape: Error, CustomStringConvertible {
        public let description: String
    }

    /// Symbolic links followed in one path at most (Linux's limit).
    static let maximumLinks = 40

    /// The host path of the regular file `path` (relative to, or absolute
    /// inside, `rootfs`) after symbolic links are resolved. Resolved one
    /// component at a time, as the kernel would, but nothing outside `rootfs`
    /// is ever looked at: a `..` above its top or a link to a host path
    /// outside it is refused before it is followed, so the answer says
    /// nothing about the host's files (realpath(3) would: "does not exist"
    /// for one host path, "outside" for another).
    public static func resolve(_ path: String, in rootfs: String) throws(Escape) -> String {
        guard !path.isEmpty else { throw Escape(description: "empty path") }
        guard let root = realPath(rootfs) else { throw Escape(description: "the root filesystem \(rootfs) does not exist") }
        let shown = Shown.quoted(path)
        func host(_ components: [String]) -> String {
            components.isEmpty ? root : (root == "/" ? "" : root) + "/" + components.joined(separator: "/")
        }
        var resolved: [String] = []
        var pending = Array(path.split(separator: "/").reversed())
        var links = 0
        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                guard !resolved.isEmpty else { throw Escape(description: "\(shown) leads outside the root filesystem") }
                resolved.removeLast()
                continue
            }
            let candidate = host(resolved + [String(component)])
            var status = stat()
            guard lstat(candidate, &status) == 0 else {
                throw Escape(description: errno == ENOENT || errno == ENOTDIR ? "\(shown) does not exist in the root filesystem"
                                                                             : "\(shown) cannot be read: \(String(cString: strerror(errno)))")
            }
            guard (status.st_mode & S_IFMT) == S_IFLNK else {
                resolved.append(String(component))
                continue
            }
            links += 1
            guard links <= maximumLinks else { throw Escape(description: "\(shown) has more than \(maximumLinks) symbolic links") }
            guard let target = linkTarget(candidate) else { throw Escape(description: "\(shown) cannot be read") }
            if target.hasPrefix("/") {
                // A host path: followed only where it names a place inside the root filesystem.
                guard root == "/" || target == root || target.hasPrefix(root + "/") else {
                    throw Escape(description: "\(shown) leads outside the root filesystem")
                }
                resolved = []
                pending += target.dropFirst(root == "/" ? 0 : root.count).split(separator: "/").reversed()
            } else {
                pending += target.split(separator: "/").reversed()
            }
        }
        var status = stat()
        let result = host(resolved)
        guard stat(result, &status) == 0 else { throw Escape(description: "\(shown) does not exist in the root filesystem") }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw Escape(description: "\(shown) is \(FileKind.name(status.st_mode & S_IFMT)), not a regular file")
        }
        return result
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func linkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A file type as the errors name it.
enum FileKind {
    static func name(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        case S_IFREG: "a regular file"
        default: "a special file"
        }
    }
}

/// Text from an untrusted file as an error shows it: at most 64 characters,
/// control characters escaped, so a value can neither flood nor forge a line.
enum Shown {
    static let maximumCharacters = 64

    static func text(_ value: String) -> String {
        var shown = ""
        for scalar in value.unicodeScalars.prefix(maximumCharacters) {
            shown += scalar.properties.generalCategory == .control || scalar == "'" ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return value.unicodeScalars.count > maximumCharacters ? shown + "…" : shown
    }

    static func quoted(_ value: String) -> String { "'" + text(value) + "'" }
}
