// IASLTests.swift — the tables as ACPICA's own tools read them: each table is
// written to a temporary directory and disassembled with `iasl -d`, which
// must report no error and no warning (they are counted); the disassembly
// is compiled again with `iasl`, which must report 0 errors and 0 warnings,
// and the recompiled table must be byte-for-byte ours (but the compiler ID
// iasl writes and the checksum that follows from it). That round trip
// checks every PkgLength, name and descriptor against an independent
// encoder. Skipped, with the reason, where iasl (Debian's acpica-tools) is
// not installed.

import Foundation
import Testing
import ACPI

/// The iasl on PATH, if any.
let iaslPath: String? = {
    let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
    return paths.map { "\($0)/iasl" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

struct IASLRun {
    let status: Int32
    let output: String
    /// Lines that report a warning or an error (ACPICA's "Warning"/"Error"
    /// messages, and the "****" marks the disassembler puts in the .dsl).
    var problems: [String] {
        output.split(separator: "\n").map(String.init).filter { line in
            (line.contains("Warning") || line.contains("Error") || line.contains("****"))
                && !line.contains("0 Errors, 0 Warnings")
        }
    }
}

/// Runs iasl with `arguments` in `directory`, output and error merged.
func iasl(_ arguments: [String], in directory: URL) throws -> IASLRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: iaslPath ?? "iasl")
    process.arguments = arguments
    process.currentDirectoryURL = directory
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return IASLRun(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
}

@Suite(.enabled(if: iaslPath != nil, "iasl is not installed (Debian's acpica-tools): the tables were not checked with ACPICA"))
struct IASLTests {
    /// Every table of a PC set with a 64-bit window and an ECAM, and 4 vCPUs.
    static func tables() throws -> [(name: String, bytes: [UInt8])] {
        let windows = PCIHostBridgeWindows(mmio32: 0xC000_0000...0xFEBF_FFFF, mmio64: 0x80_0000_0000...0xFF_FFFF_FFFF)
        let ecam = ECAMRegion(base: 0xB000_0000)
        let dsdt = try PCDSDT.aml(PCDSDT.Configuration(pci: windows, ecam: ecam, sleep: pcSleep))
        let set = PlatformTables(dsdtAML: dsdt, fadt: pcFADT, madt: pcMADT(vcpus: 4), ecam: [ecam])
        return set.blobs(pcLayout).filter { $0.signature != "RSD " }.map { (name: $0.signature.lowercased(), bytes: $0.bytes) }
    }

    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("deflect-iasl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// What iasl says of `table`: the problems of the disassembly and of
    /// the compilation of it, and the recompiled bytes.
    func roundTrip(_ name: String, _ table: [UInt8]) throws -> (problems: [String], recompiled: [UInt8]) {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(table).write(to: directory.appendingPathComponent("\(name).dat"))

        let disassembly = try iasl(["-d", "\(name).dat"], in: directory)
        let dsl = (try? String(contentsOf: directory.appendingPathComponent("\(name).dsl"), encoding: .utf8)) ?? ""
        var problems = disassembly.problems + IASLRun(status: 0, output: dsl).problems
        if disassembly.status != 0 || dsl.isEmpty { problems.append("iasl -d failed: \(disassembly.output)") }

        // -oa: no optimizations, so iasl encodes what the disassembly says
        // (by default it shortens `Scope (\_SB)` at the root to `_SB_`).
        let compile = try iasl(["-oa", "\(name).dsl"], in: directory)
        problems += compile.problems
        if compile.status != 0 || !compile.output.contains("0 Errors, 0 Warnings") {
            problems.append("iasl failed: \(compile.output)")
        }
        let recompiled = (try? [UInt8](Data(contentsOf: directory.appendingPathComponent("\(name).aml")))) ?? []
        return (problems, recompiled)
    }

    /// The same but the creator fields (iasl writes its own) and the checksum.
    static func comparable(_ name: String, _ bytes: [UInt8]) -> [UInt8] {
        guard name != "facs", bytes.count >= 36 else { return bytes }
        return Array(bytes[0..<9]) + Array(bytes[10..<28]) + Array(bytes[36...])
    }

    @Test(arguments: ["dsdt", "facp", "apic", "mcfg", "rsdt", "xsdt", "facs"])
    func disassemblesAndRecompilesToTheSameBytes(name: String) throws {
        let table = try #require(try Self.tables().first(where: { $0.name == name }), "no \(name) in the set").bytes
        let result = try roundTrip(name, table)
        #expect(result.problems.isEmpty, "iasl: \(result.problems.count) warnings/errors: \(result.problems)")
        #expect(Self.comparable(name, result.recompiled) == Self.comparable(name, table), "\(name): iasl's encoding differs")
    }

    /// The check has teeth: a DSDT whose last package is one byte short
    /// (PkgLength 5, not 6; checksum fixed) does not come back the same.
    @Test func aWrongPkgLengthIsCaught() throws {
        var table = try #require(try Self.tables().first(where: { $0.name == "dsdt" })).bytes
        let package: [UInt8] = [0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00]
        #expect(Array(table.suffix(package.count)) == package)
        table[table.count - package.count + 1] = 0x05
        table[9] = 0
        table[9] = ACPIBytes.checksum(table)
        let result = try roundTrip("dsdt", table)
        #expect(!result.problems.isEmpty || Self.comparable("dsdt", result.recompiled) != Self.comparable("dsdt", table))
    }
}
