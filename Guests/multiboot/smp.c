/* smp — starts every application processor with INIT-SIPI-SIPI through the
   local APIC (xAPIC MMIO) and has each report in.

   Run: qemu-system-x86_64 -kernel smp.elf -m 64 -smp 4 -serial stdio \
            -display none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04

   Flow:
     1. CPUs: the MADT's enabled Processor Local APIC entries (APIC IDs);
        check "cpu-count": that number equals fw_cfg FW_CFG_NB_CPUS.
     2. The BSP software-enables its local APIC (SVR 0xF0 bit 8), reads its
        APIC ID (0xFEE00020 >> 24) and checks it is in the MADT ("bsp").
     3. A 16-bit trampoline is copied to 0x70000 (SIPI vector 0x70), a page
        the memory map must show usable ("trampoline"); QEMU and Deflect keep
        their multiboot structures below 0x4B000 and the EBDA starts at 0x9FC00.
     4. For each other APIC ID: INIT (ICR 0x4500, physical destination);
        10 ms (PIT); SIPI (0x4600 | 0x70); 1 ms; a second SIPI to the APs that
        have not reported yet. Each ICR write waits (bounded) for the delivery
        status bit to clear.
     5. Each AP: real mode at 0x7000:0000 -> lgdt (our GDT) -> protected mode
        -> its own 4 KiB stack (lock xadd on a slot counter) -> loads the IDT,
        reads its APIC ID, lock-increments the count, lock-ors its bit into the
        mask, prints "AP <apic id> up" under the print spinlock, then
        cli; hlt forever.
     6. The BSP waits for all reports, at most 2 s (PIT channel-2 counter),
        then checks "ap-startup": count == CPUs - 1 and mask == the MADT IDs
        other than the BSP's. */
#include "mbrt.h"

#define TRAMPOLINE 0x70000u
#define APIC_ID    0x020
#define APIC_SVR   0x0f0
#define APIC_ICR_LO 0x300
#define APIC_ICR_HI 0x310

volatile u32 smp_stack_next;                    /* AP stack slot allocator */
u8 smp_ap_stacks[MAX_CPUS * 4096] __attribute__((aligned(4096)));
static volatile u32 ap_count, ap_printed;
static volatile u32 ap_mask[8];
static u32 lapic = 0xfee00000u;
static struct madt_summary madt_s;

extern char smp_tramp_start[], smp_tramp_end[];

/* The trampoline (copied to TRAMPOLINE; position-independent: DS = CS =
   TRAMPOLINE >> 4) and the 32-bit AP entry that stays in the image. */
__asm__(
    ".text\n"
    ".code16\n"
    "smp_tramp_start:\n"
    "    cli\n"
    "    cld\n"
    "    movw %cs, %ax\n"
    "    movw %ax, %ds\n"
    "    lgdtl smp_tramp_gdtr - smp_tramp_start\n"
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $smp_ap_entry32\n"
    "    .balign 4\n"
    "smp_tramp_gdtr:\n"
    "    .word 3 * 8 - 1\n"
    "    .long rt_gdt\n"
    "smp_tramp_end:\n"
    ".code32\n"
    "smp_ap_entry32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %fs\n"
    "    movw %ax, %gs\n"
    "    movw %ax, %ss\n"
    "    movl $1, %eax\n"
    "    lock xaddl %eax, smp_stack_next\n"
    "    cmpl $" "64" ", %eax\n"
    "    jae 2f\n"
    "    incl %eax\n"
    "    shll $12, %eax\n"
    "    addl $smp_ap_stacks, %eax\n"
    "    movl %eax, %esp\n"
    "    call ap_main\n"
    "2:  cli\n"
    "    hlt\n"
    "    jmp 2b\n");

_Static_assert(MAX_CPUS == 64, "trampoline stack bound above assumes 64 slots");

void ap_main(void);
void ap_main(void)
{
    rt_load_idt();
    u32 id = mmio_read32(lapic + APIC_ID) >> 24;
    __asm__ volatile("lock incl %0" : "+m"(ap_count) :: "memory");
    __asm__ volatile("lock orl %1, %0" : "+m"(ap_mask[(id >> 5) & 7]) : "r"(1u << (id & 31)) : "memory");
    print_lock();
    puts("AP ");
    putdec(id);
    puts(" up\n");
    print_unlock();
    __asm__ volatile("lock incl %0" : "+m"(ap_printed) :: "memory");
}

static int icr_idle(void)
{
    for (u32 i = 0; i < 1000000; i++)
        if (!(mmio_read32(lapic + APIC_ICR_LO) & (1u << 12)))
            return 1;
    return 0;
}

static u32 icr_timeouts;
static void send_ipi(u8 apic_id, u32 low)
{
    if (!icr_idle())
        icr_timeouts++;
    mmio_write32(lapic + APIC_ICR_HI, (u32)apic_id << 24);
    mmio_write32(lapic + APIC_ICR_LO, low);
    if (!icr_idle())
        icr_timeouts++;
}

