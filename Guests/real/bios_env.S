/* Real-mode guest for --platform pc: checks the BIOS environment SeaBIOS
   leaves (QEMU -bios default) that 16-bit test kernels rely on.
     int-returns   INT 10h and INT 1Ah come back with AX/BX/DS unchanged
                   (every IVT entry points at a handler that IRETs; not INT
                   80h: on the nested kvm_pvm test host that one never
                   returns from KVM_RUN, whatever the IVT says)
     pic-masks     IMR master 0xb8, slave 0x8e, what a kernel finds under
                   QEMU 7.2 + SeaBIOS (IRQ 0, 1, 2, 6, 8, 12, 13, 14 open)
     bda-ticks     with STI for 0.5 s (timed by the ACPI PM timer) the BIOS's
                   own IRQ 0 handler (vector 8: PIC base 0x08) counts the BDA
                   tick at 0x46c: expect 6-13 (18.2 Hz)
     pit-rate      with its own vector-8 handler (EOI + count) for 1 s:
                   expect 14-23 IRQ 0s (18.2 Hz, PIT channel 0 count 65536)
   Prints "PASS name details" / "FAIL name details", then "RESULT pass|fail",
   and exits through the debug-exit port with 1 (pass, status 3) or 2 (fail,
   status 5). */
#include "deflect.h"
#define PM_TIMER 0x608
#define PM_HZ    3579545
    REAL_MODE_ENTRY

    /* ---- int-returns ---- */
    mov $0x1234, %ax
    mov $0x5678, %bx
    int $0x10
    cmp $0x1234, %ax
    jne 1f
    cmp $0x5678, %bx
    jne 1f
    int $0x1a
    cmp $0x1234, %ax
    jne 1f
    mov %ds, %cx
    test %cx, %cx
    jnz 1f
    mov $1, %cl
    jmp 2f
1:  xor %cl, %cl
2:  mov $name_int, %si
    call result
    mov $detail_ivt, %si
    call puts
    mov 0x10*4+2, %ax           /* INT 10h segment:offset */
    call puthex16
    mov $':', %al
    call putc
    mov 0x10*4, %ax
    call puthex16
    call newline

    /* ---- pic-masks ---- */
    in $0x21, %al
    mov %al, %bl
    in $0xa1, %al
    mov %al, %bh
    xor %cl, %cl
    cmp $0x8eb8, %bx
    jne 1f
    mov $1, %cl
1:  mov $name_pic, %si
    call result
    mov $detail_imr, %si
    call puts
    mov %bx, %ax
    call puthex16
    call newline

    /* ---- bda-ticks: the BIOS's IRQ 0 handler ---- */
    mov 0x46c, %ebp
    sti
    mov $PM_HZ/2, %ecx
    call pm_wait
    cli
    mov 0x46c, %ebx
    sub %ebp, %ebx
    mov $name_bda, %si
    mov $6, %di
    mov $13, %bp
    call check_count

    /* ---- pit-rate: our own vector 8 ---- */
    movw $irq0, 8*4
    movw $0, 8*4+2
    movw $0, ticks
    sti
    mov $PM_HZ, %ecx
    call pm_wait
    cli
    mov ticks, %bx
    mov $name_pit, %si
    mov $14, %di
    mov $23, %bp
    call check_count

    /* ---- result ---- */
    mov $result_pass, %si
    mov $1, %bl
    cmpw $0, failures
    je 1f
    mov $result_fail, %si
    mov $2, %bl
1:  call puts
    mov %bl, %al
    out %al, $DEBUG_EXIT
    hlt

/* IRQ 0 handler of the pit-rate check. */
irq0:
    push %ax
    incw %cs:ticks
    mov $0x20, %al
    out %al, $0x20
    pop %ax
    iret

/* A count check: passes when DI <= BX <= BP; SI = name; prints the count. */
check_count:
    xor %cl, %cl
    cmp %di, %bx
    jb 1f
    cmp %bp, %bx
    ja 1f
    mov $1, %cl
1:  call result
    mov $detail_ticks, %si
    call puts
    mov %bx, %ax
    call puthex16
    jmp newline

/* Busy-waits ECX PM-timer ticks (24-bit counter, wraps handled). */
pm_wait:
    push %edx
    push %esi
    push %edi
    mov $PM_TIMER, %dx
    in %dx, %eax
    mov %eax, %esi
1:  in %dx, %eax
    sub %esi, %eax
    and $0xffffff, %eax
    cmp %ecx, %eax
    jb 1b
    pop %edi
    pop %esi
    pop %edx
    ret

/* Prints "PASS " or "FAIL " (CL = 1 passes), then the name at SI and a space. */
result:
    push %si
    mov $pass, %si
    test %cl, %cl
    jnz 1f
    incw failures
    mov $fail, %si
1:  call puts
    pop %si
    call puts
    mov $' ', %al
    jmp putc

#include "serial16.inc"

failures: .word 0
ticks:    .word 0
pass:     .asciz "PASS "
fail:     .asciz "FAIL "
name_int: .asciz "int-returns"
name_pic: .asciz "pic-masks"
name_bda: .asciz "bda-ticks"
name_pit: .asciz "pit-rate"
detail_ivt:   .asciz "int10="
detail_imr:   .asciz "imr(slave:master)="
detail_ticks: .asciz "count="
result_pass: .asciz "RESULT pass\n"
result_fail: .asciz "RESULT fail\n"
