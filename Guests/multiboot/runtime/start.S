/* start.S — multiboot v1 header and entry for Deflect's multiboot test kernels.

   Entered as by QEMU's -kernel (multiboot spec 0.6.96, section 3.2): 32-bit
   protected mode, paging off, interrupts off, EAX = 0x2BADB002, EBX =
   physical address of the multiboot information. The loader's GDT and stack
   are not trusted: we load our own GDT (0x08 flat code, 0x10 flat data), an
   IDT for vectors 0-31, a 16 KiB stack in .bss, then call kmain(magic, info).

   The header asks for page-aligned modules (flag bit 0) and memory
   information (bit 1); bit 16 (address fields) is clear: the loader uses the
   ELF program headers, as QEMU does for ELF images. */
#include "deflect.h"

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_HEADER_FLAGS 0x00000003

    .section .multiboot, "a"
    .balign 4
    .long MB_HEADER_MAGIC
    .long MB_HEADER_FLAGS
    .long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    mov $rt_stack_top, %esp
    mov %eax, %esi                  /* magic */
    mov %ebx, %edi                  /* info */
    lgdt rt_gdtr
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    /* IDT: 32 interrupt gates, selector 0x08, DPL 0, present. */
    xor %ecx, %ecx
2:  mov rt_isr_table(,%ecx,4), %eax
    mov %ax, rt_idt(,%ecx,8)
    movw $0x08, rt_idt+2(,%ecx,8)
    movw $0x8e00, rt_idt+4(,%ecx,8)
    shr $16, %eax
    mov %ax, rt_idt+6(,%ecx,8)
    inc %ecx
    cmp $32, %ecx
    jb 2b
    call rt_load_idt
    push %edi
    push %esi
    call kmain
    call finish                     /* kmain should not return; if it does */
3:  cli
    hlt
    jmp 3b

    .globl rt_load_idt
rt_load_idt:
    lidt rt_idtr
    ret

    /* Stubs: vectors without a CPU error code push a dummy 0 so every frame
       is [vector][error][EIP][CS][EFLAGS] (same-privilege: no ESP/SS). */
    .macro isr_noerr vec
rt_isr_\vec:
    pushl $0
    pushl $\vec
    jmp rt_isr_common
    .endm
    .macro isr_err vec
rt_isr_\vec:
    pushl $\vec
    jmp rt_isr_common
    .endm

    isr_noerr 0
    isr_noerr 1
    isr_noerr 2
    isr_noerr 3
    isr_noerr 4
    isr_noerr 5
    isr_noerr 6
    isr_noerr 7
    isr_err 8
    isr_noerr 9
    isr_err 10
    isr_err 11
    isr_err 12
    isr_err 13
    isr_err 14
    isr_noerr 15
    isr_noerr 16
    isr_err 17
    isr_noerr 18
    isr_noerr 19
    isr_noerr 20
    isr_err 21
    isr_noerr 22
    isr_noerr 23
    isr_noerr 24
    isr_noerr 25
    isr_noerr 26
    isr_noerr 27
    isr_noerr 28
    isr_err 29
    isr_err 30
    isr_noerr 31

rt_isr_common:
    pushal
    mov $0x10, %ax                  /* flat data, in case a segment was odd */
    mov %ax, %ds
    mov %ax, %es
    push %esp                       /* struct rt_frame * */
    call rt_exception               /* returns only when the frame was handled */
    add $4, %esp
    popal
    add $8, %esp                    /* vector, error */
    /* Return without IRET: on the nested-KVM hosts Deflect is tested on,
       guest code runs through KVM's instruction emulator, which implements
       IRET only in real mode (protected-mode IRET ends the run with an
       emulation failure, KVM_EXIT_INTERNAL_ERROR). Same privilege and the
       same CS (0x08) for every handler, so POPF + RET does the same job:
       turn [EIP][CS][EFLAGS] into [EFLAGS][EIP] in place. */
    push %eax                       /* [eax][EIP][CS][EFLAGS] */
    mov 12(%esp), %eax
    mov %eax, 8(%esp)               /* [eax][EIP][EFLAGS][EFLAGS] */
    mov 4(%esp), %eax
    mov %eax, 12(%esp)              /* [eax][EIP][EFLAGS][EIP] */
    pop %eax
    add $4, %esp                    /* [EFLAGS][EIP] */
    popfl
    ret

    .section .rodata
    .balign 4
rt_isr_table:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .long rt_isr_\v
    .endr

    .data
    .balign 8
    .globl rt_gdt, rt_gdtr
rt_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08: flat 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: flat data */
rt_gdt_end:
    .balign 4
    .word 0
rt_gdtr:
    .word rt_gdt_end - rt_gdt - 1
    .long rt_gdt
    .word 0
rt_idtr:
    .word 32 * 8 - 1
    .long rt_idt

    .bss
    .balign 8
rt_idt:
    .skip 32 * 8
    .balign 16
rt_stack:
    .skip 16384
rt_stack_top:

    .section .note.GNU-stack, "", @progbits
