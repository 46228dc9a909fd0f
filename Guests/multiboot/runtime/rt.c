/* rt.c — serial output, results, exceptions, PIT delays, fw_cfg and ACPI
   helpers shared by the multiboot test kernels. See mbrt.h. */
#include "mbrt.h"

u32 rt_failures, rt_checks;
int (*rt_gp_hook)(struct rt_frame *f);

/* ---------------------------------------------------------------- serial */

void serial_init(void)
{
    outb(COM1 + 1, 0x00);           /* IER: no interrupts */
    outb(COM1 + 3, 0x80);           /* LCR: DLAB */
    outb(COM1 + 0, 0x01);           /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);           /* 8N1, DLAB off */
}

void putc(char c)
{
    /* Bounded wait for THR empty: a UART model that never sets the bit must
       not hang the kernel (the byte is written anyway). */
    for (u32 i = 0; i < 100000 && !(inb(COM1_LSR) & 0x20); i++)
        ;
    outb(COM1, (u8)c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

void putsn(const char *s, u32 max)
{
    for (u32 i = 0; i < max && s[i]; i++)
        putc(s[i]);
}

void puthex(u64 v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        u32 nib = (u32)(v >> (i * 4)) & 0xf;
        putc((char)(nib < 10 ? '0' + nib : 'a' + nib - 10));
    }
}

void puthex32(u32 v)
{
    puts("0x");
    puthex(v, 8);
}

void putdec(u64 v)
{
    char buf[24];
    int n = 0;
    do {
        u32 r;
        v = udiv64(v, 10, &r);
        buf[n++] = (char)('0' + r);
    } while (v);
    while (n)
        putc(buf[--n]);
}

static volatile u32 print_lock_word;

void print_lock(void)
{
    u32 one = 1;
    for (;;) {
        __asm__ volatile("xchgl %0, %1" : "+r"(one), "+m"(print_lock_word) :: "memory");
        if (one == 0)
            return;
        while (print_lock_word)
            cpu_relax();
        one = 1;
    }
}

void print_unlock(void)
{
    __asm__ volatile("" ::: "memory");
    print_lock_word = 0;
}

/* --------------------------------------------------------------- results */

int check_begin(int ok, const char *name)
{
    rt_checks++;
    if (!ok)
        rt_failures++;
    puts(ok ? "PASS " : "FAIL ");
    puts(name);
    putc(' ');
    return ok;
}

int check(int ok, const char *name, const char *detail)
{
    check_begin(ok, name);
    puts(detail);
    putc('\n');
    return ok;
}

void exit_with(u8 value)
{
    outb(DEBUG_EXIT, value);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void finish(void)
{
    int ok = rt_failures == 0 && rt_checks > 0;
    puts("CHECKS total=");
    putdec(rt_checks);
    puts(" failed=");
    putdec(rt_failures);
    puts(ok ? "\nRESULT pass\n" : "\nRESULT fail\n");
    exit_with(ok ? EXIT_PASS : EXIT_FAIL);
}

/* ------------------------------------------------------------ exceptions */

void rt_exception(struct rt_frame *f);
void rt_exception(struct rt_frame *f)
{
    if (f->vector == 13 && rt_gp_hook && rt_gp_hook(f))
        return;
    /* Take the print lock if we can; never deadlock on it (the exception
       may have hit while this CPU held it). */
    u32 one = 1;
    for (u32 i = 0; i < 1000000; i++) {
        one = 1;
        __asm__ volatile("xchgl %0, %1" : "+r"(one), "+m"(print_lock_word) :: "memory");
        if (one == 0)
            break;
        cpu_relax();
    }
    puts("\nFAIL exception vector=");
    putdec(f->vector);
    puts(" eip=");
    puthex32(f->eip);
    puts(" error=");
    puthex32(f->error);
    puts("\nRESULT fail\n");
    exit_with(EXIT_FAIL);
}

/* --------------------------------------------------------------- library */

void *memcpy(void *d, const void *s, size_t n)
{
    u8 *dp = d;
    const u8 *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memset(void *d, int c, size_t n)
{
    u8 *dp = d;
    while (n--)
        *dp++ = (u8)c;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

u64 udiv64(u64 n, u32 d, u32 *rem)
{
    u32 hi = (u32)(n >> 32), lo = (u32)n;
    u32 qhi = hi / d, r = hi % d, qlo;
    /* r < d, so the 64/32 divide cannot overflow. */
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(d));
    if (rem)
        *rem = r;
    return ((u64)qhi << 32) | qlo;
}

/* The token of the command line that starts at *p (spaces skipped); moves
   *p past it and returns its length. */
static u32 cmdline_next_token(const char **p, const char **tok)
{
    while (**p == ' ')
        (*p)++;
    *tok = *p;
    while (**p && **p != ' ')
        (*p)++;
    return (u32)(*p - *tok);
}

const char *cmdline_value(const char *cmd, const char *key, u32 *len)
{
    u32 klen = strlen(key);
    const char *p = cmd, *tok;
    while (*p) {
        u32 n = cmdline_next_token(&p, &tok);
        if (n > klen && memcmp(tok, key, klen) == 0 && tok[klen] == '=') {
            *len = n - klen - 1;
            return tok + klen + 1;
        }
    }
    return NULL;
}

int cmdline_has_word(const char *cmd, const char *word)
{
    u32 wlen = strlen(word);
    const char *p = cmd, *tok;
    while (*p)
        if (cmdline_next_token(&p, &tok) == wlen && wlen && memcmp(tok, word, wlen) == 0)
            return 1;
    return 0;
}


u32 parse_decimal(const char *p, u32 len, int *ok)
{
    u32 v = 0;
    *ok = len > 0 && len <= 9;
    for (u32 i = 0; *ok && i < len; i++) {
        *ok = p[i] >= '0' && p[i] <= '9';
        v = v * 10 + (u32)(p[i] - '0');
    }
    return *ok ? v : 0;
}

/* ------------------------------------------------------------------- PIT */

void pit2_start(u16 count)
{
    u8 v = inb(0x61);
    outb(0x61, (u8)((v & ~0x02) | 0x01));   /* gate 2 on, speaker off */
    outb(0x43, 0xb0);                       /* channel 2, lo/hi, mode 0, binary */
    outb(0x42, (u8)count);
    outb(0x42, (u8)(count >> 8));
}

int pit2_done(void)
{
    return (inb(0x61) & 0x20) != 0;
}

u16 pit2_count(void)
{
    outb(0x43, 0x80);                       /* latch channel 2 */
    u8 lo = inb(0x42);
    u8 hi = inb(0x42);
    return (u16)(lo | (hi << 8));
}

void pit_timer_start(struct pit_timer *t)
{
    pit2_start(0xffff);
    t->prev = 0xffff;
    t->elapsed = 0;
}

u32 pit_timer_elapsed(struct pit_timer *t)
{
    u16 cur = pit2_count();
    t->elapsed += (u16)(t->prev - cur);     /* mode 0 wraps past 0 to 0xffff */
    t->prev = cur;
    return t->elapsed;
}

void pit_delay_us(u32 us)
{
    u32 ticks = (u32)udiv64((u64)us * PIT_HZ, 1000000, NULL);
    struct pit_timer t;
    pit_timer_start(&t);
    while (pit_timer_elapsed(&t) < ticks)
        cpu_relax();
}

/* ---------------------------------------------------------------- fw_cfg */

void fw_cfg_read(u16 key, void *buf, u32 len)
{
    u8 *p = buf;
    outw(FW_CFG_PORT_SEL, key);
    for (u32 i = 0; i < len; i++)
        p[i] = inb(FW_CFG_PORT_DATA);
}

/* ------------------------------------------------------------------ ACPI */

u8 acpi_sum(const void *p, u32 len)
{
    const u8 *b = p;
    u8 s = 0;
    for (u32 i = 0; i < len; i++)
        s = (u8)(s + b[i]);
    return s;
}

struct acpi_rsdp *acpi_find_rsdp(void)
{
    for (u32 a = 0xe0000; a < 0x100000; a += 16) {
        struct acpi_rsdp *r = (struct acpi_rsdp *)a;
        if (memcmp(r->sig, "RSD PTR ", 8) == 0 && acpi_sum(r, 20) == 0)
            return r;
    }
    return NULL;
}

struct acpi_header *acpi_find_table(struct acpi_rsdp *rsdp, const char sig[4])
{
    if (rsdp->revision >= 2 && rsdp->xsdt && (rsdp->xsdt >> 32) == 0) {
        struct acpi_header *x = (struct acpi_header *)(u32)rsdp->xsdt;
        u32 n = x->length >= 36 ? (x->length - 36) / 8 : 0;
        for (u32 i = 0; i < n; i++) {
            u64 e = *(u64 *)((u8 *)x + 36 + i * 8);
            if (e && (e >> 32) == 0 && memcmp(((struct acpi_header *)(u32)e)->sig, sig, 4) == 0)
                return (struct acpi_header *)(u32)e;
        }
        return NULL;
    }
    if (!rsdp->rsdt)
        return NULL;
    struct acpi_header *r = (struct acpi_header *)rsdp->rsdt;
    u32 n = r->length >= 36 ? (r->length - 36) / 4 : 0;
    for (u32 i = 0; i < n; i++) {
        u32 e = *(u32 *)((u8 *)r + 36 + i * 4);
        if (e && memcmp(((struct acpi_header *)e)->sig, sig, 4) == 0)
            return (struct acpi_header *)e;
    }
    return NULL;
}

void madt_parse(struct acpi_header *madt, struct madt_summary *s)
{
    memset(s, 0, sizeof *s);
    u8 *base = (u8 *)madt;
    if (madt->length < 44) {
        s->bad_entry = 1;
        return;
    }
    s->lapic_addr = *(u32 *)(base + 36);
    u32 off = 44;
    while (off + 2 <= madt->length) {
        u8 type = base[off], len = base[off + 1];
        if (len < 2 || off + len > madt->length) {
            s->bad_entry = 1;
            return;
        }
        if (type == 0 && len >= 8) {
            u32 flags = *(u32 *)(base + off + 4);
            if (flags & 1) {
                if (s->cpus < MAX_CPUS)
                    s->apic_ids[s->cpus] = base[off + 3];
                s->cpus++;
            } else {
                s->disabled++;
            }
        } else if (type == 1 && len >= 12) {
            if (s->ioapics == 0) {
                s->ioapic_id = base[off + 2];
                s->ioapic_addr = *(u32 *)(base + off + 4);
            }
            s->ioapics++;
        }
        off += len;
    }
}
