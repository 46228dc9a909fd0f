/* s3 — ACPI S3 (suspend to RAM) with an RTC-alarm wake, as an OS does it
   under QEMU with SeaBIOS.

   Run: qemu-system-x86_64 -kernel s3.elf -m 64 -serial stdio -display none \
            -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04

   Before the suspend:
     1. RSDP -> FADT ("fadt"), its DSDT's \_S3 package gives SLP_TYP(S3)
        ("dsdt-s3"), the FACS (FADT FIRMWARE_CTRL) has its signature ("facs").
     2. A 16-bit wake-up stub is copied to 0x70000 and the FACS
        Firmware_Waking_Vector set to 0x70000; reading it back checks the FACS
        is writable ("facs-writable"). Command line "no-vector" leaves it 0.
     3. The RTC alarm is set 2 s ahead (seconds only, minutes and hours
        "don't care" 0xC0), register B.AIE on; PM1_STS cleared, PM1_EN =
        RTC_EN (command line "no-rtc-en" leaves PM1_EN 0: no wake source).
     4. SLP_TYP(S3) | SLP_EN to PM1a_CNT, and in the instruction right after
        the OUT a store to memory; if the CPU is still running 5 s later (PIT
        channel 2), "suspend" fails.
   After the wake (the stub: real mode at 0x7000:0000 -> records CS, IP and
   EFLAGS -> lgdt -> protected mode -> s3_resumed()):
     "wake-entry"     CS was 0x7000 (vector >> 4), IP 0, interrupts off
     "wake-status"    PM1_STS has WAK_STS and RTC_STS
     "memory-kept"    a marker written to low memory before the suspend is intact
     "stopped-at-slp-en" the store after the OUT never happened: the CPU that
                      wrote SLP_EN executed no further instruction (QEMU
                      stops it at that I/O exit)
     "image-restored" a .data word changed before the suspend has its value
                      from the ELF file again (QEMU rewrites the -kernel ELF
                      segments on the wake-up's system reset)
     "shutdown-code"  CMOS 0x0F reads 0 (SeaBIOS clears QEMU's 0xFE)
     "pic-after-wake" IMR master 0xfb, slave 0xff (SeaBIOS's pic_setup)
     "rtc-alarm-off"  RTC B.AIE cleared by the reset
     "slept"          the RTC seconds moved on
   With "twice" on the command line the kernel suspends again after the first
   wake-up and checks everything once more. Then "RESULT pass|fail" and the
   debug-exit port, as every kernel here. */
#include "mbrt.h"

#define WAKE_STUB   0x70000u
#define SLP_EN      (1u << 13)
#define WAK_STS     (1u << 15)
#define RTC_STS     (1u << 10)
#define RTC_EN      (1u << 10)

extern char s3_stub_start[], s3_stub_end[], s3_stub_cs[], s3_stub_ip[], s3_stub_flags[];
u8 s3_stack[4096] __attribute__((aligned(16)));

/* What must survive the suspend lives in the stub's page: QEMU rewrites the
   kernel's ELF segments (.data and .bss too) on the wake-up's system reset,
   as on every reset (rom_reset of the blobs load_elf registered). */
struct s3_state {
    u32 marker;
    u32 failures;        /* of earlier rounds (rt_failures is in .bss) */
    u32 rounds;          /* suspends so far */
    u32 wanted_rounds;   /* 2 with "twice" */
    u16 pm1a_evt, pm1a_cnt;
    u8 slp_typ, rtc_en;
    u8 seconds_before;
    u32 ran_after_slp_en;   /* set by the instruction after the SLP_EN write */
};
#define STATE ((volatile struct s3_state *)(WAKE_STUB + 0x800))
/* Changed before the suspend; the wake's reset restores the image's value. */
static volatile u32 image_probe = 0x1234abcdu;

/* The stub (copied to WAKE_STUB; DS = CS) and the 32-bit re-entry. */
__asm__(
    ".text\n"
    ".code16\n"
    "s3_stub_start:\n"
    "    pushfw\n"                                   /* EFLAGS as the firmware left it */
    "    cli\n"
    "    cld\n"
    "    movw %cs, %ax\n"
    "    movw %ax, %ds\n"
    "    popw s3_stub_flags - s3_stub_start\n"
    "    movw %ax, s3_stub_cs - s3_stub_start\n"
    "    call 1f\n"                                  /* IP of the first byte */
    "1:  popw %ax\n"
    "    subw $1b - s3_stub_start, %ax\n"
    "    movw %ax, s3_stub_ip - s3_stub_start\n"
    "    lgdtl s3_stub_gdtr - s3_stub_start\n"
    "    movl %cr0, %eax\n"
    "    orl $1, %eax\n"
    "    movl %eax, %cr0\n"
    "    ljmpl $0x08, $s3_entry32\n"
    "    .balign 4\n"
    "s3_stub_gdtr:\n"
    "    .word 3 * 8 - 1\n"
    "    .long rt_gdt\n"
    "s3_stub_cs: .word 0xffff\n"
    "s3_stub_ip: .word 0xffff\n"
    "s3_stub_flags: .word 0xffff\n"
    "s3_stub_end:\n"
    ".code32\n"
    "s3_entry32:\n"
    "    movw $0x10, %ax\n"
    "    movw %ax, %ds\n"
    "    movw %ax, %es\n"
    "    movw %ax, %fs\n"
    "    movw %ax, %gs\n"
    "    movw %ax, %ss\n"
    "    movl $s3_stack + 4096, %esp\n"
    "    call s3_resumed\n"
    "2:  cli\n"
    "    hlt\n"
    "    jmp 2b\n");

