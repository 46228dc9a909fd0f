// Loader: a Linux bzImage's setup header, read per the kernel's
// Documentation/arch/x86/boot.rst ("THE REAL-MODE KERNEL HEADER" and
// "DETAILS OF HEADER FIELDS"). Only protocol 2.12+ kernels with a 64-bit
// entry are accepted; every read is bounds-checked against the file, so a
// truncated or mangled image is an error, never a trap.
import KVMABI

/// File offsets of the setup-header fields (boot.rst, "THE REAL-MODE KERNEL
/// HEADER"; the same offsets inside `struct boot_params`, whose `hdr` starts
/// at 0x1f1). Width in the comment.
public enum SetupHeaderOffset {
    public static let setupSects = 0x1F1          // u8, 0 means 4
    public static let bootFlag = 0x1FE            // u16, 0xAA55
    public static let jump = 0x200                // u16: 0xEB, then the header length - 0x202 + 0x200
    public static let header = 0x202              // u32, "HdrS"
    public static let version = 0x206             // u16, major << 8 | minor
    public static let typeOfLoader = 0x210        // u8 (write)
    public static let loadflags = 0x211           // u8 (modify)
    public static let code32Start = 0x214         // u32
    public static let ramdiskImage = 0x218        // u32 (write)
    public static let ramdiskSize = 0x21C         // u32 (write)
    public static let heapEndPtr = 0x224          // u16 (write)
    public static let cmdLinePtr = 0x228          // u32 (write)
    public static let initrdAddrMax = 0x22C       // u32, highest address the initrd may occupy
    public static let kernelAlignment = 0x230     // u32
    public static let relocatableKernel = 0x234   // u8
    public static let minAlignment = 0x235        // u8, log2
    public static let xloadflags = 0x236          // u16
    public static let cmdlineSize = 0x238         // u32, without the terminating NUL
    public static let prefAddress = 0x258         // u64
    public static let initSize = 0x260            // u32
    public static let handoverOffset = 0x264      // u32
    /// One past the last field a 2.12 kernel defines (handover_offset).
    public static let endOfProtocol212Fields = 0x268
    /// `struct boot_params` has 0x290 - 0x1f1 bytes for the header; a header
    /// claiming to be longer is copied only that far.
    public static let boundaryInBootParams = 0x290
}

/// Setup-header constants (boot.rst).
public enum SetupHeaderConstants {
    /// "HdrS" read as a little-endian u32.
    public static let magic: UInt32 = 0x5372_6448
    public static let bootFlag: UInt16 = 0xAA55
    /// Protocol 2.12 (Linux 3.8): xloadflags, 64-bit entry, the fields read here.
    public static let minimumVersion: UInt16 = 0x020C
    /// setup_sects 0 means 4 (boot.rst, setup_sects).
    public static let defaultSetupSects = 4
    public static let sectorSize = 512
    /// loadflags bits.
    public static let loadedHigh: UInt8 = 1 << 0      // protected-mode code at 0x100000 (bzImage)
    public static let canUseHeap: UInt8 = 1 << 7      // heap_end_ptr is valid
    /// xloadflags bits.
    public static let xlfKernel64: UInt16 = 1 << 0    // 64-bit entry at the load address + 0x200
    public static let xlfCanBeLoadedAbove4G: UInt16 = 1 << 1
    /// The 64-bit entry's offset from the protected-mode kernel's start (boot.rst, "64-bit BOOT PROTOCOL").
    public static let entry64Offset: UInt64 = 0x200
    /// type_of_loader 0xFF: "undefined" boot loader (boot.rst, type_of_loader).
    public static let undefinedLoader: UInt8 = 0xFF
    /// The protected-mode kernel's traditional load address (boot.rst, "LOADING THE REST OF THE KERNEL").
    public static let highLoadAddress: UInt64 = 0x10_0000
}

/// A parsed bzImage: the setup header fields a loader needs and where the
/// protected-mode kernel starts in the file.
public struct BzImage: Sendable, Equatable {
    public var setupSects: Int
    /// major << 8 | minor, e.g. 0x020F for 2.15.
    public var protocolVersion: UInt16
    public var loadflags: UInt8
    public var initrdAddrMax: UInt32
    public var kernelAlignment: UInt32
    public var relocatable: Bool
    public var minAlignment: UInt8
    public var xloadflags: UInt16
    public var cmdlineSize: UInt32
    public var prefAddress: UInt64
    public var initSize: UInt32
    /// File offset of the protected-mode kernel: (setup_sects + 1) * 512.
    public var kernelOffset: Int
    /// Bytes of the protected-mode kernel (the rest of the file).
    public var kernelSize: Int
    /// The setup header as it is in the file, from 0x1f1 to its end
    /// (0x202 + the byte at 0x201, at most 0x290): what the zero page starts from.
    public var setupHeaderBytes: [UInt8]

