// Loader: the CPU states a machine resuming from ACPI S3 starts its vCPUs in:
// the bootstrap processor where SeaBIOS's s3_resume jumps (real mode, CS:IP
// from the FACS waking vector), the others as after INIT (waiting for SIPI).

extension BootCPUState {
    /// Real mode at the 20-bit `wakingVector` as SeaBIOS enters it
    /// (FLATPTR_TO_SEGOFF: CS = vector >> 4, IP = vector & 0xF), general
    /// registers and data segments 0, interrupts off, and the stack at
    /// `stackSegment:stackPointer`.
    public static func s3Resume(wakingVector: UInt32, stackSegment: UInt16, stackPointer: UInt16) -> BootCPUState {
        var state = realMode(entry: UInt64(wakingVector & 0xF), stack: UInt64(stackPointer), rdi: 0, rsi: 0)
        state.cs.selector = UInt16(truncatingIfNeeded: wakingVector >> 4)
        state.cs.base = UInt64(state.cs.selector) << 4
        state.ss.selector = stackSegment
        state.ss.base = UInt64(stackSegment) << 4
        return state
    }

    /// An x86 processor after INIT: real mode at F000:FFF0 with the CS base
    /// 0xFFFF0000. It waits for a SIPI, which sets CS:IP again.
    public static func afterINIT() -> BootCPUState {
        var state = realMode(entry: 0xFFF0, stack: 0, rdi: 0, rsi: 0)
        state.cs.selector = 0xF000
        state.cs.base = 0xFFFF_0000
        return state
    }
}
