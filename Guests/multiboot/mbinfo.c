/* mbinfo — checks the multiboot v1 information a loader hands over.

   Run (QEMU; Deflect's equivalent flags are --append and --module):
     printf 'MAGIC=deflect-env-v1\n' > env.txt
     qemu-system-x86_64 -kernel mbinfo.elf -append "expect-module=deflect-env-v1" \
         -initrd env.txt -m 64 -serial stdio -display none -no-reboot \
         -device isa-debug-exit,iobase=0xf4,iosize=0x04

   Checks (one PASS/FAIL line each):
     magic        EAX == 0x2BADB002
     flags        MEM, CMDLINE, MODS, MMAP and BOOT_LOADER_NAME bits set
     mem-lower    mem_lower is 639 or 640 KiB and equals the usable mmap
                  entry at 0 in whole KiB (QEMU and Deflect both report 639:
                  0x9FC00-0xA0000 is the EBDA)
     mmap         entries well-formed (size >= 20, inside mmap_length), sorted
                  by base, not overlapping; printed as INFO lines
     mmap-1mib    a usable (type 1) entry starts at exactly 1 MiB
     mem-upper    1 MiB + mem_upper KiB within 1 MiB of the end of the usable
                  memory that starts at 1 MiB (QEMU reports all RAM below 4 GiB
                  in mem_upper while its BIOS reserves the top few pages)
     kernel-usable  this image [_kernel_start, _kernel_end) lies in usable memory
     mbi-placement  the info structure and mmap do not overlap the image
     cmdline      present, NUL-terminated within 4 KiB; printed as INFO
     argv0        the first word is this kernel's path (QEMU passes
                  "<-kernel path> <-append>"): it ends in KERNEL_FILE
     argv1        the second word, the first of -append, is a KEY=VALUE
                  argument (mbinfo's are; a loader that passes -append alone
                  makes it argv0). Both printed as INFO argv0/argv1 "..."
     loader-name  present; printed as INFO
     modules      mods_count >= 1, table outside the image
     module-range first module: start < end, page-aligned (header flag bit 0),
                  inside one usable mmap entry, not overlapping the image
     module-env   the module is "KEY=VALUE" lines (blank lines and '#' comments
                  allowed; keys [A-Za-z0-9_.-]+), its MAGIC value equals the
                  expect-module=VALUE argument (argv[1] on, not argv0)

   Built twice: mbinfo.elf linked at 1 MiB and mbinfo-low.elf linked at
   0x8000, across the 0x9000 where QEMU keeps its information structure. */
#include "mbrt.h"

#ifndef KERNEL_FILE
#define KERNEL_FILE "mbinfo.elf"
#endif

static const struct mb_mmap *mmap_first, *mmap_end;

static const struct mb_mmap *mmap_next(const struct mb_mmap *e)
{
    return (const struct mb_mmap *)((const u8 *)e + e->size + 4);
}

/* [start, end) lies inside a single usable entry. */
static int range_usable(u64 start, u64 end)
{
    for (const struct mb_mmap *e = mmap_first; e && e < mmap_end; e = mmap_next(e))
        if (e->type == 1 && start >= e->addr && end <= e->addr + e->len)
            return 1;
    return 0;
}

static int overlaps(u32 a0, u32 a1, u32 b0, u32 b1)
{
    return a0 < b1 && b0 < a1;
}

static void print_range(u64 a, u64 b)
{
    puts("0x");
    puthex(a, 8);
    puts("-0x");
    puthex(b, 8);
}

/* Length of the word at p (up to a space or the end). */
static u32 word_length(const char *p)
{
    u32 n = 0;
    while (p[n] && p[n] != ' ')
        n++;
    return n;
}

/* Checks argv0/argv1 of the command line; returns where the arguments after argv0 start. */
static const char *check_argv(const char *cmd)
{
    u32 len0 = word_length(cmd);
    const char *arg1 = cmd + len0;
    while (*arg1 == ' ')
        arg1++;
    u32 len1 = word_length(arg1);
    puts("INFO argv0 \"");
    putsn(cmd, len0);
    puts("\"\nINFO argv1 \"");
    putsn(arg1, len1);
    puts("\"\n");

    u32 flen = strlen(KERNEL_FILE);
    const char *tail = cmd + len0 - flen;
    int ok0 = len0 >= flen && memcmp(tail, KERNEL_FILE, flen) == 0 && (len0 == flen || tail[-1] == '/');
    check_begin(ok0, "argv0");
    puts(ok0 ? "names this kernel, " KERNEL_FILE "\n" : "does not name this kernel, " KERNEL_FILE "\n");

    int has_eq = 0;
    for (u32 i = 0; i < len1; i++)
        has_eq |= arg1[i] == '=';
    check_begin(len1 > 0 && has_eq, "argv1");
    puts(len1 == 0 ? "missing: no argument after argv0\n" :
         has_eq ? "is a KEY=VALUE argument\n" : "is not a KEY=VALUE argument\n");
    return cmd + len0;
}

