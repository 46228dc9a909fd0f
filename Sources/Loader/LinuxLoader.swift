// Loader: the plan for booting a Linux bzImage through the 64-bit boot
// protocol (boot.rst, "64-bit BOOT PROTOCOL"): where the protected-mode
// kernel, the initrd, the command line, the zero page, the GDT and the
// identity-mapping page tables go, and the boot processor's registers
// (entry = load address + 0x200, RSI = the zero page). Pure: the VMM copies
// the segments and applies the CPU state. Layout: LinuxBootLayout.swift.
import KVMABI

/// Everything a VMM needs to start a bzImage.
public struct LinuxBootPlan: Sendable {
    public var header: BzImage
    /// Where the protected-mode kernel's bytes go.
    public var loadAddress: UInt64
    /// boot.rst's runtime_start: where the kernel decompresses and runs.
    public var runtimeStart: UInt64
    /// The memory the kernel needs before it reads the memory map: the
    /// loaded image and [runtimeStart, runtimeStart + init_size).
    public var kernelFootprint: Range<UInt64>
    public var initrd: Range<UInt64>?
    public var commandLineAddress: UInt64
    public var zeroPageAddress: UInt64
    public var memoryMap: E820Map
    /// GDT, page tables, zero page, command line, kernel, initrd (if any).
    public var segments: [MemorySegment]
    public var entry: UInt64
    public var cpuState: BootCPUState

    /// As a `BootImage`: only the boot processor starts (at `entry`, with
    /// `cpuState`); the others wait for INIT/SIPI.
    public var bootImage: BootImage {
        LinuxBootLayout.bootImage(mode: .linux, segments: segments, entry: entry, state: cpuState)
    }
}

/// Plans bzImage boots.
public enum LinuxLoader {
    /// Validates `image` (a bzImage, protocol 2.12+, 64-bit entry) and lays
    /// out a boot in `memoryBytes` of RAM on `layout`. `reserved` ranges
    /// (ACPI tables, the EBDA) become reserved e820 entries and hold nothing
    /// of the plan; `acpiRSDPAddress` 0 lets the kernel scan for the RSDP.
    public static func plan(image: [UInt8], initrd: [UInt8]? = nil, commandLine: String = "",
                            memoryBytes: UInt64, layout: PlatformMemoryLayout = .pc,
                            reserved: [Range<UInt64>] = [], acpiRSDPAddress: UInt64 = 0) throws(LoaderError) -> LinuxBootPlan {
        let header = try BzImage(parsing: image)
        // cmdline_size excludes the NUL (boot.rst, cmdline_size); the area holds it too.
        let maximum = Int(min(UInt64(header.cmdlineSize), LinuxBootLayout.commandLineAreaSize - 1))
        let commandLineBytes = try LinuxBootLayout.commandLineBytes(commandLine, maximum: maximum)
        let map = E820Map(memoryBytes: memoryBytes, layout: layout, reserved: reserved)
        let lowRAMEnd = min(layout.lowRAMEnd(memoryBytes: memoryBytes), BootLayout.identityMapLimit)

        let (load, runtime) = try kernelAddresses(header)
        let kernelSize = UInt64(header.kernelSize)
        let (imageEnd, o1) = load.addingReportingOverflow(kernelSize)
        let (windowEnd, o2) = runtime.addingReportingOverflow(UInt64(header.initSize))
        let footprint = min(load, runtime)..<(o1 || o2 ? UInt64.max : max(imageEnd, windowEnd))
        guard footprint.upperBound <= lowRAMEnd, map.isRAM(footprint.lowerBound, footprint.upperBound) else {
            throw .linuxKernelDoesNotFit(start: footprint.lowerBound, end: footprint.upperBound, ramLimit: lowRAMEnd)
        }

        var initrdRange: Range<UInt64>? = nil
        if let initrd, !initrd.isEmpty {
            // initrd_addr_max is the highest address the initrd may occupy (boot.rst).
            let limit = min(UInt64(header.initrdAddrMax) + 1, lowRAMEnd)
            initrdRange = try LinuxBootLayout.placeInitrd(size: UInt64(initrd.count), above: footprint.upperBound,
                                                          limit: limit, map: map)
        }
        try LinuxBootLayout.check(LinuxBootLayout.fixedRegions(commandLineBytes: commandLineBytes.count)
                                  + [(name: "the kernel", range: footprint),
                                     (name: "the initrd", range: initrdRange ?? 0..<0)], in: map)

        let zeroPage = try ZeroPage(setupHeader: header.setupHeaderBytes,
                                    commandLineAddress: LinuxBootLayout.commandLineAddress,
                                    initrd: initrdRange, memoryMap: map, acpiRSDPAddress: acpiRSDPAddress).bytes()
        var segments = [
            MemorySegment(guestPhysicalAddress: BootLayout.gdtAddress,
                          bytes: LongModeBootStructures.gdtPage(LinuxBootLayout.linuxGDTEntries)),
            MemorySegment(guestPhysicalAddress: BootLayout.pml4Address, bytes: LongModeBootStructures.pageTables()),
            MemorySegment(guestPhysicalAddress: LinuxBootLayout.bootInfoAddress, bytes: zeroPage),
            MemorySegment(guestPhysicalAddress: LinuxBootLayout.commandLineAddress, bytes: commandLineBytes),
            MemorySegment(guestPhysicalAddress: load, bytes: header.kernelBytes(from: image)),
        ]
        if let initrd, let initrdRange {
            segments.append(MemorySegment(guestPhysicalAddress: initrdRange.lowerBound, bytes: initrd))
        }
        let entry = load + SetupHeaderConstants.entry64Offset
        return LinuxBootPlan(header: header, loadAddress: load, runtimeStart: runtime, kernelFootprint: footprint,
                             initrd: initrdRange, commandLineAddress: LinuxBootLayout.commandLineAddress,
                             zeroPageAddress: LinuxBootLayout.bootInfoAddress, memoryMap: map, segments: segments,
                             entry: entry, cpuState: .linux64(entry: entry, zeroPage: LinuxBootLayout.bootInfoAddress))
    }

