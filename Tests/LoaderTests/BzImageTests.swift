// LoaderTests: the bzImage setup header — fields read at boot.rst's offsets
// from a synthetic image and from Debian's real kernel, and each refusal of
// an image that is not one Deflect can boot.
import Testing
@testable import Loader

@Suite struct BzImageTests {
    @Test func readsTheSetupHeaderFields() throws {
        let image = BzImageBuilder().build()
        let header = try BzImage(parsing: image)
        #expect(header.protocolVersion == 0x020F)
        #expect(header.protocolDescription == "2.15")
        #expect(header.setupSects == 4)
        #expect(header.kernelOffset == 5 * 512)
        #expect(header.kernelSize == 8192)
        #expect(header.kernelBytes(from: image) == BzImageBuilder().kernel)
        #expect(header.loadflags == 0x01)
        #expect(header.initrdAddrMax == 0x7FFF_FFFF)
        #expect(header.kernelAlignment == 0x20_0000)
        #expect(header.relocatable)
        #expect(header.minAlignment == 21)
        #expect(header.has64BitEntry)
        #expect(header.cmdlineSize == 2047)
        #expect(header.prefAddress == 0x100_0000)
        #expect(header.initSize == 0x80_0000)
        // 0x1f1 up to 0x202 + the byte at 0x201.
        #expect(header.setupHeaderBytes.count == 0x26C - 0x1F1)
        #expect(header.setupHeaderBytes.first == 4)
        #expect(BzImage.isPresent(in: image))
        #expect(ImageLoader.detectMode(image) == .linux)
    }

    @Test func setupSectsZeroMeansFour() throws {
        var builder = BzImageBuilder()
        builder.setupSects = 0
        let header = try BzImage(parsing: builder.build())
        #expect(header.setupSects == 4)
        #expect(header.kernelOffset == 2560)
    }

    @Test func headerCopyStopsAtTheBootParamsBoundary() throws {
        var builder = BzImageBuilder()
        builder.headerLengthByte = 0xFF  // claims to end at 0x301
        #expect(try BzImage(parsing: builder.build()).setupHeaderBytes.count == 0x290 - 0x1F1)
        builder.headerLengthByte = 0x10  // claims to end before the 2.12 fields
        #expect(try BzImage(parsing: builder.build()).setupHeaderBytes.count == 0x268 - 0x1F1)
    }

    @Test func refusesAFileWithoutHdrS() {
        var builder = BzImageBuilder()
        builder.magic = 0x1234_5678
        #expect(bzError(builder.build()) == .linuxNotBzImage(reason: "no 'HdrS' signature at 0x202 (found 0x12345678)"))
        #expect(ImageLoader.detectMode(builder.build()) == nil)
        guard case .linuxNotBzImage = bzError(Array(repeating: 0x90, count: 100)) else {
            Issue.record("a short file must be 'not a bzImage'")
            return
        }
    }

    @Test func refusesProtocolsBefore212() {
        var builder = BzImageBuilder()
        builder.version = 0x020B
        let error = bzError(builder.build())
        #expect(error == .linuxProtocolTooOld(version: "2.11", minimum: "2.12"))
        #expect(error?.description.contains("2.11") == true)
        builder.version = 0x020C
        #expect(bzError(builder.build()) == nil)
    }

    @Test func refusesAKernelWithoutA64BitEntry() {
        var builder = BzImageBuilder()
        builder.xloadflags = 0x2
        #expect(bzError(builder.build()) == .linuxNo64BitEntry(xloadflags: 0x2))
    }

    @Test func refusesAZImage() {
        var builder = BzImageBuilder()
        builder.loadflags = 0
        guard case .linuxNotBzImage(let reason) = bzError(builder.build()) else {
            Issue.record("a zImage must be refused as not a bzImage")
            return
        }
        #expect(reason.contains("LOADED_HIGH"))
    }

    @Test func refusesTruncatedImages() {
        let image = BzImageBuilder().build()
        // Inside the header, just past the signature.
        #expect(bzError(Array(image.prefix(0x240)))
                == .linuxImageTruncated(size: 0x240, required: 0x268, what: "the protocol 2.15 setup header"))
        // Setup sectors complete, no protected-mode kernel.
        guard case .linuxImageTruncated(let size, let required, _) = bzError(Array(image.prefix(2560))) else {
            Issue.record("an image without a kernel must be truncated")
            return
        }
        #expect(size == 2560 && required == 2561)
        // Every prefix ends in an error or (past the setup) a header, never a trap.
        for length in stride(from: 0, through: image.count, by: 37) {
            _ = try? BzImage(parsing: Array(image.prefix(length)))
        }
    }

    @Test(.enabled(if: DebianGuest.bzImage != nil, Comment(rawValue: DebianGuest.missingBzImage)))
    func readsDebiansBzImage() throws {
        let image = try #require(DebianGuest.bzImage)
        let header = try BzImage(parsing: image)
        // Debian's 6.x kernels: protocol 2.15, relocatable, 64-bit entry, 16 MiB preferred, 2 MiB alignment.
        #expect(header.protocolVersion >= 0x020F)
        #expect(header.relocatable)
        #expect(header.has64BitEntry)
        #expect(header.prefAddress == 0x100_0000)
        #expect(header.kernelAlignment == 0x20_0000)
        #expect(header.cmdlineSize >= 2047)
        #expect(header.initSize > UInt32(header.kernelSize))
        #expect(header.kernelOffset + header.kernelSize == image.count)
        #expect(ImageLoader.detectMode(image) == .linux)

        let initrd = [UInt8](repeating: 0x42, count: 3 << 20)
        let plan = try LinuxLoader.plan(image: image, initrd: initrd, commandLine: "console=ttyS0 noxsave",
                                        memoryBytes: 512 * MiB)
        #expect(plan.loadAddress == 0x100_0000)
        #expect(plan.entry == 0x100_0200)
        #expect(plan.initrd?.upperBound ?? 0 <= 512 * MiB)
        let zeroPage = try #require(plan.segments.first { $0.guestPhysicalAddress == plan.zeroPageAddress }).bytes
        #expect(get32(zeroPage, 0x202) == 0x5372_6448)
        #expect(get16(zeroPage, 0x206) == UInt64(header.protocolVersion))
        #expect(get32(zeroPage, 0x238) == UInt64(header.cmdlineSize))
        #expect(get64(zeroPage, 0x258) == header.prefAddress)
        #expect(zeroPage[0x210] == 0xFF)
    }
}

func bzError(_ image: [UInt8]) -> LoaderError? {
    do {
        _ = try BzImage(parsing: image)
        return nil
    } catch {
        return error
    }
}
