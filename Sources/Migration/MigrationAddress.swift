// Migration: where a migration stream goes: `tcp:HOST:PORT` or `unix:PATH`,
// parsed with one clear error per malformed address, and whether a listen
// address is reachable only from this host.

/// A migration endpoint.
public enum MigrationAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: UInt16)
    case unix(path: String)

    /// sockaddr_un's sun_path holds 108 bytes including the NUL.
    public static let maximumUnixPathBytes = 107

    public init(parsing text: String) throws(MigrationAddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw MigrationAddressError(text, "the Unix socket path is empty") }
            guard path.utf8.count <= Self.maximumUnixPathBytes else {
                throw MigrationAddressError(text, "the Unix socket path is longer than \(Self.maximumUnixPathBytes) bytes")
            }
            self = .unix(path: path)
        } else if text.hasPrefix("tcp:") {
            let rest = text.dropFirst(4)
            guard let colon = rest.lastIndex(of: ":") else { throw MigrationAddressError(text, "no port (tcp:HOST:PORT)") }
            var host = String(rest[..<colon])
            let portText = rest[rest.index(after: colon)...]
            if host.hasPrefix("[") && host.hasSuffix("]") && host.count > 2 { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { throw MigrationAddressError(text, "the host is empty (tcp:HOST:PORT)") }
            guard host.allSatisfy({ $0.isLetter || $0.isNumber || ".-:_".contains($0) }), host.utf8.count <= 253 else {
                throw MigrationAddressError(text, "\"\(host)\" is not a host name or IP address")
            }
            guard let port = UInt16(portText), portText.allSatisfy(\.isASCII) else {
                throw MigrationAddressError(text, "the port \"\(portText)\" is not a number from 0 to 65535")
            }
            self = .tcp(host: host, port: port)
        } else {
            throw MigrationAddressError(text, "expected tcp:HOST:PORT or unix:PATH")
        }
    }

    public var description: String {
        switch self {
        case let .tcp(host, port): host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        case let .unix(path): "unix:\(path)"
        }
    }

    /// Only this host can reach it: a Unix socket, or a loopback TCP address.
    public var isLocalOnly: Bool {
        switch self {
        case .unix: true
        case let .tcp(host, _): host == "localhost" || host == "::1"
            || (host.hasPrefix("127.") && host.allSatisfy { $0.isNumber || $0 == "." })
        }
    }
}

public struct MigrationAddressError: Error, Equatable, Sendable, CustomStringConvertible {
    public var address: String
    public var reason: String

    init(_ address: String, _ reason: String) { (self.address, self.reason) = (address, reason) }

    public var description: String { "invalid migration address \"\(address)\": \(reason)" }
}
