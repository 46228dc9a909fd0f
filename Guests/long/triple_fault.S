/* Flat long-mode guest that raises #UD with an empty IDT: the fault cannot be
   delivered, which escalates to a triple fault (KVM_EXIT_SHUTDOWN). */
    .code64
    .globl _start
_start:
    mov $0x1234abcd, %rax       /* a marker the register dump shows */
    ud2
