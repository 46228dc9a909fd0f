// ContainerdShim: `deflect.json`, the VM a task runs — `deflect run`'s
// options as JSON, checked field by field, with every path kept inside the
// task's root filesystem — and the `deflect run` arguments it becomes.
import Foundation

public struct VMDescription: Equatable, Sendable {
    public static let fileName = "deflect.json"
    static let modes: Set<String> = ["real", "long", "elf", "multiboot"]
    static let platforms: Set<String> = ["minimal", "pc"]
    static let memoryRange = 1...3072
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

    /// Reads and checks `rootfs/deflect.json`. Every bad field is named in the one error.
    public static func load(rootfs: String) throws(VMDescriptionError) -> VMDescription {
        let path = (rootfs as NSString).appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VMDescriptionError(["\(fileName) is missing from the root filesystem \(rootfs)"])
        }
        return try parse(data, rootfs: rootfs)
    }

    public static func parse(_ data: Data, rootfs: String) throws(VMDescriptionError) -> VMDescription {
        guard let json = try? JSONSerialization.jsonObject(with: data), let object = json as? [String: Any] else {
            throw VMDescriptionError(["\(fileName) is not a JSON object"])
        }
        var problems: [String] = []
        let known: Set<String> = ["image", "mode", "memory", "vcpus", "append", "modules", "platform", "policy"]
        for key in object.keys.sorted() where !known.contains(key) {
            problems.append("\(key): unknown field (known: \(known.sorted().joined(separator: ", ")))")
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
        if let mode, !modes.contains(mode) { problems.append("mode: '\(mode)' is not one of \(modes.sorted().joined(separator: ", "))") }
        let platform = string("platform")
        if let platform, !platforms.contains(platform) {
            problems.append("platform: '\(platform)' is not one of \(platforms.sorted().joined(separator: ", "))")
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
        guard problems.isEmpty, let image else { throw VMDescriptionError(problems) }
        return VMDescription(image: image, mode: mode, memory: memory, vcpus: vcpus, append: append,
                             modules: modules, platform: platform, policy: policy)
    }

    /// The `deflect run` arguments for this VM, serving the control API on `apiSocket`.
    public func runArguments(apiSocket: String) -> [String] {
        var arguments = ["run", image]
        if let mode { arguments += ["--mode", mode] }
        if let memory { arguments += ["--memory", String(memory)] }
        if let vcpus { arguments += ["--vcpus", String(vcpus)] }
        if let append { arguments += ["--append", append] }
        for module in modules { arguments += ["--module", module] }
        if let platform { arguments += ["--platform", platform] }
        if let policy { arguments += ["--policy", policy] }
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

    /// The host path of `path` (relative to, or absolute inside, `rootfs`)
    /// after symbolic links are resolved; it must exist and stay inside `rootfs`.
    public static func resolve(_ path: String, in rootfs: String) throws(Escape) -> String {
        guard !path.isEmpty else { throw Escape(description: "empty path") }
        guard let root = realPath(rootfs) else { throw Escape(description: "the root filesystem \(rootfs) does not exist") }
        let joined = (root as NSString).appendingPathComponent(String(path.drop { $0 == "/" }))
        guard let resolved = realPath(joined) else { throw Escape(description: "'\(path)' does not exist in the root filesystem") }
        guard resolved == root || resolved.hasPrefix(root == "/" ? "/" : root + "/") else {
            throw Escape(description: "'\(path)' resolves to \(resolved), outside the root filesystem")
        }
        return resolved
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
