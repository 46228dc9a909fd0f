// Loader: the fixed guest-physical layout every Deflect boot uses. The VMM
// and the guest test programs rely on these numbers; change them only together.
//
// Guest RAM starts at guest-physical 0; beyond 3 GiB it continues at 4 GiB
// (PlatformMemoryLayout). Everything below is placed in RAM below 3 GiB.
//
//   Real mode (flat binary)
//     0x0000_3000 ..< 0x0000_7000   stacks: SP of vCPU i = 0x7000 - i*0x100
//     0x0000_7C00 ..< 0x000A_0000   image (must end at or below 640 KiB)
//
//   Long mode (flat binary or ELF64)
//     0x0000_1000 ..< 0x0000_2000   GDT: null, 0x08 = 64-bit code, 0x10 = data
//     0x0000_2000 ..< 0x0000_3000   PML4 (entry 0 -> PDPT)
//     0x0000_3000 ..< 0x0000_4000   PDPT (entries 0..3 -> the four PDs)
//     0x0000_4000 ..< 0x0000_8000   four page directories: 2 MiB pages that
//                                   identity-map the first 4 GiB
//     0x0004_0000 ..< 0x0008_0000   stacks: RSP of vCPU i = 0x80000 - i*0x1000
//     0x0010_0000 ...               flat image (ELF segments go at p_paddr,
//                                   anywhere outside the two regions above)
//
//   The IDT is empty (base 0, limit 0). Small guests need no handlers, and an
//   exception then escalates to a triple fault, which KVM reports as a
//   shutdown exit: a clean, reportable end instead of a guest wandering off.
//
// Deflect flat boot convention: every vCPU starts at the same entry point with
// RDI = its vCPU index and RSI = the vCPU count, RFLAGS = 0x2, and its own stack.
//
//   Multiboot v1 (ELF32, or any image whose header sets the address fields)
//     kernel                        where its header or ELF program headers say
//                                   (usually 1 MiB, anywhere in RAM below 4 GiB
//                                   outside the reserved hole below)
//     0x0009_FC00 ..< 0x0010_0000   reserved (EBDA, VGA, BIOS): no kernel bytes
//     modules                       page-aligned, from max(kernel end, 1 MiB) up
//     multiboot area                page-aligned, above everything loaded (as
//                                   QEMU puts its module list and strings after
//                                   the image); only when RAM has no room there,
//                                   the lowest free pages from 0x1000. Inside it:
//       +0x000  GDT: null, 0x08 = flat 32-bit code, 0x10 = flat data
//       +0x020  multiboot information structure (EBX)
//       +0x0A0  memory map (up to 5 entries of 24 bytes: the fifth is RAM above 4 GiB)
//       +0x120  boot loader name "Deflect"
//       +0x130  module table (16 bytes per module)
//       then    command lines, NUL-terminated: the kernel's, then each module's
//       then    a 4 KiB page of stack, ESP at its top, in case the kernel pushes
//               before it sets up its own stack (the spec leaves ESP undefined)
//
//   The kernel's command line is "<kernel path> <append>", as QEMU builds it.
//   QEMU keeps the memory map and information structure at a fixed 0x9000,
//   which a kernel linked there overwrites; Deflect moves them into the area
//   so that nothing the kernel or a module occupies is ever written. The area
//   is not marked reserved in the memory map: as with GRUB and QEMU, the
//   kernel must copy what it needs before reusing that memory. Only one
//   processor starts at the entry; the others wait for INIT/SIPI.

/// Addresses and sizes of the boot layout described at the top of this file.
public enum BootLayout {
    /// The layout has stack slots for this many vCPUs (both modes).
    public static let maxVCPUs = 64

    // MARK: Real mode

    /// Where a real-mode flat binary is loaded and entered (CS:IP = 0:0x7C00).
    public static let realModeLoadAddress: UInt64 = 0x7C00
    /// End of conventional memory (640 KiB); a real-mode image must end here or below.
    public static let conventionalMemoryEnd: UInt64 = 0xA_0000
    /// SP of vCPU 0; vCPU i gets `realModeStackTop - i * realModeStackStride`.
    public static let realModeStackTop: UInt64 = 0x7000
    public static let realModeStackStride: UInt64 = 0x100

    // MARK: Long mode

    /// The boot structures (GDT and page tables) occupy [start, end).
    public static let bootStructuresStart: UInt64 = 0x1000
    public static let bootStructuresEnd: UInt64 = 0x8000
    public static let gdtAddress: UInt64 = 0x1000
    public static let pml4Address: UInt64 = 0x2000
    public static let pdptAddress: UInt64 = 0x3000
    /// First of `pageDirectoryCount` consecutive 4 KiB page directories.
    public static let pageDirectoryAddress: UInt64 = 0x4000
    public static let pageDirectoryCount = 4
    /// The page tables identity-map [0, identityMapLimit) with 2 MiB pages.
    public static let identityMapLimit: UInt64 = 4 << 30

    /// GDT selectors.
    public static let codeSelector: UInt16 = 0x08
    public static let dataSelector: UInt16 = 0x10

    /// The per-vCPU stacks occupy [longModeStacksStart, longModeStackTop).
    public static let longModeStacksStart: UInt64 = 0x4_0000
    /// RSP of vCPU 0; vCPU i gets `longModeStackTop - i * longModeStackStride`.
    public static let longModeStackTop: UInt64 = 0x8_0000
    public static let longModeStackStride: UInt64 = 0x1000

    /// Where a long-mode flat binary is loaded and entered (1 MiB).
    public static let longModeLoadAddress: UInt64 = 0x10_0000
    /// Long-mode boots (flat and ELF) need at least this much RAM: the flat
    /// image at 1 MiB must have room, and one rule for both keeps it simple.
    public static let minimumLongModeMemory: UInt64 = 2 << 20

    // MARK: Multiboot

    /// Offsets inside the multiboot area (see the drawing at the top of this file).
    public static let multibootGDTOffset: UInt64 = 0
    public static let multibootInfoOffset: UInt64 = 0x20
    public static let multibootMemoryMapOffset: UInt64 = 0xA0
    public static let multibootLoaderNameOffset: UInt64 = 0x120
    public static let multibootModuleTableOffset: UInt64 = 0x130
    /// The boot stack's size, above the strings.
    public static let multibootStackSize: UInt64 = 0x1000
    /// The area is placed no lower than this (page 0 stays untouched, as the real-mode IVT).
    public static let multibootAreaLowest: UInt64 = 0x1000
    /// At most this many modules, and this many bytes per command line (without the NUL).
    public static let multibootMaxModules = 64
    public static let multibootMaxCommandLineBytes = 4096
    /// No kernel byte may land in [reservedStart, reservedEnd): EBDA, VGA
    /// memory and the BIOS area, which the memory map reports as reserved or absent.
    public static let multibootReservedStart: UInt64 = 0x9_FC00
    public static let multibootReservedEnd: UInt64 = 0x10_0000
    /// Modules are placed no lower than this.
    public static let multibootModulesStart: UInt64 = 0x10_0000
    /// Multiboot boots need at least this much RAM (kernel at 1 MiB with room).
    public static let minimumMultibootMemory: UInt64 = 2 << 20
    /// Every multiboot address is 32 bits: kernel and modules end at or below 4 GiB.
    public static let multibootAddressLimit: UInt64 = 1 << 32
}
