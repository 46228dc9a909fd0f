/* migration_dirty.c — the live-migration benchmark's guest, for Deflect and
   QEMU alike: dirties memory at a set rate and measures, with its own TSC,
   every stall it sees (such as a migration's pause).

   Command line (both required):
       rate=MIBPS     MiB per second to dirty (0: none, at most 10000)
       tsc_khz=N      the guest TSC's rate in kHz (KVM_GET_TSC_KHZ; the
                      same under Deflect and QEMU on one host)

   Pages: the 8192 pages of [16 MiB, 48 MiB), round-robin, one 32-bit write
   per page, so a guest of 64 MiB or more has them all. Ticks of 10 ms,
   timed by the TSC: each tick owes rate × 256 / 100 pages (the remainder
   carries over), written one per loop iteration until paid.

   Every loop iteration reads the TSC; when two consecutive reads are more
   than 2 ms apart it prints "GAP <microseconds>" on COM1 (the print itself
   is left out of the next gap). "DIRTY rate=R" is printed once when the
   loop starts. It never ends: the host stops it. A missing or bad argument
   prints "FAIL args ..." and exits with 0x02. */
#include "mbrt.h"

#define REGION_START (16u << 20)
#define REGION_PAGES 8192u
#define PAGE_SIZE    4096u
#define TICKS_PER_SECOND 100u
#define GAP_THRESHOLD_US 2000u
#define MAX_RATE 10000u          /* MiB/s: keeps the owed count in 32 bits */

static u32 argument(struct mb_info *mbi, const char *key, int *ok)
{
    u32 len = 0;
    const char *value = mbi->flags & MBI_CMDLINE ? cmdline_value((const char *)mbi->cmdline, key, &len) : NULL;
    int parsed = 0;
    u32 v = value ? parse_decimal(value, len, &parsed) : 0;
    if (!parsed) {
        puts("FAIL args ");
        puts(key);
        puts("= missing or not a decimal number (at most 9 digits)\n");
        *ok = 0;
    }
    return v;
}

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    serial_init();
    int ok = magic == MB_BOOT_MAGIC;
    if (!ok)
        puts("FAIL args not started by a multiboot loader\n");
    u32 rate = ok ? argument(mbi, "rate", &ok) : 0;
    u32 tsc_khz = ok ? argument(mbi, "tsc_khz", &ok) : 0;
    if (ok && (tsc_khz == 0 || rate > MAX_RATE)) {
        puts("FAIL args tsc_khz=0 or rate above 10000\n");
        ok = 0;
    }
    if (!ok)
        exit_with(EXIT_FAIL);

    u64 tick = udiv64((u64)tsc_khz * 1000, TICKS_PER_SECOND, NULL);
    u64 threshold = udiv64((u64)tsc_khz * GAP_THRESHOLD_US, 1000, NULL);
    /* Owed pages in hundredths: a tick adds rate × 256 pages/MiB × 100 / 100 ticks. */
    u32 owed_hundredths = 0, page = 0, stamp = 0;
    puts("DIRTY rate=");
    putdec(rate);
    putc('\n');
    u64 prev = rdtsc();
    u64 next_tick = prev + tick;
    for (;;) {
        if (owed_hundredths >= 100) {
            volatile u32 *word = (volatile u32 *)(REGION_START + page * PAGE_SIZE);
            *word = ++stamp;
            page = page + 1 == REGION_PAGES ? 0 : page + 1;
            owed_hundredths -= 100;
        }
        u64 now = rdtsc();
        if (now - prev > threshold) {
            puts("GAP ");
            putdec(udiv64((now - prev) * 1000, tsc_khz, NULL));
            putc('\n');
            now = rdtsc();
        }
        prev = now;
        if (now >= next_tick) {
            /* A tick's pages; after a long stall the missed ticks are not
               paid back (that would be a burst far above the rate). */
            owed_hundredths += rate * 256;
            if (owed_hundredths > 4u * rate * 256)
                owed_hundredths = 4u * rate * 256;
            next_tick = now - next_tick > tick ? now + tick : next_tick + tick;
        }
    }
}
