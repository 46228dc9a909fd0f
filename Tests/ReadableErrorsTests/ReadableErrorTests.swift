// ReadableErrorsTests: the errors Foundation really throws for the common
// file failures (missing, a directory, permission denied, a full or
// read-only place) come out as strerror's one line, never as an
// NSCocoaErrorDomain dump; Swift errors keep their own words.
import DeflectTestSupport
import Foundation
import ReadableErrors
import Testing

/// What a user must never see.
private func expectReadable(_ text: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(text == expected, sourceLocation: sourceLocation)
    #expect(!text.contains("NSCocoaErrorDomain") && !text.contains("Error Domain=") && !text.contains("UserInfo"),
            "\(text)", sourceLocation: sourceLocation)
    #expect(!text.contains("\n"), sourceLocation: sourceLocation)
}

/// The error `body` throws.
private func thrown(_ body: () throws -> Void) -> (any Error)? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

private let enoent = String(cString: strerror(ENOENT))
private let eisdir = String(cString: strerror(EISDIR))
private let eacces = String(cString: strerror(EACCES))

@Suite("ReadableError")
struct ReadableErrorTests {
    @Test func aMissingFileIsENOENT() throws {
        let missing = "/nonexistent/dir/file"
        for error in [thrown { _ = try Data(contentsOf: URL(fileURLWithPath: missing)) },
                      thrown { _ = try String(contentsOfFile: missing, encoding: .utf8) },
                      thrown { _ = try FileHandle(forReadingFrom: URL(fileURLWithPath: missing)) },
                      thrown { try FileManager.default.removeItem(atPath: missing) },
                      thrown { _ = try FileManager.default.contentsOfDirectory(atPath: missing) },
                      thrown { try Data([1]).write(to: URL(fileURLWithPath: missing)) }] {
            let error = try #require(error)
            #expect("\(error)".contains("NSCocoaErrorDomain"), "Foundation's own text no longer needs this: \(error)")
            expectReadable(ReadableError.reason(error), enoent)
        }
    }

    @Test func aDirectoryIsEISDIR() throws {
        let directory = NSTemporaryDirectory()
        for error in [thrown { _ = try Data(contentsOf: URL(fileURLWithPath: directory)) },
                      thrown { _ = try Data(contentsOf: URL(fileURLWithPath: directory), options: .alwaysMapped) },
                      thrown { _ = try String(contentsOfFile: directory, encoding: .utf8) },
                      thrown { try Data([1]).write(to: URL(fileURLWithPath: directory)) }] {
            let error = try #require(error)
            // Foundation's localizedDescription is no better: "(NSCocoaErrorDomain error 256.)".
            #expect(error.localizedDescription.contains("NSCocoaErrorDomain"), "\(error.localizedDescription)")
            expectReadable(ReadableError.reason(error), eisdir)
            expectReadable(ReadableError.line(path: directory, error), "\(directory): \(eisdir)")
        }
    }

    @Test func permissionDeniedIsEACCES() throws {
        let path = try #require(try UnreadableFile.path(), "no file this process may not read")
        let error = try #require(thrown { _ = try Data(contentsOf: URL(fileURLWithPath: path)) })
        expectReadable(ReadableError.reason(error), eacces)
        let text = try #require(thrown { _ = try String(contentsOfFile: path, encoding: .utf8) })
        expectReadable(ReadableError.reason(text), eacces)
    }

    /// Foundation errors made without an underlying POSIX error stand for one.
    @Test func codesWithoutAnUnderlyingErrorAreMapped() {
        expectReadable(ReadableError.reason(CocoaError(.fileReadNoSuchFile)), enoent)
        expectReadable(ReadableError.reason(CocoaError(.fileWriteOutOfSpace)), String(cString: strerror(ENOSPC)))
        expectReadable(ReadableError.reason(CocoaError(.fileWriteVolumeReadOnly)), String(cString: strerror(EROFS)))
        expectReadable(ReadableError.reason(NSError(domain: NSCocoaErrorDomain, code: 257)), eacces)
        expectReadable(ReadableError.reason(NSError(domain: NSPOSIXErrorDomain, code: Int(ENOSPC))), String(cString: strerror(ENOSPC)))
        expectReadable(ReadableError.reason(POSIXError(.EIO)), String(cString: strerror(EIO)))
        expectReadable(ReadableError.reason(CocoaError(.fileReadUnknown)), "the file could not be read (error 256)")
        expectReadable(ReadableError.reason(NSError(domain: "Other", code: 7)), "error 7")
        expectReadable(ReadableError.reason(NSError(domain: "Other", code: 7, userInfo: [NSLocalizedDescriptionKey: "it broke\nbadly"])),
                       "it broke; badly")
    }

    /// A Swift error is not Foundation's: its own description, on one line.
    @Test func swiftErrorsKeepTheirWords() {
        struct Broken: Error, CustomStringConvertible {
            var description: String { "first line\n  second line\n" }
        }
        enum Plain: Error { case gone }
        #expect(ReadableError.reason(Broken()) == "first line; second line")
        #expect(ReadableError.reason(Plain.gone) == "gone")
    }

    /// An NSError that wraps another (as FileHandle throws them) reads as
    /// the inner one, though ReadableErrors itself sees no NSError type.
    @Test func wrappedNSErrorsReadAsTheirUnderlyingError() {
        let wrapped = NSError(domain: NSCocoaErrorDomain, code: 4,
                              userInfo: [NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(EPERM))])
        expectReadable(ReadableError.reason(wrapped), String(cString: strerror(EPERM)))
        expectReadable(ReadableError.reason(NSError(domain: NSCocoaErrorDomain, code: 4864)),
                       "the data is damaged or not in the expected format")
    }

    @Test func trimmedDropsSurroundingBlanksOnly() {
        #expect(ReadableError.trimmed("  a b\t ") == "a b")
        #expect(ReadableError.trimmed("") == "")
        #expect(ReadableError.trimmed(" \t ") == "")
        #expect(ReadableError.trimmed("x") == "x")
    }
}

/// Figures in messages as printf's "%.Nf" writes them.
@Suite struct FixedPointTests {
    @Test func matchesPrintfForOrdinaryValues() {
        let samples: [Double] = [0, 1, -1, 0.5, 1.5, 2.5, 2.345, 12.3456, -0.06, 1234567.891, 0.001, 99.95, 1e-9, 300, 1e15]
        for value in samples {
            for digits in 0...3 {
                var buffer = [CChar](repeating: 0, count: 64)
                _ = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.\(digits)f", $0) }
                let printf = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                // printf rounds the binary value half to even; both agree but for exact ties.
                let isTie = (value * pow(10, Double(digits))).truncatingRemainder(dividingBy: 1).magnitude == 0.5
                if !isTie { #expect(value.fixed(digits) == printf, "\(value) with \(digits) digits") }
            }
        }
    }

    @Test func tiesRoundAwayFromZeroAndSpecialValuesAreNamed() {
        #expect(2.5.fixed(0) == "3")
        #expect((-2.5).fixed(0) == "-3")
        #expect(0.25.fixed(1) == "0.3")
        #expect((-0.04).fixed(1) == "-0.0")
        #expect(Double.nan.fixed(2) == "nan")
        #expect(Double.infinity.fixed(1) == "inf")
        #expect((-Double.infinity).fixed(1) == "-inf")
        #expect(7.0.fixed(-3) == "7")
        #expect(1e20.fixed(1) == "\(1e20)")
    }
}