    /// boot.rst (init_size): a relocatable kernel is loaded at pref_address
    /// (aligned up to kernel_alignment), where it also runs; a kernel that is
    /// not relocatable is loaded at 1 MiB and moves itself to pref_address.
    static func kernelAddresses(_ header: BzImage) throws(LoaderError) -> (load: UInt64, runtime: UInt64) {
        let preferred = max(header.prefAddress, LinuxBootLayout.lowestKernelAddress)
        guard header.relocatable else {
            return (SetupHeaderConstants.highLoadAddress, header.prefAddress == 0 ? SetupHeaderConstants.highLoadAddress : header.prefAddress)
        }
        let alignment = UInt64(header.kernelAlignment)
        guard alignment != 0, alignment & (alignment - 1) == 0 else {
            throw .linuxBadKernelAlignment(header.kernelAlignment)
        }
        let (sum, overflow) = preferred.addingReportingOverflow(alignment - 1)
        let load = overflow ? UInt64.max & ~(alignment - 1) : sum & ~(alignment - 1)
        return (load, load)
    }
}

extension BootCPUState {
    /// boot.rst, "64-bit BOOT PROTOCOL": long mode with the identity map,
    /// CS = __BOOT_CS (0x10), DS/ES/SS = __BOOT_DS (0x18) of the Linux GDT,
    /// interrupts off, RSI = the zero page, RBP/RDI/RBX zero.
    public static func linux64(entry: UInt64, zeroPage: UInt64) -> BootCPUState {
        var state = BootCPUState.longMode(entry: entry, stack: LinuxBootLayout.stackTop, rdi: 0, rsi: zeroPage)
        state.cs.selector = LinuxBootLayout.linuxCodeSelector
        let dataSegments: [WritableKeyPath<BootCPUState, Segment>] = [\.ds, \.es, \.fs, \.gs, \.ss]
        for keyPath in dataSegments {
            state[keyPath: keyPath].selector = LinuxBootLayout.linuxDataSelector
        }
        state.gdt = DescriptorTableRegister(base: BootLayout.gdtAddress,
                                            limit: UInt16(LinuxBootLayout.linuxGDTEntries.count * 8 - 1))
        return state
    }
}
