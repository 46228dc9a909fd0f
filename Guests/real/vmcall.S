/* Real-mode guest that issues a hypercall, then exits with value 7.
   On hosts where VMCALL never returns from KVM_RUN only the timeout ends it. */
#include "deflect.h"
    .code16
    .globl _start
_start:
    mov $12, %eax               /* KVM_HC_MAP_GPA_RANGE */
    xor %ebx, %ebx
    mov $1, %ecx
    xor %edx, %edx
    vmcall
    mov $7, %al
    out %al, $DEBUG_EXIT
    hlt
