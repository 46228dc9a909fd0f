// ACPIError.swift — why a table set cannot be built: its AML has no encoding,
// or the platform description contradicts itself (a PCI window over the
// ECAM, an inverted range, a 64-bit window below 4 GiB).

/// A table set that cannot be built.
public enum ACPIError: Error, Equatable, Sendable, CustomStringConvertible {
    case aml(AMLError)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case let .aml(error): return error.description
        case let .invalidConfiguration(reason): return "ACPI tables: \(reason)"
        }
    }
}
