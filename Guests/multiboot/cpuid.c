/* cpuid — prints the CPU a guest believes it runs on, one line per fact, so a
   VMM's CPU model (`deflect run --cpu SPEC`) can be checked from inside the
   guest and compared with QEMU's `-cpu` on the same kernel.

   Run: qemu-system-x86_64 -kernel cpuid.elf -m 64 -serial stdio -display none \
            -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -cpu qemu64

   Lines (hex without 0x is always 8 digits):
     VENDOR <12 characters of leaf 0>
     MAXLEAF <leaf 0 EAX> <leaf 0x80000000 EAX>
     FMS <family> <model> <stepping>            decimal, display family/model
                                                (extended fields folded in as the SDM says)
     BRAND <leaves 0x80000002-4, trimmed>       only when 0x80000004 exists
     LEAF <function> <index> <eax> <ebx> <ecx> <edx>
          for 1, 7.0, 7.1, 0xd.0, 0xd.1, 0x14.0, 0x80000001, 0x80000007, 0x80000008
          (a leaf above the maximum is not asked, so it is not printed)
     XSAVE <component> <size> <offset>          leaf 0xd sub-leaves 2..9 that are non-zero
   then "RESULT pass" and debug-exit 0x01. The guest judges nothing: the
   test reading its output does. */
#include "mbrt.h"

struct regs { u32 a, b, c, d; };

static struct regs cpuid(u32 function, u32 index)
{
    struct regs r;
    __asm__ volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(function), "c"(index));
    return r;
}

static void put_word_chars(u32 w)
{
    for (int i = 0; i < 4; i++) {
        char c = (char)((w >> (8 * i)) & 0xff);
        putc(c >= 0x20 && c < 0x7f ? c : '.');
    }
}

static void leaf_line(u32 function, u32 index)
{
    struct regs r = cpuid(function, index);
    puts("LEAF "); puthex(function, 8); puts(" "); puthex(index, 8);
    puts(" "); puthex(r.a, 8); puts(" "); puthex(r.b, 8);
    puts(" "); puthex(r.c, 8); puts(" "); puthex(r.d, 8); puts("\n");
}

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    (void)magic; (void)mbi;
    serial_init();
    struct regs zero = cpuid(0, 0);
    u32 max_basic = zero.a;
    u32 max_ext = cpuid(0x80000000u, 0).a;

    puts("VENDOR ");
    put_word_chars(zero.b); put_word_chars(zero.d); put_word_chars(zero.c);
    puts("\n");
    puts("MAXLEAF "); puthex(max_basic, 8); puts(" "); puthex(max_ext, 8); puts("\n");

    if (max_basic >= 1) {
        u32 eax = cpuid(1, 0).a;
        u32 family = (eax >> 8) & 0xf, model = (eax >> 4) & 0xf, stepping = eax & 0xf;
        if (family == 0xf) family += (eax >> 20) & 0xff;
        if (family == 0x6 || family >= 0xf) model += ((eax >> 16) & 0xf) << 4;
        puts("FMS "); putdec(family); puts(" "); putdec(model); puts(" "); putdec(stepping); puts("\n");
    }

    if (max_ext >= 0x80000004u) {
        char brand[49];
        for (u32 i = 0; i < 3; i++) {
            struct regs r = cpuid(0x80000002u + i, 0);
            memcpy(brand + 16 * i, &r, 16);
        }
        brand[48] = 0;
        const char *start = brand;
        while (*start == ' ') start++;
        size_t n = strlen(start);
        while (n > 0 && start[n - 1] == ' ') n--;
        puts("BRAND "); putsn(start, (u32)n); puts("\n");
    }

    static const struct { u32 function, index; } leaves[] = {
        {1, 0}, {7, 0}, {7, 1}, {0xd, 0}, {0xd, 1}, {0x14, 0},
        {0x80000001u, 0}, {0x80000007u, 0}, {0x80000008u, 0},
    };
    for (u32 i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        u32 f = leaves[i].function;
        u32 max = f >= 0x80000000u ? max_ext : max_basic;
        if (f > max) continue;
        if (f == 7 && leaves[i].index == 1 && cpuid(7, 0).a < 1) continue;
        leaf_line(f, leaves[i].index);
    }

    if (max_basic >= 0xd) {
        for (u32 component = 2; component <= 9; component++) {
            struct regs r = cpuid(0xd, component);
            if (r.a == 0) continue;
            puts("XSAVE "); putdec(component); puts(" "); putdec(r.a); puts(" "); putdec(r.b); puts("\n");
        }
    }

    puts("RESULT pass\n");
    exit_with(0x01);
}
