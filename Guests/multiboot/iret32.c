/* iret32: a kernel that executes a 32-bit IRET to the next instruction.
   Real hardware and QEMU's TCG simply continue ("RESULT pass", status 3). On
   the nested host Deflect is developed on, KVM's instruction emulator cannot
   complete a protected-mode IRET and reports KVM_EXIT_INTERNAL_ERROR: this
   kernel is how the tests check that Deflect ends such a run with its own
   status (6) and the registers, instead of hanging or crashing. */
#include "mbrt.h"

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    (void)magic;
    (void)mbi;
    puts("iret32: executing a 32-bit IRET\n");
    __asm__ volatile(
        "pushfl\n\t"
        "pushl %%cs\n\t"
        "pushl $1f\n\t"
        "iretl\n"
        "1:\n\t" ::: "memory");
    puts("iret32: survived the IRET\n");
    finish();
}
