/* Real-mode guest for --platform pc: two timers at once. The PIT (channel 0
   at 18.2 Hz, IRQ 0 through the in-kernel PIC, vector 8) and the local APIC
   timer in periodic mode (about 100 Hz, vector 0x40), reached from real mode
   through the x2APIC MSRs. Each handler counts its interrupts; the main loop
   halts between interrupts and, every fourth PIT tick, prints
   "pit=xxxx lapic=xxxx" (hex counts), forever. A snapshot taken mid-run and
   restored shows both timers came back: the counts go on from where they
   were, and both keep growing.
   Without x2APIC in CPUID.1:ECX it prints "FAIL no x2APIC" and exits
   through the debug-exit port with 0x16 (status 45). */
#include "deflect.h"
#define IA32_APIC_BASE  0x1b
#define X2APIC_EOI      0x80b
#define X2APIC_SVR      0x80f
#define X2APIC_LVT_TIMER 0x832
#define X2APIC_TIMER_INITIAL 0x838
#define X2APIC_TIMER_DIVIDE 0x83e
#define TIMER_VECTOR    0x40
#define SPURIOUS_VECTOR 0xff
#define APIC_ENABLE     (1 << 11)
#define X2APIC_MODE     (1 << 10)
#define LVT_PERIODIC    (1 << 17)
#define DIVIDE_BY_128   0x0a
/* KVM's APIC bus runs at 1 GHz: 10^9 / 128 / 78125 = 100 Hz. */
#define TIMER_COUNT     78125
    REAL_MODE_ENTRY
    mov $1, %eax
    cpuid
    bt $21, %ecx
    jnc no_x2apic
    movw $irq0, 8*4
    movw $0, 8*4+2
    movw $lapic_timer, TIMER_VECTOR*4
    movw $0, TIMER_VECTOR*4+2
    movw $spurious, SPURIOUS_VECTOR*4
    movw $0, SPURIOUS_VECTOR*4+2

    /* xAPIC -> x2APIC (the enable bit is already set), keeping the base. */
    mov $IA32_APIC_BASE, %ecx
    rdmsr
    or $(APIC_ENABLE | X2APIC_MODE), %eax
    wrmsr
    /* Software-enable with the spurious vector; LVT0 stays as KVM and the
       platform set it for the BSP (ExtINT), so the PIC's IRQ 0 still arrives. */
    mov $X2APIC_SVR, %ecx
    mov $(0x100 | SPURIOUS_VECTOR), %eax
    xor %edx, %edx
    wrmsr
    mov $X2APIC_TIMER_DIVIDE, %ecx
    mov $DIVIDE_BY_128, %eax
    wrmsr
    mov $X2APIC_LVT_TIMER, %ecx
    mov $(LVT_PERIODIC | TIMER_VECTOR), %eax
    wrmsr
    mov $X2APIC_TIMER_INITIAL, %ecx
    mov $TIMER_COUNT, %eax
    wrmsr
    sti
wait:
    hlt                         /* KVM keeps the vCPU until an interrupt */
    mov pit_ticks, %ax
    cmp last, %ax
    je wait
    mov %ax, last
    test $3, %ax
    jnz wait                    /* every fourth PIT tick */
    mov $pit_label, %si
    call puts
    mov last, %ax
    call puthex16
    mov $lapic_label, %si
    call puts
    mov lapic_ticks, %ax
    call puthex16
    call newline
    jmp wait

no_x2apic:
    mov $no_x2apic_message, %si
    call puts
    mov $0x16, %al
    out %al, $DEBUG_EXIT
    hlt

irq0:
    push %ax
    incw %cs:pit_ticks
    mov $0x20, %al
    out %al, $0x20              /* EOI to the master PIC (ExtINT: no LAPIC EOI) */
    pop %ax
    iret

lapic_timer:
    push %eax
    push %ecx
    push %edx
    incw %cs:lapic_ticks
    mov $X2APIC_EOI, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %edx
    pop %ecx
    pop %eax
    iret

spurious:
    iret                        /* a spurious interrupt needs no EOI */

#include "serial16.inc"

pit_ticks:   .word 0
lapic_ticks: .word 0
last:        .word 0
pit_label:   .asciz "pit="
lapic_label: .asciz " lapic="
no_x2apic_message: .asciz "FAIL no x2APIC\n"
