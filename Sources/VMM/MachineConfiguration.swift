// VMM: what a user asks for when starting a machine, validated before
// anything touches KVM.
import Devices
import CPUModel
import FoundationEssentials
import MSRPolicy
import Glibc
import Loader

/// A multiboot module's bytes and the string the kernel sees for it (QEMU's
/// `-initrd "file args"`: the whole string). The bytes are usually a
/// read-only mapping of the file, so a large module is not held twice: the
/// machine copies it into guest RAM a chunk at a time.
public struct MultibootModuleContents: Sendable {
    public var bytes: Data
    public var commandLine: String

    public init(bytes: Data, commandLine: String) {
        self.bytes = bytes
        self.commandLine = commandLine
    }

    /// What the loader needs to place it.
    var placement: MultibootModule { MultibootModule(size: UInt64(bytes.count), commandLine: commandLine) }
}

/// The guest's console: the COM1 UART, or a virtio-console (hvc0) on the
/// same output, standard input going to it.
public enum ConsoleDevice: String, Sendable, CaseIterable, Codable {
    case serial
    case virtio
}

/// Everything needed to build and run one machine.
public struct MachineConfiguration: Sendable {
    /// Guest RAM limits: the static cap. RAM beyond 3 GiB continues at
    /// 4 GiB (`memoryLayout`), so the 32-bit hole keeps the MMIO and KVM's
    /// real-mode TSS pages; the guest's physical address width limits RAM
    /// further when the machine is built (`checkAddressWidth`).
    public static let memoryRangeMiB: ClosedRange<Int> = 1...PlatformMemoryLayout.maximumMemoryMiB
    /// Where RAM goes in the guest-physical address space (every platform).
    public static let memoryLayout = PlatformMemoryLayout.pc
    /// The PC platform's smallest RAM: the first MiB holds the BIOS area.
    public static let minimumPCMemoryMiB = 2
    public static var vcpuRange: ClosedRange<Int> { 1...BootLayout.maxVCPUs }

    public var image: [UInt8]
    public var mode: BootMode
    public var memoryMiB: Int
    public var vcpuCount: Int
    /// nil: no limit.
    public var timeoutSeconds: Double?
    /// Path of the KVM device (tests point it elsewhere to check the error path).
    public var kvmDevicePath: String
    /// How MSR accesses are decided.
    public var msr: MSRSetup = .kernelOnly
    /// Which paravirtual hypercall features the VM offers and handles.
    public var hypercalls: HypercallSetup = .none
    /// The devices and interrupt controllers the guest sees.
    public var platform: Platform = .minimal
    /// Multiboot: the kernel's path as the user gave it (QEMU's -kernel). The
    /// kernel's command line is "<kernelPath> <append>", as QEMU builds it.
    public var kernelPath: String = ""
    /// Multiboot: the rest of the command line (QEMU's -append).
    public var append: String = ""
    /// Multiboot: modules in order (QEMU's -initrd "a,b"); the first is
    /// commonly read as a KEY=VALUE environment file.
    public var modules: [MultibootModuleContents] = []
    /// Linux and PVH: the initial ramdisk (QEMU's -initrd), or nil.
    public var initrd: Data?
    /// The guest's CPU model (`--cpu`): the CPUID table every vCPU starts
    /// from. nil: KVM's supported CPUID, as the host gives it.
    public var cpuModel: ResolvedCPUModel?
    /// The MSR rules the model carries (its profile's, then its file's),
    /// layered under the policy; a policy naming its own profile keeps it.
    public var cpuModelMSRRules: [MSRRule] = []
    /// virtio-blk disks on the PC platform's PCI bus (`--disk`), in slot order.
    public var disks: [DiskConfiguration] = []
    /// virtio-net devices on TAPs (`--net`), after the disks.
    public var networks: [NetConfiguration] = []
    /// A virtio-vsock device (`--vsock`).
    public var vsock: VsockConfiguration?
    /// A virtio-rng device (`--rng`).
    public var entropyDevice = false
    /// Which device is the guest's console (`--console`).
    public var console: ConsoleDevice = .serial

    public init(image: [UInt8], mode: BootMode, memoryMiB: Int = 64, vcpuCount: Int = 1,
                timeoutSeconds: Double? = nil, kvmDevicePath: String = "/dev/kvm") {
        self.image = image
        self.mode = mode
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.timeoutSeconds = timeoutSeconds
        self.kvmDevicePath = kvmDevicePath
    }

    public var memoryBytes: UInt64 { UInt64(memoryMiB) << 20 }
    /// Guest RAM's guest-physical ranges: below the PCI hole, then from 4 GiB.
    public var ramRanges: [Range<UInt64>] { Self.memoryLayout.ramRanges(memoryBytes: memoryBytes) }
    /// The end of the last RAM range: the size of the memory file (file
    /// offset = guest address), and what the page map covers.
    public var ramEnd: UInt64 { Self.memoryLayout.ramEnd(memoryBytes: memoryBytes) }

    /// Refuses RAM the guest cannot address: its ranges must end at or below
    /// 2^`physicalAddressBits` (CPUID 0x80000008 EAX[7:0] of the vCPUs' table).
    public func checkAddressWidth(physicalAddressBits: Int) throws(MachineError) {
        let maximum = Self.memoryLayout.maximumMemoryMiB(physicalAddressBits: physicalAddressBits)
        guard memoryMiB <= maximum else {
            throw .configuration("memory size \(memoryMiB) MiB is more than the guest can address: RAM would end at 0x\(String(ramEnd, radix: 16)), beyond its \(physicalAddressBits)-bit physical addresses (this host and CPU model: at most \(maximum) MiB)")
        }
    }

    /// Checks the numbers a user typed; the image itself is checked by the loader.
    public func validate() throws(MachineError) {
        guard Self.memoryRangeMiB.contains(memoryMiB) else {
            throw .configuration("memory size \(memoryMiB) MiB is out of range \(Self.memoryRangeMiB.lowerBound)–\(Self.memoryRangeMiB.upperBound) MiB")
        }
        // The PC layout puts the read-only BIOS area at 0xE0000–0xFFFFF and RAM above it.
        if platform == .pc && memoryMiB < Self.minimumPCMemoryMiB {
            throw .configuration("--platform pc needs at least \(Self.minimumPCMemoryMiB) MiB of RAM (--memory \(memoryMiB) was given)")
        }
        if (mode == .linux || mode == .pvh) && platform != .pc {
            throw .configuration("a Linux kernel (--mode \(mode.rawValue)) needs --platform pc (its interrupt controllers, timers and ACPI tables)")
        }
        if (!disks.isEmpty || !networks.isEmpty || vsock != nil || entropyDevice || console == .virtio) && platform != .pc {
            throw .configuration("--disk, --net, --vsock, --rng and --console virtio need --platform pc (the PCI bus the devices sit on)")
        }
        guard Self.vcpuRange.contains(vcpuCount) else {
            throw .configuration("vCPU count \(vcpuCount) is out of range \(Self.vcpuRange.lowerBound)–\(Self.vcpuRange.upperBound)")
        }
        if let timeoutSeconds, !(timeoutSeconds > 0 && timeoutSeconds <= 86_400) {
            throw .configuration("timeout \(timeoutSeconds) s is out of range (0, 86400]")
        }
    }
}
