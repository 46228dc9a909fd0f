/* Guests: port numbers and helper macros shared by Deflect's guest programs. */
#ifndef DEFLECT_GUEST_H
#define DEFLECT_GUEST_H

#define COM1        0x3f8
#define COM1_LSR    0x3fd       /* line status: bit 0 data ready, bit 5 THR empty */
#define DEBUG_EXIT  0xf4        /* write v: process status (v << 1) | 1 */
#define I8042_CMD   0x64        /* write 0xfe: reset */
#define POST_CODE   0x80        /* POST code port: writes are only remembered (a cheap port exit) */
#define SYNC_PORT   0x500       /* unowned port: a guest writes a phase number here
                                   (after printing "SYNC n" on COM1) to tell the VMM
                                   "stop here and change something"; see runtime64.inc */
#define UNEXPECTED_EXCEPTION_EXIT 0x7e  /* debug-exit value of runtime64.inc's fatal path */

#ifdef __ASSEMBLER__
/* Entry of a flat real-mode guest (loaded at 0x7c00): interrupts off,
   DS = ES = SS = 0, the stack below the image at 0x7000. */
#define REAL_MODE_ENTRY \
    .code16; .globl _start; _start: cli; xor %ax, %ax; \
    mov %ax, %ds; mov %ax, %es; mov %ax, %ss; mov $0x7000, %sp
#endif

#endif
