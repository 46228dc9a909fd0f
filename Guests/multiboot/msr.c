/* msr — RDMSR/WRMSR from a 32-bit protected-mode kernel, reported one line per
   access so a VMM's MSR policy (allow, deny with #GP, trace) can be compared
   with QEMU's answers. The kernel cannot judge the policy: it passes when no
   exception other than a #GP on RDMSR/WRMSR happened.

   Run: qemu-system-x86_64 -kernel msr.elf -m 64 -serial stdio -display none \
            -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04

   #GP handling: vector 13 whose faulting instruction is RDMSR (0f 32) or
   WRMSR (0f 30) increments gp, zeroes EAX:EDX for RDMSR (like runtime64.inc
   and the kernel selftests), pops the error code and resumes after the
   2-byte instruction. Any other exception prints "FAIL exception ..." and
   "RESULT fail" and exits with 0x02.

   Accesses, in order (format of Guests/include/runtime64.inc):
       MSR <rd|wr> 0x<index, 8 hex> <ok|gp> 0x<value, 16 hex>
     rd 0x00000010 IA32_TSC
     rd 0x0000001b IA32_APIC_BASE
     rd 0x000000ce MSR_PLATFORM_INFO
     rd 0x00000035 MSR_CORE_THREAD_COUNT
     rd 0x00000140 MISC_FEATURE_ENABLES, wr 0x00000140 value 0, rd again
     rd 0x00002474 (no such MSR)
   then "SUMMARY accesses=A gp=G" (decimal), one PASS line, "RESULT pass"
   and debug-exit 0x01. */
#include "mbrt.h"

static volatile u32 gp_count, accesses;

static int gp_hook(struct rt_frame *f)
{
    const u8 *ip = (const u8 *)f->eip;
    if (ip[0] != 0x0f || (ip[1] != 0x32 && ip[1] != 0x30))
        return 0;
    if (ip[1] == 0x32)
        f->eax = f->edx = 0;
    f->eip += 2;
    gp_count++;
    return 1;
}

static void report(const char *op, u32 index, int faulted, u64 value)
{
    accesses++;
    puts("MSR ");
    puts(op);
    puts(" 0x");
    puthex(index, 8);
    puts(faulted ? " gp 0x" : " ok 0x");
    puthex(value, 16);
    putc('\n');
}

static u64 report_rdmsr(u32 index)
{
    u32 before = gp_count, lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(index) : "memory");
    u64 v = ((u64)hi << 32) | lo;
    report("rd", index, gp_count != before, v);
    return v;
}

static void report_wrmsr(u32 index, u64 value)
{
    u32 before = gp_count;
    __asm__ volatile("wrmsr" :: "c"(index), "a"((u32)value), "d"((u32)(value >> 32)) : "memory");
    report("wr", index, gp_count != before, value);
}

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    (void)mbi;
    serial_init();
    rt_gp_hook = gp_hook;
    puts("msr: RDMSR/WRMSR report (32-bit protected mode)\n");
    check_begin(magic == MB_BOOT_MAGIC, "magic");
    puts("eax=");
    puthex32(magic);
    putc('\n');

    report_rdmsr(0x10);
    report_rdmsr(0x1b);
    report_rdmsr(0xce);
    report_rdmsr(0x35);
    report_rdmsr(0x140);
    report_wrmsr(0x140, 0);
    report_rdmsr(0x140);
    report_rdmsr(0x2474);

    puts("SUMMARY accesses=");
    putdec(accesses);
    puts(" gp=");
    putdec(gp_count);
    putc('\n');
    check_begin(accesses == 8, "msr-accesses");
    putdec(accesses);
    puts(" accesses, ");
    putdec(gp_count);
    puts(" #GP recovered, no unexpected exception (policy not judged)\n");
    finish();
}
