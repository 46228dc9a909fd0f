// LoaderTests: helpers that read the produced boot structures back the way
// the CPU would — a page-table walker and a GDT descriptor decoder.
import KVMABI
import SeededRandom
import Loader

/// Reads a little-endian u64 at `address` from whichever segment holds it.
func read64(_ segments: [MemorySegment], _ address: UInt64) -> UInt64? {
    for s in segments where s.guestPhysicalAddress <= address && address + 8 <= s.endAddress {
        let offset = Int(address - s.guestPhysicalAddress)
        var value: UInt64 = 0
        for i in (0..<8).reversed() { value = value << 8 | UInt64(s.bytes[offset + i]) }
        return value
    }
    return nil
}

/// The bytes of guest memory the segments define at `address`, or nil.
func byte(_ segments: [MemorySegment], _ address: UInt64) -> UInt8? {
    for s in segments where s.guestPhysicalAddress <= address && address < s.endAddress {
        return s.bytes[Int(address - s.guestPhysicalAddress)]
    }
    return nil
}

/// 4-level x86-64 walk (PML4 → PDPT → PD with 2 MiB pages, or PT) over the
/// produced bytes. Returns the physical address, or nil if not mapped
/// writable-present at every level.
func translate(_ virtualAddress: UInt64, cr3: UInt64, memory: [MemorySegment]) -> UInt64? {
    let addressMask: UInt64 = 0x000F_FFFF_FFFF_F000
    let present: UInt64 = 1, writable: UInt64 = 2, pageSize: UInt64 = 0x80
    func entry(_ table: UInt64, _ shift: UInt64) -> UInt64? {
        guard let e = read64(memory, (table & addressMask) + ((virtualAddress >> shift) & 0x1FF) * 8),
              e & present != 0, e & writable != 0 else { return nil }
        return e
    }
    guard virtualAddress >> 48 == 0,  // canonical low half only: nothing else is mapped
          let pml4e = entry(cr3, 39),
          let pdpte = entry(pml4e, 30) else { return nil }
    if pdpte & pageSize != 0 {
        return (pdpte & 0x000F_FFFF_C000_0000) | (virtualAddress & 0x3FFF_FFFF)
    }
    guard let pde = entry(pdpte, 21) else { return nil }
    if pde & pageSize != 0 {
        return (pde & 0x000F_FFFF_FFE0_0000) | (virtualAddress & 0x1F_FFFF)
    }
    guard let pte = entry(pde, 12) else { return nil }
    return (pte & addressMask) | (virtualAddress & 0xFFF)
}

/// Decodes an 8-byte GDT code/data descriptor into the hidden segment state
/// a selector load would produce (the selector itself is filled in by the caller).
func decodeDescriptor(_ d: UInt64, selector: UInt16) -> Segment {
    let rawLimit = UInt32(d & 0xFFFF) | UInt32((d >> 48) & 0xF) << 16
    let g = (d >> 55) & 1 == 1
    return Segment(
        base: (d >> 16) & 0xFF_FFFF | ((d >> 56) & 0xFF) << 24,
        limit: g ? rawLimit << 12 | 0xFFF : rawLimit,
        selector: selector,
        type: UInt8((d >> 40) & 0xF),
        present: (d >> 47) & 1 == 1,
        dpl: UInt8((d >> 45) & 3),
        db: (d >> 54) & 1 == 1,
        s: (d >> 44) & 1 == 1,
        l: (d >> 53) & 1 == 1,
        g: g,
        avl: (d >> 52) & 1 == 1,
        unusable: false)
}


let MiB: UInt64 = 1 << 20

/// `load` that returns the error instead of throwing, for `#expect(... == .someError)`.
func loadError(_ image: [UInt8], _ mode: BootMode, memory: UInt64 = 64 * MiB, vcpus: Int = 1) -> LoaderError? {
    do {
        _ = try ImageLoader.load(image, mode: mode, memorySize: memory, vcpuCount: vcpus)
        return nil
    } catch {
        return error
    }
}
