// ContainerdShim: the shim binary's command line as containerd passes it —
// Go flag syntax (`-namespace NS`, `-id=ID`, `--address A`), then the action
// (`start`, `delete`; `serve` is the shim's own long-running half, `pause` a
// pod sandbox's placeholder).
public struct ShimArguments: Equatable, Sendable {
    public var namespace = ""
    public var id = ""
    public var address = ""
    public var publishBinary = ""
    public var bundle = ""
    public var socket = ""
    public var debug = false
    public var action = ""

    public init() {}

    /// The field of a flag that takes a value.
    private static func valueField(_ name: String) -> WritableKeyPath<ShimArguments, String>? {
        switch name {
        case "namespace": \.namespace
        case "id": \.id
        case "address": \.address
        case "publish-binary": \.publishBinary
        case "bundle": \.bundle
        case "socket": \.socket
        default: nil
        }
    }

    /// Parses `arguments` (without the program name); one line per problem.
    public static func parse(_ arguments: [String]) throws(ShimUsageError) -> ShimArguments {
        var parsed = ShimArguments()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument != "-" else {
                guard parsed.action.isEmpty else { throw ShimUsageError("unexpected argument '\(argument)' after '\(parsed.action)'") }
                parsed.action = argument
                continue
            }
            let flag = argument.drop { $0 == "-" }
            let name = String(flag.prefix { $0 != "=" })
            let inlineValue = flag.contains("=") ? String(flag.drop { $0 != "=" }.dropFirst()) : nil
            if name == "debug" || name == "v" {
                if name == "debug" { parsed.debug = inlineValue.map { $0 == "true" || $0 == "1" } ?? true }
                continue
            }
            guard let field = valueField(name) else { throw ShimUsageError("unknown flag '-\(name)'") }
            if let inlineValue {
                parsed[keyPath: field] = inlineValue
            } else {
                guard index < arguments.count else { throw ShimUsageError("flag '-\(name)' needs a value") }
                parsed[keyPath: field] = arguments[index]
                index += 1
            }
        }
        // `serve` and `pause` are the shim's own: not named in the messages.
        guard ["start", "delete", "serve", "pause"].contains(parsed.action) else {
            throw ShimUsageError(parsed.action.isEmpty ? "no action: expected start or delete" : "unknown action '\(parsed.action)': expected start or delete")
        }
        guard !parsed.id.isEmpty else { throw ShimUsageError("-id is required") }
        return parsed
    }
}

/// A command-line problem (exit status 64).
public struct ShimUsageError: Error, Equatable, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
