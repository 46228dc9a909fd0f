// VMMTests: how a machine takes its multiboot inputs — module and image files
// checked with stat before a byte is read and then mapped (InputFiles), and
// module bytes copied into guest RAM where the loader placed them, a chunk
// at a time.
import DeflectTestSupport
import Foundation
import Loader
import Testing
@testable import VMM

@Suite struct InputFilesTests {
    private func temporaryPath() -> String {
        NSTemporaryDirectory() + "deflect-input-\(UUID().uuidString)"
    }

    @Test func regularFileIsMappedWhole() throws {
        let path = temporaryPath()
        let bytes = Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) })
        try bytes.write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        #expect(try InputFiles.regularFileSize(path) == 5000)
        #expect(try InputFiles.mapRegularFile(path, limit: 5000) == bytes)
        #expect(throws: InputFileError.tooLarge(size: 5000, limit: 4999)) {
            try InputFiles.mapRegularFile(path, limit: 4999)
        }
    }

    @Test func whatIsNotARegularFileIsRefusedWithoutOpeningIt() throws {
        #expect(throws: InputFileError.missing) { try InputFiles.mapRegularFile("/nonexistent/m.bin", limit: 1 << 20) }
        #expect(throws: InputFileError.notRegularFile(kind: "a directory")) {
            try InputFiles.mapRegularFile(NSTemporaryDirectory(), limit: 1 << 20)
        }
        let fifo = temporaryPath()
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        // Opening a FIFO for reading would block until a writer comes: stat must decide first.
        #expect(throws: InputFileError.notRegularFile(kind: "a FIFO")) { try InputFiles.mapRegularFile(fifo, limit: 1 << 20) }
        #expect(throws: InputFileError.notRegularFile(kind: "a character device")) {
            try InputFiles.mapRegularFile("/dev/null", limit: 1 << 20)
        }
    }

    @Test func sizeIsJudgedBeforeReading() throws {
        let path = temporaryPath()
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        defer { unlink(path) }
        #expect(truncate(path, 8 << 30) == 0)  // sparse: no disk
        let started = ContinuousClock.now
        #expect(throws: InputFileError.tooLarge(size: 8 << 30, limit: 64 << 20)) {
            try InputFiles.mapRegularFile(path, limit: 64 << 20)
        }
        #expect(ContinuousClock.now - started < .seconds(1))
    }
}

@Suite("Multiboot modules in guest RAM", .enabled(if: KVMAvailability.usable, Comment(rawValue: KVMAvailability.skipComment)))
struct MultibootModuleRAMTests {
    @Test func moduleBytesLandWhereTheLoaderPlacedThem() throws {
        // 2.5 MiB + 3 bytes: three copy chunks; a second module after it.
        let first = Data((0..<(5 << 19) + 3).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) })
        let second = Data("MAGIC=x\n".utf8)
        var config = MachineConfiguration(image: try GuestImages.bytes("multiboot/mbinfo.elf"), mode: .multiboot,
                                          memoryMiB: 16)
        config.platform = .pc
        config.kernelPath = "mbinfo.elf"
        config.modules = [MultibootModuleContents(bytes: first, commandLine: "first"),
                          MultibootModuleContents(bytes: second, commandLine: "second")]
        let machine = try Machine(configuration: config, serialOutput: CaptureSink())
        let ranges = machine.boot.moduleRanges
        #expect(ranges.count == 2)
        for (range, bytes) in zip(ranges, [first, second]) {
            #expect(UInt64(bytes.count) == range.upperBound - range.lowerBound)
            #expect(try machine.ram.read(at: range.lowerBound, count: bytes.count) == [UInt8](bytes))
        }
    }
}
