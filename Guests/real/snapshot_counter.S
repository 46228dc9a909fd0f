/* Real-mode guest for vCPU snapshot tests: counts 1..10 in BX, stores each
   count at 0x600 and reports it on port 0x80, with CX = 0x1234 and DX =
   0xbeef set once at the start; then reports CX on port 0x81 and parks.
   A test snapshots it after some count and checks that the restored vCPU
   goes on with the next one, the registers and memory intact. */
#include "deflect.h"
    .code16
    .globl _start
_start:
    xor %ax, %ax
    mov %ax, %ds
    mov $0x1234, %cx
    mov $0xbeef, %dx
    xor %bx, %bx
1:  inc %bx
    mov %bx, 0x600
    mov %bx, %ax
    out %al, $0x80
    cmp $10, %bx
    jne 1b
    mov %cx, %ax
    out %al, $0x81
2:  jmp 2b
