/* Real-mode guest for dirty-log tests: writes the pages 0x3000 and 0x5000
   (twice), reports on port 0x80; then writes page 0x9000 and reports on
   port 0x81; then parks. Nothing else in RAM is written (no stack use). */
#include "deflect.h"
    .code16
    .globl _start
_start:
    xor %ax, %ax
    mov %ax, %ds
    movw $0x1111, 0x3000
    movw $0x2222, 0x5000
    movw $0x3333, 0x5ffe
    out %al, $0x80
    movw $0x4444, 0x9000
    out %al, $0x81
1:  jmp 1b
