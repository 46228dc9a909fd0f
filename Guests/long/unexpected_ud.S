/* Flat long-mode guest: self-test of runtime64.inc's fatal path. Executes UD2;
   the runtime must print "unexpected exception 6 at RIP 0x... error 0x..."
   and exit with value 0x7e (status 0xfd) instead of triple-faulting. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    call runtime_init
    mov $0x1234abcd, %rax
    ud2
    mov $0x2e, %al                  /* not reached */
    out %al, $DEBUG_EXIT
    hlt
#include "runtime64.inc"
