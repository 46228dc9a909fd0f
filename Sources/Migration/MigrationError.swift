// Migration: why a migration stream was refused or broke off, one line each,
// for either side (the sender prints it after "deflect: error:", the
// receiver discards what it got and prints it the same way).

/// A failed migration step: a bad frame, a refusal, a broken connection.
public enum MigrationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The stream ended (or the peer went away) in the middle of `what`.
    case connectionClosed(String)
    /// No byte arrived within the read timeout.
    case timedOut(String)
    /// A socket or file operation failed.
    case transport(String)
    /// A frame claims more payload than the limit.
    case frameTooLarge(length: UInt64, limit: Int)
    case unknownFrameType(UInt16)
    case unknownFrameFlags(UInt16)
    case checksumMismatch(sequence: UInt64)
    /// The frame's HMAC does not verify with this side's key.
    case authenticationFailed(sequence: UInt64)
    /// One side authenticates its frames and the other does not.
    case authenticationMismatch(String)
    case sequenceMismatch(expected: UInt64, received: UInt64)
    /// A message came that the protocol does not allow at this point.
    case unexpectedMessage(expected: String, received: String)
    /// A payload does not decode, or claims something outside the limits.
    case malformed(String)
    /// The receiver refused the VM; the reason it sent back.
    case refused(String)
    /// The peer gave up and said why.
    case aborted(String)

    public var description: String {
        switch self {
        case let .connectionClosed(what): "the connection closed during \(what)"
        case let .timedOut(what): "the peer sent nothing for too long during \(what)"
        case let .transport(reason): reason
        case let .frameTooLarge(length, limit): "a migration frame claims \(length) bytes of payload, more than the limit of \(limit)"
        case let .unknownFrameType(type): "a migration frame has the unknown type \(type)"
        case let .unknownFrameFlags(flags): "a migration frame has unknown flags 0x\(String(flags, radix: 16))"
        case let .checksumMismatch(sequence): "migration frame \(sequence) failed its CRC-64 check"
        case let .authenticationFailed(sequence):
            "migration frame \(sequence) failed its HMAC check (wrong pre-shared key, or the stream was altered)"
        case let .authenticationMismatch(reason): reason
        case let .sequenceMismatch(expected, received):
            "migration frame \(received) arrived where frame \(expected) was expected (lost, repeated or replayed frame)"
        case let .unexpectedMessage(expected, received): "expected a \(expected) message, received \(received)"
        case let .malformed(what): "malformed migration message: \(what)"
        case let .refused(reason): "the receiver refused the VM: \(reason)"
        case let .aborted(reason): "the peer aborted the migration: \(reason)"
        }
    }
}
