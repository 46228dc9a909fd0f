/* Flat long-mode guest for the FPU/XSAVE state tests: loads MXCSR, XMM0 and
   XMM15 with distinctive values and exits with value 0x3c (status 121). The
   test then reads them back through the XSAVE image and KVM_GET_FPU.
   MXCSR 0xbfc0 = FTZ | round down | all exceptions masked | DAZ (reset: 0x1f80).
   FXRSTOR, not LDMXCSR/MOVDQU: this host runs guest code through KVM's
   instruction emulator, which has FXRSTOR but fails on LDMXCSR. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    fxrstor fxsave_image(%rip)
    mov $0x3c, %al
    out %al, $DEBUG_EXIT
    hlt

    /* A 512-byte FXSAVE image (legacy layout, 16-byte aligned). */
    .balign 16
fxsave_image:
    .word 0x037f                /* 0: FCW, the x87 reset value */
    .word 0                     /* 2: FSW */
    .byte 0, 0                  /* 4: abridged FTW (all empty), reserved */
    .word 0                     /* 6: FOP */
    .quad 0, 0                  /* 8: FPU IP, 16: FPU DP */
    .long 0xbfc0                /* 24: MXCSR */
    .long 0                     /* 28: MXCSR_MASK (ignored by FXRSTOR) */
    .fill 128, 1, 0             /* 32: ST0-ST7 */
    .quad 0xfedcba9876543210, 0x0123456789abcdef    /* 160: XMM0 */
    .fill 14 * 16, 1, 0         /* XMM1-XMM14 */
    .quad 0x1111222233334444, 0x5555666677778888    /* 400: XMM15 */
    .fill 96, 1, 0              /* 416: reserved */
