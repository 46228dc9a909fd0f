/* platform — checks the slice of a QEMU PC that multiboot test kernels rely
   on: fw_cfg (I/O ports, no DMA), the ACPI tables, the ACPI PM timer rate and
   the CMOS/RTC.

   Run: qemu-system-x86_64 -kernel platform.elf -m 64 -smp 4 -serial stdio \
            -display none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04

   Checks (one PASS/FAIL line each):
     magic          EAX == 0x2BADB002 and MEM flag set (RAM size comes from it)
     fw-cfg-signature  selector 0x0000 reads "QEMU" (port 0x510 16-bit select,
                    0x511 8-bit data)
     fw-cfg-ram     FW_CFG_RAM_SIZE (0x03, u64 LE) vs 1 MiB + mem_upper KiB:
                    within 1 MiB when RAM <= 2 GiB (firmware keeps the top
                    pages), else at least that much
     fw-cfg-cpus    FW_CFG_NB_CPUS (0x05, u16) >= 1 and <= FW_CFG_MAX_CPUS (0x0f)
     acpi-rsdp      "RSD PTR " on a 16-byte boundary in 0xE0000-0xFFFFF,
                    20-byte checksum, 36-byte extended checksum if revision >= 2
     acpi-rsdt      RSDT signature, length and checksum (XSDT too if present;
                    a zero RSDT address is accepted when the XSDT is valid)
     acpi-tables    every table the RSDT or XSDT lists (once each), plus the
                    FADT's DSDT (X_DSDT if DSDT is 0): sane length and checksum
                    (each printed as INFO; tables are found through the XSDT
                    when the RSDP revision is >= 2 and it is nonzero)
     madt           "APIC" present; enabled Processor Local APIC entries (type
                    0, flags bit 0) == FW_CFG_NB_CPUS; exactly one I/O APIC
                    (type 1); every entry's length inside the table
     fadt           "FACP" present, PM_TMR_BLK (offset 76) nonzero, PM_TMR_LEN
                    (offset 91) == 4
     pm-timer-runs  the PM timer port changes between reads
     pm-timer-rate  PM timer ticks during >= 59659 PIT ticks (~50 ms, timed
                    by latching and reading the channel-2 counter): expect
                    3579545/1193182 per PIT tick (178977 per 59659) +-10%
                    (24-bit wrap unless FADT flag TMR_VAL_EXT, bit 8); prints
                    the count and the TSC delta over the same window (TSC kHz
                    as INFO)
     pit-out2       port 0x61 bit 5 follows PIT channel-2 OUT in mode 0: low
                    while a ~10 ms one-shot still has >= 1/4 of its count left,
                    high after the terminal count (QEMU: yes; Deflect on the
                    nested test host with KVM's in-kernel speaker port: no, the
                    bit toggles like the refresh bit 4)
     cmos           RTC status D (0x0D) bit 7 (valid RAM and time) set; year
                    (0x09) valid BCD in BCD mode; prints registers A, B, year

   Command line (optional): hold=MS waits MS milliseconds after the pit-out2 check
   (line "INFO hold MS ms", then "INFO hold done"); a bad value is a
   "FAIL hold" line. Without it nothing changes. */
#include "mbrt.h"

static struct madt_summary madt_s;

