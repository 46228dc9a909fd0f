/* Flat long-mode guest: reads and writes guest-physical 0xfec00000, which no
   memory slot or device backs. The read must return all ones; exits with value
   1 if so, 0 if not. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    mov $0xfec00000, %rbx
    movl (%rbx), %eax
    movl $0x12345678, (%rbx)
    cmp $0xffffffff, %eax
    sete %al
    out %al, $DEBUG_EXIT
    hlt