    public var has64BitEntry: Bool { xloadflags & SetupHeaderConstants.xlfKernel64 != 0 }
    public var protocolDescription: String { Self.describe(protocolVersion) }

    static func describe(_ version: UInt16) -> String { "\(version >> 8).\(version & 0xFF)" }

    /// True when `image` carries the "HdrS" signature at 0x202 (no other check).
    public static func isPresent(in image: [UInt8]) -> Bool {
        (try? LittleEndianReader(bytes: image).u32(SetupHeaderOffset.header)) == SetupHeaderConstants.magic
    }

    public init(parsing image: [UInt8]) throws(LoaderError) {
        let reader = LittleEndianReader(bytes: image) { size, required in
            .linuxImageTruncated(size: size, required: required, what: "the setup header")
        }
        // The signature first: a short non-Linux file is "not a bzImage", not "truncated".
        guard image.count >= SetupHeaderOffset.header + 4 else {
            throw .linuxNotBzImage(reason: "the file has \(image.count) bytes, too short for a setup header ('HdrS' at 0x202)")
        }
        let magic = try reader.u32(SetupHeaderOffset.header)
        guard magic == SetupHeaderConstants.magic else {
            throw .linuxNotBzImage(reason: "no 'HdrS' signature at 0x202 (found \(hex(magic)))")
        }
        protocolVersion = try reader.u16(SetupHeaderOffset.version)
        guard protocolVersion >= SetupHeaderConstants.minimumVersion else {
            throw .linuxProtocolTooOld(version: Self.describe(protocolVersion),
                                       minimum: Self.describe(SetupHeaderConstants.minimumVersion))
        }
        guard image.count >= SetupHeaderOffset.endOfProtocol212Fields else {
            throw .linuxImageTruncated(size: image.count, required: SetupHeaderOffset.endOfProtocol212Fields,
                                       what: "the protocol \(Self.describe(protocolVersion)) setup header")
        }
        let sects = Int(try reader.u8(SetupHeaderOffset.setupSects))
        setupSects = sects == 0 ? SetupHeaderConstants.defaultSetupSects : sects
        loadflags = try reader.u8(SetupHeaderOffset.loadflags)
        initrdAddrMax = try reader.u32(SetupHeaderOffset.initrdAddrMax)
        kernelAlignment = try reader.u32(SetupHeaderOffset.kernelAlignment)
        relocatable = try reader.u8(SetupHeaderOffset.relocatableKernel) != 0
        minAlignment = try reader.u8(SetupHeaderOffset.minAlignment)
        xloadflags = try reader.u16(SetupHeaderOffset.xloadflags)
        cmdlineSize = try reader.u32(SetupHeaderOffset.cmdlineSize)
        prefAddress = try reader.u64(SetupHeaderOffset.prefAddress)
        initSize = try reader.u32(SetupHeaderOffset.initSize)

        guard loadflags & SetupHeaderConstants.loadedHigh != 0 else {
            throw .linuxNotBzImage(reason: "loadflags \(hex(loadflags)) lack LOADED_HIGH: a zImage, not a bzImage")
        }
        guard xloadflags & SetupHeaderConstants.xlfKernel64 != 0 else {
            throw .linuxNo64BitEntry(xloadflags: xloadflags)
        }

        // setup_sects is one byte, so this is at most 256 * 512.
        kernelOffset = (setupSects + 1) * SetupHeaderConstants.sectorSize
        guard image.count > kernelOffset else {
            throw .linuxImageTruncated(size: image.count, required: kernelOffset + 1,
                                       what: "the setup code (\(setupSects) sectors) and a protected-mode kernel")
        }
        kernelSize = image.count - kernelOffset

        // boot.rst, "64-bit BOOT PROTOCOL": the header ends at 0x202 + the byte at 0x201.
        let lengthByte = try reader.u8(SetupHeaderOffset.jump + 1)
        let declaredEnd = SetupHeaderOffset.header + Int(lengthByte)
        let end = min(max(declaredEnd, SetupHeaderOffset.endOfProtocol212Fields),
                      SetupHeaderOffset.boundaryInBootParams, image.count)
        setupHeaderBytes = Array(image[SetupHeaderOffset.setupSects..<end])
    }

    /// The protected-mode kernel's bytes (checked in `init` to lie in the file).
    public func kernelBytes(from image: [UInt8]) -> [UInt8] {
        guard kernelOffset < image.count else { return [] }
        return Array(image[kernelOffset...])
    }
}