static u8 cmos_read(u8 reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

static void cmos_write(u8 reg, u8 v)
{
    outb(0x70, reg);
    outb(0x71, v);
}

/* The stub's copy of one of its 16-bit fields, at WAKE_STUB. */
static u16 stub_field(char *field)
{
    return *(volatile u16 *)(WAKE_STUB + (u32)(field - s3_stub_start));
}

/* The first element of the DSDT's \_S3 package (ZeroOp, OneOp or BytePrefix),
   or -1 when there is no \_S3. */
static int dsdt_s3_type(struct acpi_header *dsdt)
{
    const u8 *p = (const u8 *)dsdt;
    for (u32 i = sizeof(*dsdt); i + 9 < dsdt->length; i++) {
        if (p[i] != '_' || p[i + 1] != 'S' || p[i + 2] != '3' || p[i + 3] != '_' || p[i + 4] != 0x12)
            continue;
        /* PackageOp, PkgLength (one byte here), NumElements, first element. */
        const u8 *e = p + i + 7;
        if (*e == 0x00 || *e == 0x01)
            return *e;
        if (*e == 0x0a)
            return e[1];
        return -1;
    }
    return -1;
}

static int has_word(const char *s, const char *w)
{
    u32 n = strlen(w);
    for (; s && *s; s++)
        if (memcmp(s, w, n) == 0 && (s[n] == 0 || s[n] == ' '))
            return 1;
    return 0;
}

/* Writes SLP_TYP|SLP_EN and, in the very next instruction, sets
   ran_after_slp_en: a CPU stopped at the OUT never executes the store. */
static void write_slp_en(u16 port, u16 value)
{
    __asm__ volatile("outw %w1, %w2\n\tmovl $1, %0"
                     : "=m"(STATE->ran_after_slp_en)
                     : "a"(value), "d"(port)
                     : "memory");
}

static u8 bcd_add(u8 v, u8 n, int binary, u8 modulo)
{
    u8 x = binary ? v : (u8)((v >> 4) * 10 + (v & 15));
    x = (u8)((x + n) % modulo);
    return binary ? x : (u8)(((x / 10) << 4) | (x % 10));
}

/* Arms the RTC alarm 2 s ahead and the wake event, enters S3, and fails if
   the CPU is still running 5 s later. */
static void suspend_now(void) __attribute__((noreturn));
static void suspend_now(void)
{
    /* RTC alarm: seconds = now + 2, minutes and hours don't care. */
    while (cmos_read(0x0a) & 0x80)
        cpu_relax();
    u8 rb = cmos_read(0x0b);
    u8 seconds_before = cmos_read(0x00);
    STATE->seconds_before = seconds_before;
    cmos_write(0x01, bcd_add(seconds_before, 2, rb & 0x04, 60));
    cmos_write(0x03, 0xc0);
    cmos_write(0x05, 0xc0);
    (void)cmos_read(0x0c);
    cmos_write(0x0b, rb | 0x20);

    STATE->failures += rt_failures;
    STATE->rounds++;
    outw(STATE->pm1a_evt, 0xffff);             /* clear every status bit */
    outw((u16)(STATE->pm1a_evt + 2), STATE->rtc_en ? RTC_EN : 0);
    puts("INFO suspending\n");
    STATE->ran_after_slp_en = 0;
    write_slp_en(STATE->pm1a_cnt, (u16)(((u32)STATE->slp_typ << 10) | SLP_EN));

    /* The machine stops somewhere here; if it does not within 5 s, fail. */
    struct pit_timer t;
    pit_timer_start(&t);
    while (pit_timer_elapsed(&t) < 5 * PIT_HZ)
        cpu_relax();
    check(0, "suspend", "still running 5 s after SLP_EN");
    rt_failures += STATE->failures;
    finish();
}

void s3_resumed(void) __attribute__((noreturn));
void s3_resumed(void)
{
    rt_load_idt();
    puts("INFO resumed round ");
    putdec(STATE->rounds);
    putc('\n');
    u16 cs = stub_field(s3_stub_cs), ip = stub_field(s3_stub_ip), flags = stub_field(s3_stub_flags);
    check_begin(cs == (WAKE_STUB >> 4) && ip == 0 && !(flags & 0x200), "wake-entry");
    puts("cs=");
    puthex(cs, 4);
    puts(" ip=");
    puthex(ip, 4);
    puts(" flags=");
    puthex(flags, 4);
    putc('\n');

    u16 pm1a_evt = STATE->pm1a_evt;
    u16 sts = inw(pm1a_evt), en = inw((u16)(pm1a_evt + 2));
    check_begin((sts & (WAK_STS | RTC_STS)) == (WAK_STS | RTC_STS), "wake-status");
    puts("pm1_sts=");
    puthex(sts, 4);
    puts(" pm1_en=");
    puthex(en, 4);
    putc('\n');
    outw(pm1a_evt, WAK_STS | RTC_STS);

    check(STATE->marker == 0xc0ffee42u, "memory-kept", "marker intact");
    check(STATE->ran_after_slp_en == 0, "stopped-at-slp-en", "no instruction ran after the SLP_EN write");
    check_begin(image_probe == 0x1234abcdu, "image-restored");
    puts("probe=");
    puthex32(image_probe);
    putc('\n');
    u8 code = cmos_read(0x0f);
    check_begin(code == 0, "shutdown-code");
    puts("cmos[0x0f]=");
    puthex(code, 2);
    putc('\n');

    u8 imr1 = inb(0x21), imr2 = inb(0xa1);
    check_begin(imr1 == 0xfb && imr2 == 0xff, "pic-after-wake");
    puts("imr master=");
    puthex(imr1, 2);
    puts(" slave=");
    puthex(imr2, 2);
    putc('\n');

    u8 rb = cmos_read(0x0b);
    check_begin(!(rb & 0x20), "rtc-alarm-off");
    puts("rtc_b=");
    puthex(rb, 2);
    putc('\n');

    u8 seconds_after = cmos_read(0x00);
    check_begin(seconds_after != STATE->seconds_before, "slept");
    puts("seconds ");
    puthex(STATE->seconds_before, 2);
    puts(" -> ");
    puthex(seconds_after, 2);
    putc('\n');
    if (STATE->rounds < STATE->wanted_rounds) {
        image_probe = 0x5555aaaau;
        suspend_now();
    }
    rt_failures += STATE->failures;
    finish();
}


void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    serial_init();
    puts("s3: suspend to RAM, RTC alarm wake, resume in real mode\n");
    const char *cmdline = magic == MB_BOOT_MAGIC && (mbi->flags & MBI_CMDLINE) ? (const char *)mbi->cmdline : "";

    struct acpi_rsdp *rsdp = acpi_find_rsdp();
    struct acpi_header *fadt = rsdp ? acpi_find_table(rsdp, "FACP") : NULL;
    if (!check(fadt != NULL, "fadt", "found through the RSDP"))
        finish();
    const u8 *f = (const u8 *)fadt;
    u32 facs_address = *(const u32 *)(f + 36), dsdt_address = *(const u32 *)(f + 40);
    STATE->pm1a_evt = (u16)*(const u32 *)(f + 56);
    STATE->pm1a_cnt = (u16)*(const u32 *)(f + 64);

    int slp_typ = dsdt_s3_type((struct acpi_header *)dsdt_address);
    check_begin(slp_typ >= 0, "dsdt-s3");
    puts("slp_typ=");
    putdec((u32)(slp_typ < 0 ? 0 : slp_typ));
    putc('\n');
    volatile u32 *facs = (volatile u32 *)facs_address;
    check_begin(memcmp((const void *)facs, "FACS", 4) == 0 && facs[1] >= 64, "facs");
    puts("at ");
    puthex32(facs_address);
    putc('\n');
    if (slp_typ < 0 || memcmp((const void *)facs, "FACS", 4) != 0)
        finish();

    memcpy((void *)WAKE_STUB, s3_stub_start, (u32)(s3_stub_end - s3_stub_start));
    u32 vector = has_word(cmdline, "no-vector") ? 0 : WAKE_STUB;
    facs[3] = vector;                          /* Firmware_Waking_Vector */
    check(facs[3] == vector, "facs-writable", "waking vector read back");
    STATE->marker = 0xc0ffee42u;
    STATE->failures = 0;
    STATE->rounds = 0;
    STATE->wanted_rounds = has_word(cmdline, "twice") ? 2 : 1;
    STATE->slp_typ = (u8)slp_typ;
    STATE->rtc_en = !has_word(cmdline, "no-rtc-en");
    image_probe = 0x5555aaaau;
    suspend_now();
}
