/* Flat long-mode guest for the PC platform: the ACPI RSDP lives in the
   read-only BIOS area at 0xf0000. Reads its signature, tries to overwrite
   it, and reads it again. Exits with value 1 if the signature is "RSD PTR "
   both times (the write was refused), 0 if the write went through, 2 if no
   RSDP was there at all. */
#include "deflect.h"
    .code64
    .globl _start
_start:
    mov $0xf0000, %rbx
    movabs $0x2052545020445352, %rcx    /* "RSD PTR " little-endian */
    mov (%rbx), %rax
    cmp %rcx, %rax
    jne missing
    movq $0, (%rbx)
    mov (%rbx), %rax
    cmp %rcx, %rax
    sete %al
    out %al, $DEBUG_EXIT
    hlt
missing:
    mov $2, %al
    out %al, $DEBUG_EXIT
    hlt
