/* mbrt.h — the small runtime shared by Deflect's multiboot (v1) test kernels.

   Boot: start.S carries the multiboot header (first section of the image,
   linked at 1 MiB by link.ld), is entered the way QEMU's -kernel enters a
   multiboot kernel (32-bit protected mode, paging off, EAX = 0x2BADB002,
   EBX = physical address of the multiboot information), loads its own GDT
   (0x08 flat code, 0x10 flat data), its own IDT (vectors 0-31), switches to a
   16 KiB stack in .bss and calls kmain(magic, info).

   Reporting (COM1 0x3f8, polled, 8N1): one line per check,
       "PASS <name> <details>"   or   "FAIL <name> <details>"
   plus free-form info lines ("INFO ..."), then "CHECKS total=N failed=F" and
       "RESULT pass"   or   "RESULT fail"
   and a write to the debug-exit port 0xf4:
       0x01 on pass (QEMU isa-debug-exit / Deflect status (1 << 1) | 1 = 3)
       0x02 on fail (status (2 << 1) | 1 = 5)
   after which the CPU halts with interrupts off (cli; hlt loop) in case the
   port is absent.

   Exceptions: every vector 0-31 enters rt_exception(). If the kernel set
   rt_gp_hook (msr.c does, for RDMSR/WRMSR) and it returns nonzero, execution
   resumes with the (possibly modified) frame. Otherwise the handler prints
   "FAIL exception vector=N eip=0x... error=0x... cpu=<apic id>",
   "RESULT fail" and exits with 0x02.

   Instruction choice: integer code only (-mgeneral-regs-only, -march=i686),
   IN/OUT, LGDT/LIDT, RDMSR/WRMSR, RDTSC, LOCK XADD/OR/XCHG, PAUSE, HLT,
   POPF/RET to leave handlers (no IRET: see start.S); none of the instructions nested KVM's emulator fails on here
   (XGETBV, MOVBE, CLWB, INVPCID, CLAC, INT3/INT n). */
#ifndef MBRT_H
#define MBRT_H

#include "deflect.h"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int i32;
typedef long long i64;
typedef unsigned int size_t;

#define NULL ((void *)0)

#define EXIT_PASS 0x01
#define EXIT_FAIL 0x02

/* ---- multiboot v1 information structure (spec 0.6.96, section 3.3) ---- */
#define MB_BOOT_MAGIC 0x2BADB002
#define MBI_MEM        (1u << 0)
#define MBI_BOOTDEV    (1u << 1)
#define MBI_CMDLINE    (1u << 2)
#define MBI_MODS       (1u << 3)
#define MBI_MMAP       (1u << 6)
#define MBI_LOADER     (1u << 9)

struct mb_info {
    u32 flags;
    u32 mem_lower, mem_upper;
    u32 boot_device;
    u32 cmdline;
    u32 mods_count, mods_addr;
    u32 syms[4];
    u32 mmap_length, mmap_addr;
    u32 drives_length, drives_addr;
    u32 config_table;
    u32 boot_loader_name;
    u32 apm_table;
} __attribute__((packed));

struct mb_module {
    u32 mod_start, mod_end, string, reserved;
} __attribute__((packed));

/* An mmap entry: "size" counts the bytes after itself (normally 20). */
struct mb_mmap {
    u32 size;
    u64 addr, len;
    u32 type;
} __attribute__((packed));

/* Linker symbols: the whole image including .bss. */
extern char _kernel_start[], _kernel_end[];

/* ---- port I/O and CPU helpers ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u32 mmio_read32(u32 addr) { return *(volatile u32 *)addr; }
static inline void mmio_write32(u32 addr, u32 v) { *(volatile u32 *)addr = v; }

/* ---- serial output (rt.c) ---- */
void serial_init(void);
void putc(char c);
void puts(const char *s);                 /* no newline added */
void puthex(u64 v, int digits);           /* lowercase, exactly `digits` digits */
void puthex32(u32 v);                     /* "0x" + 8 digits */
void putdec(u64 v);
void putsn(const char *s, u32 max);       /* at most max bytes, stops at NUL */
void print_lock(void);                    /* spinlock around multi-CPU output */
void print_unlock(void);

/* ---- results ---- */
extern u32 rt_failures, rt_checks;
/* Starts a "PASS name " / "FAIL name " line; the caller adds details and
   ends it with putc('\n'). Returns ok. */