static int key_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static void check_module_env(const char *data, u32 size, const char *cmd)
{
    u32 want_len = 0;
    const char *want = cmd ? cmdline_value(cmd, "expect-module", &want_len) : NULL;
    const char *magic = NULL;
    u32 magic_len = 0, keys = 0, line_no = 0, bad_line = 0;
    u32 i = 0;
    while (i < size && data[i]) {
        u32 start = i;
        while (i < size && data[i] && data[i] != '\n')
            i++;
        u32 end = i;
        if (i < size && data[i] == '\n')
            i++;
        line_no++;
        if (end > start && data[end - 1] == '\r')
            end--;
        if (end == start || data[start] == '#')
            continue;
        u32 eq = start;
        while (eq < end && key_char(data[eq]))
            eq++;
        if (eq == start || eq >= end || data[eq] != '=') {
            if (!bad_line)
                bad_line = line_no;
            continue;
        }
        keys++;
        puts("INFO module key ");
        putsn(data + start, eq - start);
        puts(" = \"");
        putsn(data + eq + 1, end - eq - 1);
        puts("\"\n");
        if (eq - start == 5 && memcmp(data + start, "MAGIC", 5) == 0) {
            magic = data + eq + 1;
            magic_len = end - eq - 1;
        }
    }
    if (bad_line) {
        check_begin(0, "module-env");
        puts("line ");
        putdec(bad_line);
        puts(" is not KEY=VALUE\n");
        return;
    }
    if (!want) {
        check(0, "module-env", "no expect-module=VALUE on the command line");
        return;
    }
    if (!magic) {
        check_begin(0, "module-env");
        putdec(keys);
        puts(" keys, no MAGIC key\n");
        return;
    }
    int ok = magic_len == want_len && memcmp(magic, want, want_len) == 0;
    check_begin(ok, "module-env");
    puts("keys=");
    putdec(keys);
    puts(" MAGIC=\"");
    putsn(magic, magic_len);
    puts(ok ? "\" matches expect-module=\"" : "\" differs from expect-module=\"");
    putsn(want, want_len);
    puts("\"\n");
}

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    serial_init();
    puts("mbinfo: multiboot information check\n");
    u32 ks = (u32)_kernel_start, ke = (u32)_kernel_end;
    puts("INFO image ");
    print_range(ks, ke);
    puts(" mbi at ");
    puthex32((u32)mbi);
    putc('\n');

    check_begin(magic == MB_BOOT_MAGIC, "magic");
    puts("eax=");
    puthex32(magic);
    putc('\n');
    if (magic != MB_BOOT_MAGIC)
        finish();

    u32 want = MBI_MEM | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER;
    check_begin((mbi->flags & want) == want, "flags");
    puts("flags=");
    puthex32(mbi->flags);
    if ((mbi->flags & want) != want) {
        puts(" missing:");
        if (!(mbi->flags & MBI_MEM)) puts(" MEM");
        if (!(mbi->flags & MBI_CMDLINE)) puts(" CMDLINE");
        if (!(mbi->flags & MBI_MODS)) puts(" MODS");
        if (!(mbi->flags & MBI_MMAP)) puts(" MMAP");
        if (!(mbi->flags & MBI_LOADER)) puts(" BOOT_LOADER_NAME");
    }
    putc('\n');

    check_begin(overlaps((u32)mbi, (u32)mbi + sizeof *mbi, ks, ke) == 0 &&
                    (!(mbi->flags & MBI_MMAP) ||
                     !overlaps(mbi->mmap_addr, mbi->mmap_addr + mbi->mmap_length, ks, ke)),
                "mbi-placement");
    puts("mbi=");
    puthex32((u32)mbi);
    puts(" mmap=");
    puthex32(mbi->mmap_addr);
    puts(" outside the image\n");

    /* Memory sizes and map. */
    if (mbi->flags & MBI_MMAP) {
        mmap_first = (const struct mb_mmap *)mbi->mmap_addr;
        mmap_end = (const struct mb_mmap *)(mbi->mmap_addr + mbi->mmap_length);
        u32 n = 0, malformed = 0, unsorted = 0, overlap = 0;
        u64 prev_base = 0, prev_end = 0;
        for (const struct mb_mmap *e = mmap_first; e < mmap_end; e = mmap_next(e)) {
            if (e->size < 20 || (const u8 *)mmap_next(e) > (const u8 *)mmap_end) {
                malformed = 1;
                mmap_end = e;           /* stop walking here */
                break;
            }
            puts("INFO mmap ");
            puts("0x");
            puthex(e->addr, 16);
            puts(" len 0x");
            puthex(e->len, 16);
            puts(" type ");
            putdec(e->type);
            putc('\n');
            if (n && e->addr < prev_base)
                unsorted = 1;
            else if (n && e->addr < prev_end)
                overlap = 1;
            prev_base = e->addr;
            prev_end = e->addr + e->len;
            n++;
        }
        int ok = n > 0 && !malformed && !unsorted && !overlap;
        check_begin(ok, "mmap");
        putdec(n);
        puts(" entries");
        if (!n) puts(", empty");
        if (malformed) puts(", malformed entry");
        if (unsorted) puts(", not sorted");
        else if (overlap) puts(", overlapping");
        puts(ok ? ", sorted, no overlaps\n" : "\n");

        /* Usable memory from 1 MiB, merging adjacent usable entries. */
        u64 top = 0x100000;
        int found = 0, progress = 1;
        while (progress) {
            progress = 0;
            for (const struct mb_mmap *e = mmap_first; e < mmap_end; e = mmap_next(e))
                if (e->type == 1 && e->len && e->addr <= top && e->addr + e->len > top &&
                    (found || e->addr == 0x100000)) {
                    top = e->addr + e->len;
                    found = progress = 1;
                }
        }
        check_begin(found, "mmap-1mib");
        if (found) {
            puts("usable ");
            print_range(0x100000, top);
            putc('\n');
        } else {
            puts("no usable entry starts at 0x00100000\n");
        }
        /* Conventional memory: the usable entry at 0. */
        u64 low = 0;
        for (const struct mb_mmap *e = mmap_first; e < mmap_end; e = mmap_next(e))
            if (e->type == 1 && e->addr == 0)
                low = e->len;
        if (mbi->flags & MBI_MEM) {
            u32 ml = mbi->mem_lower;
            int ok = (ml == 639 || ml == 640) && (u64)ml * 1024 <= low + 1023 && low < (u64)ml * 1024 + 1024;
            check_begin(ok, "mem-lower");
            puts("mem_lower=");
            putdec(ml);
            puts(" KiB, usable from 0 ends at 0x");
            puthex(low, 8);
            puts(" (expect 639 or 640 and matching the map)\n");
        }
        if ((mbi->flags & MBI_MEM) && found) {
            u64 upper_end = 0x100000 + (u64)mbi->mem_upper * 1024;
            u64 diff = upper_end > top ? upper_end - top : top - upper_end;
            check_begin(diff <= 0x100000, "mem-upper");
            puts("mem_upper=");
            putdec(mbi->mem_upper);
            puts(" KiB ends at 0x");
            puthex(upper_end, 8);
            puts(", usable memory from 1 MiB ends at 0x");
            puthex(top, 8);
            puts(" (tolerance 1 MiB)\n");
        }
        check_begin(range_usable(ks, ke), "kernel-usable");
        puts("image ");
        print_range(ks, ke);
        puts(" in a usable entry\n");
    }

    /* Command line and boot loader name. */
    const char *cmd = NULL;
    if (mbi->flags & MBI_CMDLINE) {
        cmd = (const char *)mbi->cmdline;
        u32 len = 0;
        while (len < 4096 && cmd && cmd[len])
            len++;
        puts("INFO cmdline \"");
        if (cmd) putsn(cmd, 4096);
        puts("\"\n");
        int ok = cmd && len < 4096;
        check_begin(ok, "cmdline");
        putdec(len);
        puts(" bytes at ");
        puthex32(mbi->cmdline);
        putc('\n');
        /* Like a C kernel's argv: the arguments start after argv[0]. */
        cmd = ok ? check_argv(cmd) : NULL;
    }
    if (mbi->flags & MBI_LOADER) {
        const char *name = (const char *)mbi->boot_loader_name;
        u32 len = 0;
        while (name && len < 256 && name[len])
            len++;
        check_begin(name && len > 0 && len < 256, "loader-name");
        puts("\"");
        if (name) putsn(name, 256);
        puts("\"\n");
    }

    /* Modules. */
    if (mbi->flags & MBI_MODS) {
        u32 tab = mbi->mods_addr, tabend = tab + mbi->mods_count * 16;
        check_begin(mbi->mods_count >= 1 && !overlaps(tab, tabend, ks, ke), "modules");
        puts("count=");
        putdec(mbi->mods_count);
        puts(" table=");
        puthex32(tab);
        putc('\n');
        if (mbi->mods_count >= 1) {
            const struct mb_module *m = (const struct mb_module *)tab;
            for (u32 i = 0; i < mbi->mods_count && i < 16; i++) {
                puts("INFO module ");
                putdec(i);
                putc(' ');
                print_range(m[i].mod_start, m[i].mod_end);
                puts(" \"");
                if (m[i].string) putsn((const char *)m[i].string, 256);
                puts("\"\n");
            }
            u32 s = m[0].mod_start, e = m[0].mod_end;
            int ok = s < e && (s & 0xfff) == 0 && !overlaps(s, e, ks, ke) &&
                     (mbi->flags & MBI_MMAP) && range_usable(s, e);
            check_begin(ok, "module-range");
            print_range(s, e);
            puts(" size ");
            putdec(e - s);
            if (s >= e) puts(", empty or inverted");
            if (s & 0xfff) puts(", not page-aligned");
            if (overlaps(s, e, ks, ke)) puts(", overlaps the image");
            if (!range_usable(s, e)) puts(", not inside usable memory");
            putc('\n');
            if (s < e && e - s < 0x100000)
                check_module_env((const char *)s, e - s, cmd);
            else
                check(0, "module-env", "module missing or larger than 1 MiB");
        }
    }
    finish();
}