static void put_sig(const char *s)
{
    for (int i = 0; i < 4; i++)
        putc(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
}

/* Checks one table: plausible length and checksum; prints an INFO line. */
static u32 tables_checked, tables_bad;
static int check_table(u32 addr, const char *want_sig)
{
    struct acpi_header *h = (struct acpi_header *)addr;
    int ok = addr != 0 && h->length >= 36 && h->length < 0x100000 &&
             (!want_sig || memcmp(h->sig, want_sig, 4) == 0);
    if (ok)
        ok = acpi_sum(h, h->length) == 0;
    tables_checked++;
    if (!ok)
        tables_bad++;
    puts("INFO acpi ");
    if (addr) put_sig(h->sig); else puts("(null)");
    puts(" at ");
    puthex32(addr);
    if (addr) {
        puts(" len ");
        putdec(h->length);
        puts(" rev ");
        putdec(h->revision);
        puts(" oem \"");
        putsn(h->oem_id, 6);
        puts("\"");
    }
    puts(ok ? " checksum ok\n" : " BAD\n");
    return ok;
}

/* Command line "hold=MS": prints "INFO hold MS ms" and busy-waits MS
   milliseconds (PIT channel 2, polled) between the timer checks and the CMOS
   check, so that a snapshot can be taken in the middle of a run; the rest
   then runs in the restored machine. */
static void hold(struct mb_info *mbi)
{
    u32 len = 0;
    const char *value = mbi && (mbi->flags & MBI_CMDLINE) ? cmdline_value((const char *)mbi->cmdline, "hold", &len) : NULL;
    if (!value)
        return;
    int ok = 0;
    u32 ms = parse_decimal(value, len, &ok);
    if (!ok) {
        check(0, "hold", "hold= wants milliseconds (at most 9 digits)");
        return;
    }
    puts("INFO hold ");
    putdec(ms);
    puts(" ms\n");
    /* In 50 ms steps: the channel-2 count must be read before it wraps. */
    for (u32 step = 0; step < ms; step += 50)
        pit_delay_us((ms - step < 50 ? ms - step : 50) * 1000);
    puts("INFO hold done\n");
}

static u8 cmos_read(u8 reg)
{
    outb(0x70, reg);
    return inb(0x71);
}

static int bcd_ok(u8 v)
{
    return (v & 0x0f) <= 9 && (v >> 4) <= 9;
}

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    serial_init();
    puts("platform: fw_cfg, ACPI, PM timer, CMOS\n");
    int mb_ok = magic == MB_BOOT_MAGIC && (mbi->flags & MBI_MEM);
    check_begin(mb_ok, "magic");
    puts("eax=");
    puthex32(magic);
    puts(" flags=");
    puthex32(mb_ok || magic == MB_BOOT_MAGIC ? mbi->flags : 0);
    putc('\n');

    /* ---- fw_cfg ---- */
    char sig[5] = {0};
    fw_cfg_read(FW_CFG_SIGNATURE, sig, 4);
    check_begin(memcmp(sig, "QEMU", 4) == 0, "fw-cfg-signature");
    puts("\"");
    put_sig(sig);
    puts("\"\n");
    u32 id = 0;
    fw_cfg_read(FW_CFG_ID, &id, 4);
    puts("INFO fw_cfg id=");
    puthex32(id);
    puts(id & 2 ? " (DMA interface offered; not used)\n" : " (no DMA interface)\n");

    u64 ram = 0;
    fw_cfg_read(FW_CFG_RAM_SIZE, &ram, 8);
    if (mb_ok) {
        u64 upper_end = 0x100000 + (u64)mbi->mem_upper * 1024;
        int ok = ram <= 0x80000000ull ? (ram >= upper_end && ram - upper_end <= 0x100000)
                                      : ram >= upper_end;
        check_begin(ok, "fw-cfg-ram");
        puts("ram_size=0x");
        puthex(ram, 16);
        puts(" (");
        putdec(ram >> 20);
        puts(" MiB), multiboot 1 MiB + mem_upper ends at 0x");
        puthex(upper_end, 8);
        putc('\n');
    } else {
        check(0, "fw-cfg-ram", "no multiboot memory information to compare with");
    }

    u16 nb = 0, maxc = 0;
    fw_cfg_read(FW_CFG_NB_CPUS, &nb, 2);
    fw_cfg_read(FW_CFG_MAX_CPUS, &maxc, 2);
    check_begin(nb >= 1 && maxc >= nb, "fw-cfg-cpus");
    puts("nb_cpus=");
    putdec(nb);
    puts(" max_cpus=");
    putdec(maxc);
    putc('\n');

    /* ---- ACPI ---- */
    struct acpi_rsdp *rsdp = acpi_find_rsdp();
    if (!rsdp) {
        check(0, "acpi-rsdp", "no \"RSD PTR \" with a valid checksum in 0xE0000-0xFFFFF");
        finish();
    }
    int ext_ok = rsdp->revision < 2 ||
                 (rsdp->length >= 36 && rsdp->length < 4096 && acpi_sum(rsdp, rsdp->length) == 0);
    check_begin(ext_ok, "acpi-rsdp");
    puts("at ");
    puthex32((u32)rsdp);
    puts(" rev ");
    putdec(rsdp->revision);
    puts(" oem \"");
    putsn(rsdp->oem_id, 6);
    puts("\" rsdt=");
    puthex32(rsdp->rsdt);
    if (rsdp->revision >= 2) {
        puts(" xsdt=0x");
        puthex(rsdp->xsdt, 16);
        puts(ext_ok ? " extended checksum ok" : " extended checksum BAD");
    }
    puts(ext_ok ? ", checksum ok\n" : "\n");

    int rsdt_ok = rsdp->rsdt && check_table(rsdp->rsdt, "RSDT");
    int xsdt_present = rsdp->revision >= 2 && rsdp->xsdt;
    int xsdt_ok = !xsdt_present || ((rsdp->xsdt >> 32) == 0 && check_table((u32)rsdp->xsdt, "XSDT"));
    /* RSDT required unless a valid XSDT is there (ACPI 2.0+ hardware-reduced
       platforms such as QEMU's microvm leave the RSDT address 0). */
    int root_ok = xsdt_ok && (rsdt_ok || (rsdp->rsdt == 0 && xsdt_present));
    check_begin(root_ok, "acpi-rsdt");
    puts(rsdt_ok ? "RSDT ok" : rsdp->rsdt ? "RSDT bad" : "no RSDT");
    if (xsdt_present)
        puts(xsdt_ok ? ", XSDT ok" : ", XSDT bad or above 4 GiB");
    putc('\n');

    /* Every table listed by the RSDT or the XSDT, each checked once. */
    static u32 addrs[64];
    u32 naddrs = 0, rsdt_n = 0, xsdt_n = 0, only_in_one = 0;
    if (rsdt_ok) {
        struct acpi_header *r = (struct acpi_header *)rsdp->rsdt;
        rsdt_n = (r->length - 36) / 4;
        for (u32 i = 0; i < rsdt_n && naddrs < 64; i++)
            addrs[naddrs++] = *(u32 *)((u8 *)r + 36 + i * 4);
    }
    tables_checked = tables_bad = 0;
    if (xsdt_present && xsdt_ok) {
        struct acpi_header *x = (struct acpi_header *)(u32)rsdp->xsdt;
        xsdt_n = (x->length - 36) / 8;
        for (u32 i = 0; i < xsdt_n; i++) {
            u64 e = *(u64 *)((u8 *)x + 36 + i * 8);
            if (e >> 32) {
                tables_checked++;
                tables_bad++;
                puts("INFO acpi XSDT entry above 4 GiB\n");
                continue;
            }
            u32 j = 0;
            while (j < naddrs && addrs[j] != (u32)e)
                j++;
            if (j == naddrs) {
                if (rsdt_ok)
                    only_in_one++;
                if (naddrs < 64)
                    addrs[naddrs++] = (u32)e;
            }
        }
        if (rsdt_n != xsdt_n)
            only_in_one++;
    }
    for (u32 i = 0; i < naddrs; i++)
        check_table(addrs[i], NULL);
    if (xsdt_present && rsdt_ok && xsdt_ok) {
        puts("INFO acpi RSDT lists ");
        putdec(rsdt_n);
        puts(", XSDT lists ");
        putdec(xsdt_n);
        puts(only_in_one ? " (different sets)\n" : " (same tables)\n");
    }
    struct acpi_header *fadt = acpi_find_table(rsdp, "FACP");
    if (fadt && fadt->length >= 44) {
        u32 dsdt = *(u32 *)((u8 *)fadt + 40);
        if (!dsdt && fadt->length >= 148 && !(*(u64 *)((u8 *)fadt + 140) >> 32))
            dsdt = (u32)*(u64 *)((u8 *)fadt + 140);     /* X_DSDT */
        check_table(dsdt, "DSDT");
    }
    check_begin(tables_checked > 0 && tables_bad == 0, "acpi-tables");
    putdec(tables_checked);
    puts(" tables, ");
    putdec(tables_bad);
    puts(" bad\n");

    /* MADT */
    struct acpi_header *madt = acpi_find_table(rsdp, "APIC");
    if (madt) {
        madt_parse(madt, &madt_s);
        int ok = !madt_s.bad_entry && madt_s.cpus == nb && madt_s.ioapics == 1;
        check_begin(ok, "madt");
        puts("enabled_cpus=");
        putdec(madt_s.cpus);
        puts(" (fw_cfg ");
        putdec(nb);
        puts(") disabled=");
        putdec(madt_s.disabled);
        puts(" apic_ids=");
        for (u32 i = 0; i < madt_s.cpus && i < MAX_CPUS; i++) {
            if (i) putc(',');
            putdec(madt_s.apic_ids[i]);
        }
        puts(" ioapics=");
        putdec(madt_s.ioapics);
        puts(" ioapic=");
        puthex32(madt_s.ioapic_addr);
        puts(" lapic=");
        puthex32(madt_s.lapic_addr);
        if (madt_s.bad_entry) puts(" BAD-ENTRY-LENGTH");
        putc('\n');
    } else {
        check(0, "madt", "no APIC table");
    }

    /* FADT and the PM timer */
    u32 pm = 0, ext = 0;
    if (fadt && fadt->length >= 116) {
        u8 *f = (u8 *)fadt;
        pm = *(u32 *)(f + 76);
        u8 pm_len = f[91];
        u32 flags = *(u32 *)(f + 112);
        ext = (flags >> 8) & 1;
        check_begin(pm != 0 && pm < 0x10000 && pm_len == 4, "fadt");
        puts("pm_tmr_blk=");
        puthex32(pm);
        puts(" pm_tmr_len=");
        putdec(pm_len);
        puts(" flags=");
        puthex32(flags);
        puts(ext ? " (32-bit timer)\n" : " (24-bit timer)\n");
        if (pm == 0 || pm >= 0x10000)
            pm = 0;
    } else {
        check(0, "fadt", "no FACP table (or shorter than 116 bytes)");
    }

    if (pm) {
        u32 mask = ext ? 0xffffffffu : 0x00ffffffu;
        u32 a = inl((u16)pm) & mask, b = a;
        for (u32 i = 0; i < 100000 && b == a; i++)
            b = inl((u16)pm) & mask;
        check_begin(a != b, "pm-timer-runs");
        puts("read ");
        puthex32(a);
        puts(" then ");
        puthex32(b);
        putc('\n');

        /* ~50 ms window measured on the PIT channel-2 counter. */
        const u32 window = 59659;
        struct pit_timer t;
        pit_timer_start(&t);
        pit_timer_elapsed(&t);
        u32 e0 = t.elapsed;
        u64 t0 = rdtsc();
        u32 p0 = inl((u16)pm);
        u32 polls = 0;
        while (pit_timer_elapsed(&t) - e0 < window && polls < 50000000u)
            polls++;
        u32 p1 = inl((u16)pm);
        u64 t1 = rdtsc();
        u32 pit_ticks = t.elapsed - e0;
        u32 ticks = (p1 - p0) & mask;
        /* Expected PM ticks for the PIT ticks actually seen (3579545/1193182). */
        u32 expect = (u32)udiv64((u64)pit_ticks * 3579545u, PIT_HZ, NULL);
        int ok = polls < 50000000u && ticks >= expect - expect / 10 && ticks <= expect + expect / 10;
        check_begin(ok, "pm-timer-rate");
        puts("ticks=");
        putdec(ticks);
        puts(" over ");
        putdec(pit_ticks);
        puts(" PIT ticks, expect ");
        putdec(expect);
        puts(" +-10% (178977 per 59659; 3.579545 MHz) polls=");
        putdec(polls);
        putc('\n');
        u64 dt = t1 - t0;
        puts("INFO tsc delta=");
        putdec(dt);
        if (pit_ticks) {
            puts(" tsc_khz_by_pit~");
            putdec(udiv64(dt * 1193u, pit_ticks, NULL));
        }
        if (ticks) {
            /* tsc kHz by PM timer = dt * 3579545 / ticks / 1000. */
            puts(" tsc_khz_by_pm~");
            putdec(udiv64(dt * 3579u, ticks, NULL));
        }
        putc('\n');
    }

    /* ---- PIT OUT2 on port 0x61 bit 5 (what many kernels poll) ---- */
    {
        const u32 count = 11932;                 /* ~10 ms one-shot */
        pit2_start((u16)count);
        u32 high_early = 0, samples = 0, low_late = 0;
        u16 c;
        /* While at least 1/4 of the count remains, OUT2 must read low. Each
           read of OUT2 is bracketed by two reads of the count: a vCPU
           descheduled between them (a loaded host) can let the counter reach
           terminal count and wrap, and such a sample says nothing. */
        while ((c = pit2_count()) > count / 4 && c <= count && samples < 1000000) {
            u32 out = pit2_done();
            u16 after = pit2_count();
            if (after == 0 || after > c)
                continue;                        /* terminal count passed in between */
            high_early += out;
            samples++;
        }
        /* Past the terminal count (~12 ms more), OUT2 must read high. */
        pit_delay_us(12000);
        pit2_start((u16)count);                  /* restart: the delay reused channel 2 */
        u32 waited = 0;
        u16 prev = (u16)count, cur;
        while (waited < count + 1200) {          /* +1 ms margin */
            cur = pit2_count();
            waited += (u16)(prev - cur);
            prev = cur;
        }
        for (int i = 0; i < 8; i++)
            low_late += !pit2_done();
        int ok = samples > 0 && high_early == 0 && low_late == 0;
        check_begin(ok, "pit-out2");
        puts("port 0x61 bit 5 while counting: high in ");
        putdec(high_early);
        puts("/");
        putdec(samples);
        puts(" reads (want 0); after terminal count: low in ");
        putdec(low_late);
        puts("/8 (want 0)\n");
    }

    hold(mb_ok ? mbi : NULL);

    /* ---- CMOS / RTC ---- */
    u32 spins = 0;
    while ((cmos_read(0x0a) & 0x80) && spins < 1000000)
        spins++;
    u8 ra = cmos_read(0x0a), rb = cmos_read(0x0b), year = cmos_read(0x09);
    u8 month = cmos_read(0x08), day = cmos_read(0x07), century = cmos_read(0x32);
    u8 rd = cmos_read(0x0d);
    int bcd = !(rb & 0x04);
    int ok = (rd & 0x80) && (!bcd || (bcd_ok(year) && bcd_ok(month) && bcd_ok(day)));
    check_begin(ok, "cmos");
    puts("regA=0x");
    puthex(ra, 2);
    puts(" regB=0x");
    puthex(rb, 2);
    puts(" regD=0x");
    puthex(rd, 2);
    puts(bcd ? " bcd" : " binary");
    puts(" date=");
    if (bcd) {
        puthex(century, 2);
        puthex(year, 2);
        putc('-');
        puthex(month, 2);
        putc('-');
        puthex(day, 2);
    } else {
        putdec(century);
        putdec(year);
        putc('-');
        putdec(month);
        putc('-');
        putdec(day);
    }
    putc('\n');

    finish();
}