int check_begin(int ok, const char *name);
/* One-shot line: "PASS name detail\n". */
int check(int ok, const char *name, const char *detail);
void finish(void) __attribute__((noreturn));   /* RESULT line + debug exit */
void exit_with(u8 value) __attribute__((noreturn));

/* ---- exceptions ---- */
struct rt_frame {
    /* pushal order, reversed: */
    u32 edi, esi, ebp, esp_dummy, ebx, edx, ecx, eax;
    u32 vector, error;
    u32 eip, cs, eflags;
};
/* Optional hook: return 1 to resume with the modified frame. */
extern int (*rt_gp_hook)(struct rt_frame *f);
void rt_load_idt(void);                   /* start.S; for APs */

/* ---- small library ---- */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
/* u64 / u32 without libgcc; *rem may be NULL. */
u64 udiv64(u64 n, u32 d, u32 *rem);
/* Finds "key=" as a whole token in a NUL-terminated command line; returns the
   value's start and sets *len (up to the next space); NULL if absent. */
const char *cmdline_value(const char *cmd, const char *key, u32 *len);
/* Whether `word` (no '=') is a whole token of the command line. */
int cmdline_has_word(const char *cmd, const char *word);
/* The decimal number in p[0..len) (at most 9 digits); *ok = 0 if it is not one. */
u32 parse_decimal(const char *p, u32 len, int *ok);

/* ---- timing: PIT channel 2 (1.193182 MHz), mode 0, polled ----
   Elapsed time is measured by latching and reading the channel-2 counter
   (port 0x43 command 0x80, two reads of 0x42) and summing the decrements;
   mode 0 keeps counting past 0 (wrapping to 0xffff), so any duration works
   as long as the caller polls at least every ~50 ms. Port 0x61 bit 5 (OUT2)
   is NOT used for timing: with KVM's in-kernel speaker port on the nested
   test host it does not follow OUT2 (platform.c checks it separately). */
#define PIT_HZ 1193182u
struct pit_timer { u16 prev; u32 elapsed; };
void pit2_start(u16 count);               /* mode 0 one-shot, gate on, speaker off */
int pit2_done(void);                      /* port 0x61 bit 5: OUT2 high? */
u16 pit2_count(void);                     /* latched channel-2 count */
void pit_timer_start(struct pit_timer *t);   /* channel 2 free-running from 0xffff */
u32 pit_timer_elapsed(struct pit_timer *t);  /* PIT ticks since start */
void pit_delay_us(u32 us);                /* busy-waits */

/* ---- fw_cfg (QEMU docs/specs/fw_cfg.rst, I/O interface) ---- */
#define FW_CFG_PORT_SEL  0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID        0x01
#define FW_CFG_RAM_SIZE  0x03
#define FW_CFG_NB_CPUS   0x05
#define FW_CFG_MAX_CPUS  0x0f
void fw_cfg_read(u16 key, void *buf, u32 len);

/* ---- ACPI ---- */
struct acpi_header {
    char sig[4];
    u32 length;
    u8 revision, checksum;
    char oem_id[6], oem_table_id[8];
    u32 oem_revision, creator_id, creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
    char sig[8];
    u8 checksum;
    char oem_id[6];
    u8 revision;
    u32 rsdt;
    u32 length;          /* revision >= 2 from here */
    u64 xsdt;
    u8 ext_checksum, reserved[3];
} __attribute__((packed));

u8 acpi_sum(const void *p, u32 len);      /* byte sum mod 256 */
struct acpi_rsdp *acpi_find_rsdp(void);   /* 0xE0000-0xFFFFF, 16-byte steps, checksum OK */
/* The table with this signature via XSDT (if rev >= 2 and nonzero) else RSDT;
   NULL if absent. Does not check the checksum. */
struct acpi_header *acpi_find_table(struct acpi_rsdp *rsdp, const char sig[4]);

/* MADT walk: enabled processor local APICs (type 0, flags bit 0). */
#define MAX_CPUS 64
struct madt_summary {
    u32 lapic_addr;
    u32 cpus;                /* enabled type-0 entries (first MAX_CPUS kept in ids) */
    u32 disabled;            /* type-0 entries with flags bit 0 clear */
    u8 apic_ids[MAX_CPUS];
    u32 ioapics;
    u32 ioapic_addr, ioapic_id;
    u32 bad_entry;           /* an entry with length < 2 or running past the table */
};
void madt_parse(struct acpi_header *madt, struct madt_summary *s);

#endif