static int arrived(u8 id)
{
    return (ap_mask[id >> 5] >> (id & 31)) & 1;
}

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    serial_init();
    puts("smp: INIT-SIPI-SIPI application processor start-up\n");
    check_begin(magic == MB_BOOT_MAGIC, "magic");
    puts("eax=");
    puthex32(magic);
    putc('\n');

    struct acpi_rsdp *rsdp = acpi_find_rsdp();
    struct acpi_header *madt = rsdp ? acpi_find_table(rsdp, "APIC") : NULL;
    if (!madt) {
        check(0, "madt", "no RSDP or no APIC table: cannot tell which CPUs exist");
        finish();
    }
    madt_parse(madt, &madt_s);
    if (madt_s.lapic_addr)
        lapic = madt_s.lapic_addr;
    u32 cpus = madt_s.cpus;
    char sig[4];
    fw_cfg_read(FW_CFG_SIGNATURE, sig, 4);
    u16 nb = 0;
    if (memcmp(sig, "QEMU", 4) == 0)
        fw_cfg_read(FW_CFG_NB_CPUS, &nb, 2);
    check_begin(cpus >= 1 && cpus <= MAX_CPUS && cpus == nb && !madt_s.bad_entry, "cpu-count");
    puts("madt=");
    putdec(cpus);
    puts(" fw_cfg=");
    putdec(nb);
    puts(" apic_ids=");
    for (u32 i = 0; i < cpus && i < MAX_CPUS; i++) {
        if (i) putc(',');
        putdec(madt_s.apic_ids[i]);
    }
    puts(" lapic=");
    puthex32(lapic);
    putc('\n');
    if (cpus > MAX_CPUS)
        cpus = MAX_CPUS;

    /* BSP local APIC: software-enable, spurious vector 0xff. */
    mmio_write32(lapic + APIC_SVR, mmio_read32(lapic + APIC_SVR) | 0x1ff);
    u8 bsp = (u8)(mmio_read32(lapic + APIC_ID) >> 24);
    int bsp_listed = 0;
    for (u32 i = 0; i < cpus; i++)
        bsp_listed |= madt_s.apic_ids[i] == bsp;
    check_begin(bsp_listed, "bsp");
    puts("apic_id=");
    putdec(bsp);
    puts(bsp_listed ? " listed in the MADT\n" : " NOT in the MADT\n");

    /* Trampoline page: usable in the map, clear of the image. */
    int page_ok = 1;
    if (mbi && (mbi->flags & MBI_MMAP)) {
        page_ok = 0;
        for (u32 p = mbi->mmap_addr; p < mbi->mmap_addr + mbi->mmap_length;) {
            const struct mb_mmap *e = (const struct mb_mmap *)p;
            if (e->type == 1 && e->addr <= TRAMPOLINE && e->addr + e->len >= TRAMPOLINE + 0x1000)
                page_ok = 1;
            p += e->size + 4;
            if (e->size < 20)
                break;
        }
    }
    u32 tlen = (u32)(smp_tramp_end - smp_tramp_start);
    check_begin(page_ok && tlen <= 0x1000, "trampoline");
    puthex32(TRAMPOLINE);
    puts(" ");
    putdec(tlen);
    puts(page_ok ? " bytes, page usable, SIPI vector 0x70\n" : " bytes, page NOT usable in the memory map\n");
    memcpy((void *)TRAMPOLINE, smp_tramp_start, tlen);

    u32 expected = cpus - (bsp_listed ? 1 : 0);
    u32 want_mask[8] = {0};
    for (u32 i = 0; i < cpus; i++)
        if (madt_s.apic_ids[i] != bsp)
            want_mask[madt_s.apic_ids[i] >> 5] |= 1u << (madt_s.apic_ids[i] & 31);

    /* From here until the APs are done, output goes through the print lock. */
    u32 waited_ms = 0;
    if (expected) {
        print_lock();
        puts("INFO sending INIT to ");
        putdec(expected);
        puts(" APs\n");
        print_unlock();
        for (u32 i = 0; i < cpus; i++)
            if (madt_s.apic_ids[i] != bsp)
                send_ipi(madt_s.apic_ids[i], 0x00004500);     /* INIT, level assert */
        pit_delay_us(10000);
        for (u32 i = 0; i < cpus; i++)
            if (madt_s.apic_ids[i] != bsp)
                send_ipi(madt_s.apic_ids[i], 0x00004600 | (TRAMPOLINE >> 12));
        pit_delay_us(1000);
        for (u32 i = 0; i < cpus; i++)
            if (madt_s.apic_ids[i] != bsp && !arrived(madt_s.apic_ids[i]))
                send_ipi(madt_s.apic_ids[i], 0x00004600 | (TRAMPOLINE >> 12));
        struct pit_timer t;
        pit_timer_start(&t);
        while (ap_printed < expected && pit_timer_elapsed(&t) < 2 * PIT_HZ)
            cpu_relax();
        waited_ms = (u32)udiv64((u64)t.elapsed * 1000, PIT_HZ, NULL);
        /* A straggler may still be printing: give it a bounded moment. */
        for (u32 i = 0; i < 1000000 && ap_printed < ap_count; i++)
            cpu_relax();
    }

    print_lock();
    int mask_ok = 1;
    for (int i = 0; i < 8; i++)
        mask_ok &= ap_mask[i] == want_mask[i];
    check_begin(ap_count == expected && mask_ok && icr_timeouts == 0, "ap-startup");
    puts("count=");
    putdec(ap_count);
    puts(" expected=");
    putdec(expected);
    puts(" mask=0x");
    for (int i = 7; i >= 0; i--)
        if (ap_mask[i] || i == 0 || want_mask[i])
            puthex(ap_mask[i], 8);
    puts(mask_ok ? " (matches MADT)" : " (MADT wants 0x");
    if (!mask_ok) {
        for (int i = 7; i >= 0; i--)
            if (ap_mask[i] || i == 0 || want_mask[i])
                puthex(want_mask[i], 8);
        puts(")");
    }
    puts(" waited=");
    putdec(waited_ms);
    puts("ms");
    if (icr_timeouts) {
        puts(" icr_timeouts=");
        putdec(icr_timeouts);
    }
    putc('\n');
    finish();
}
