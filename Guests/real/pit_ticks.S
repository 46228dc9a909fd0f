/* Real-mode guest for --platform pc: counts IRQ 0 (PIT channel 0 at 18.2 Hz,
   through the in-kernel PIC) with its own vector-8 handler, halting between
   interrupts, and prints "TICK xxxx" (hex, from 0001) every second tick.
   After 40 lines it exits through the debug-exit port with 0x15 (status 43).
   A snapshot taken mid-run and restored shows the PIT and PIC state came
   back: the lines go on, consecutive, only if interrupts keep arriving. */
#include "deflect.h"
#define LINES 40
    REAL_MODE_ENTRY
    movw $irq0, 8*4
    movw $0, 8*4+2
    xor %di, %di                /* lines printed */
    sti
wait:
    hlt                         /* KVM keeps the vCPU until an interrupt */
    mov ticks, %ax
    cmp last, %ax
    je wait
    mov %ax, last
    test $1, %ax
    jnz wait                    /* every second tick */
    inc %di
    mov $tick_label, %si
    call puts
    mov %di, %ax
    call puthex16
    mov $10, %al
    call putc
    cmp $LINES, %di
    jb wait
    cli
    mov $0x15, %al
    out %al, $DEBUG_EXIT
    hlt

irq0:
    push %ax
    incw %cs:ticks
    mov $0x20, %al
    out %al, $0x20              /* EOI to the master PIC */
    pop %ax
    iret

#include "serial16.inc"

ticks:      .word 0
last:       .word 0
tick_label: .asciz "TICK "
