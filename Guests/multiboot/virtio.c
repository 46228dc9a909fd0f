/* virtio — a multiboot test kernel with small virtio 1.2 drivers over the
   modern PCI transport (virtio 1.2 section 4.1), written from the spec and
   proven against QEMU's devices (scripts/virtio-guest-against-qemu) before it
   judges Deflect's.

   Command line (-append): the devices to test and their expectations
       blk [ro] [serial=ID] [sectors=N]   virtio-blk (device 0x1042)
       rng                                virtio-rng (0x1044)
       console [console-echo]             virtio-console port 0 (0x1043)
       net ip=A.B.C.D [peer=A.B.C.D] [pings=N] [seconds=N] [mac=M]
                                          virtio-net (0x1041): answers ARP
                                          and ICMP echo for ip=, asks the
                                          peer's MAC, for at most N seconds
       vsock [cid=N] [vsock-connect=PORT] [vsock-listen=PORT]
             [vsock-refused=PORT] [vsock-buf=N] [vsock-seconds=N]
                                          virtio-vsock (0x1053): streams to
                                          and from the host (CID 2)
       blk-bench [blk-ops=N] [blk-seq-mib=M] [blk-verify]
       net-bench [net-frames=N]           benchmarks instead of checks: see
                                          "benchmarks" below
   and how: `intx` leaves MSI-X off (completions seen through INTx: PCI
   status bit 3 and the ISR), `assign-bars` zeroes the devices' BARs first so
   that this kernel assigns them. A device asked for must be there with its
   modern id; nothing asked for is "FAIL args".

   Steps and checks (one PASS/FAIL line each, see README.md for the list):
   - PCI (mechanism #1, 0xCF8/0xCFC): every slot of bus 0 and the functions
     of multi-function devices, "INFO pci BB:DD.F VVVV:DDDD class CCCCCC".
     BARs are used as firmware left them; a memory BAR that reads 0 (or lies
     above 4 GiB, out of reach of this 32-bit kernel) is assigned here from
     the 32-bit hole, clear of every other BAR.
   - Transport: the vendor capabilities (common, notify with its multiplier,
     ISR, device config) and MSI-X (cap 0x11, table and PBA in their BARs);
     reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 required), FEATURES_OK
     read back, split queues in this kernel's RAM, queue_enable, DRIVER_OK.
   - Device checks: see README.md (blk: sizes, multi-descriptor and
     indirect chains, EVENT_IDX, FLUSH, GET_ID, WRITE_ZEROES, DISCARD, reads
     past the end, RO; rng: two reads; console: a line each way; net:
     MAC and link from the config space, ARP and ICMP echo answered,
     an ARP request answered by the peer; vsock: guest_cid, a stream to a
     host port echoed, a stream from the host answered uppercased, credit
     flow control both ways, clean shutdown).
   - Interrupts stay disabled (IF=0): the nested test host cannot return from
     a protected-mode interrupt handler with IRET, and delivery can be checked
     without taking the interrupt. Each queue's MSI-X entry targets the BSP's
     LAPIC (0xFEE00000 | APIC ID << 12) with a fresh vector per request, and
     delivery is the vector's bit in the LAPIC's IRR (a bit stays set while
     IF=0, so every request gets its own vector). A masked entry must leave
     the IRR alone and set its PBA bit; unmasking must deliver it.
   - Every wait is bounded by the PIT: a device that does not answer is a
     FAIL with the reason, never a hang. */
#include "mbrt.h"

/* ------------------------------------------------------------- constants */

#define VIRTIO_VENDOR       0x1af4
#define VIRTIO_MODERN_BASE  0x1040
#define VIRTIO_ID_NET       1
#define VIRTIO_ID_BLK       2
#define VIRTIO_ID_CONSOLE   3
#define VIRTIO_ID_RNG       4
#define VIRTIO_ID_VSOCK     19

/* device_status */
#define ST_ACKNOWLEDGE      1
#define ST_DRIVER           2
#define ST_DRIVER_OK        4
#define ST_FEATURES_OK      8
#define ST_NEEDS_RESET      64
#define ST_FAILED           128

/* transport feature bits */
#define F_INDIRECT_DESC     28
#define F_EVENT_IDX         29
#define F_VERSION_1         32

/* virtio_pci_cap cfg_type */
#define CAP_COMMON  1
#define CAP_NOTIFY  2
#define CAP_ISR     3
#define CAP_DEVICE  4

/* common configuration offsets (4.1.4.3) */
#define CC_DFSELECT     0x00
#define CC_DF           0x04
#define CC_GFSELECT     0x08
#define CC_GF           0x0c
#define CC_MSIX_CONFIG  0x10
#define CC_NUM_QUEUES   0x12
#define CC_STATUS       0x14
#define CC_CFG_GEN      0x15
#define CC_Q_SELECT     0x16
#define CC_Q_SIZE       0x18
#define CC_Q_MSIX       0x1a
#define CC_Q_ENABLE     0x1c
#define CC_Q_NOTIFY_OFF 0x1e
#define CC_Q_DESC       0x20
#define CC_Q_DRIVER     0x28
#define CC_Q_DEVICE     0x30
#define NO_VECTOR       0xffff

/* split virtqueue descriptor flags */
#define DESC_NEXT       1
#define DESC_WRITE      2
#define DESC_INDIRECT   4

/* virtio-blk (5.2) */
#define BLK_F_SEG_MAX       2
#define BLK_F_RO            5
#define BLK_F_BLK_SIZE      6
#define BLK_F_FLUSH         9
#define BLK_F_DISCARD       13
#define BLK_F_WRITE_ZEROES  14
#define BLK_T_IN            0
#define BLK_T_OUT           1
#define BLK_T_FLUSH         4
#define BLK_T_GET_ID        8
#define BLK_T_DISCARD       11
#define BLK_T_WRITE_ZEROES  13
#define BLK_S_OK            0
#define BLK_S_IOERR         1
#define BLK_S_UNSUPP        2
#define BLK_ID_BYTES        20
#define SECTOR              512u

#define WAIT_MS             5000u     /* per request: generous for TCG and the nested host */
#define IRQ_WAIT_MS         1000u

/* --------------------------------------------------------- small helpers */

static inline u8 mmio_read8(u32 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u32 a) { return *(volatile u16 *)a; }
static inline void mmio_write8(u32 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(u32 a, u16 v) { *(volatile u16 *)a = v; }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}

static const char *cmdline = "";

static int has_word(const char *word) { return cmdline_has_word(cmdline, word); }

/* PIT-bounded wait for *(volatile u16 *)addr == want. */
static int wait_u16(volatile u16 *addr, u16 want, u32 ms)
{
    struct pit_timer t;
    u32 limit = ms * (PIT_HZ / 1000);
    pit_timer_start(&t);
    for (;;) {
        if (*addr == want)
            return 1;
        if (pit_timer_elapsed(&t) > limit)
            return *addr == want;
        cpu_relax();
    }
}

/* ------------------------------------------------------------------- PCI */

static u32 pci_cfg_addr(u8 bus, u8 dev, u8 fn, u8 off)
{
    return 0x80000000u | ((u32)bus << 16) | ((u32)dev << 11) | ((u32)fn << 8) | (off & 0xfc);
}
static u32 pci_read32(u8 b, u8 d, u8 f, u8 off) { outl(0xcf8, pci_cfg_addr(b, d, f, off)); return inl(0xcfc); }
static u16 pci_read16(u8 b, u8 d, u8 f, u8 off) { outl(0xcf8, pci_cfg_addr(b, d, f, off)); return inw((u16)(0xcfc + (off & 2))); }
static u8 pci_read8(u8 b, u8 d, u8 f, u8 off) { outl(0xcf8, pci_cfg_addr(b, d, f, off)); return inb((u16)(0xcfc + (off & 3))); }
static void pci_write32(u8 b, u8 d, u8 f, u8 off, u32 v) { outl(0xcf8, pci_cfg_addr(b, d, f, off)); outl(0xcfc, v); }
static void pci_write16(u8 b, u8 d, u8 f, u8 off, u16 v) { outl(0xcf8, pci_cfg_addr(b, d, f, off)); outw((u16)(0xcfc + (off & 2)), v); }

#define MAX_FUNCS 64
struct pci_func { u8 bus, dev, fn; u16 vendor, device; u32 class_rev; };
static struct pci_func funcs[MAX_FUNCS];
static u32 nfuncs;

/* Decoded 32-bit memory ranges of every BAR on the bus (for assignment). */
#define MAX_RANGES 96
static u32 range_base[MAX_RANGES], range_size[MAX_RANGES];
static u32 nranges;

static void hex2(u32 v) { puthex(v, 2); }

static void pci_enumerate(void)
{
    for (u8 dev = 0; dev < 32; dev++) {
        u8 nfn = 1;
        for (u8 fn = 0; fn < nfn; fn++) {
            u32 id = pci_read32(0, dev, fn, 0);
            if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
                continue;
            if (fn == 0 && (pci_read8(0, dev, 0, 0x0e) & 0x80))
                nfn = 8;
            u32 cr = pci_read32(0, dev, fn, 0x08);
            if (nfuncs < MAX_FUNCS) {
                struct pci_func *p = &funcs[nfuncs++];
                p->bus = 0; p->dev = dev; p->fn = fn;
                p->vendor = (u16)id; p->device = (u16)(id >> 16); p->class_rev = cr;
            }
            puts("INFO pci 00:"); hex2(dev); putc('.'); putc((char)('0' + fn));
            putc(' '); puthex(id & 0xffff, 4); putc(':'); puthex(id >> 16, 4);
            puts(" class "); puthex(cr >> 8, 6); putc('\n');
            /* Remember decoded memory BARs (header type 0 only). */
            if ((pci_read8(0, dev, fn, 0x0e) & 0x7f) != 0)
                continue;
            for (u8 i = 0; i < 6; i++) {
                u32 bar = pci_read32(0, dev, fn, (u8)(0x10 + 4 * i));
                if (bar & 1)
                    continue;
                int is64 = ((bar >> 1) & 3) == 2;
                u32 hi = is64 ? pci_read32(0, dev, fn, (u8)(0x14 + 4 * i)) : 0;
                u32 base = bar & ~0xfu;
                if (base && !hi && nranges < MAX_RANGES) {
                    /* Size it with decoding off, then restore. */
                    u16 cmd = pci_read16(0, dev, fn, 0x04);
                    pci_write16(0, dev, fn, 0x04, (u16)(cmd & ~2));
                    pci_write32(0, dev, fn, (u8)(0x10 + 4 * i), 0xffffffffu);
                    u32 mask = pci_read32(0, dev, fn, (u8)(0x10 + 4 * i)) & ~0xfu;
                    pci_write32(0, dev, fn, (u8)(0x10 + 4 * i), bar);
                    pci_write16(0, dev, fn, 0x04, cmd);
                    range_base[nranges] = base;
                    range_size[nranges++] = mask ? ~mask + 1 : 0;
                }
                if (is64)
                    i++;
            }
        }
    }
}

/* First-fit in [0xC0000000, 0xFEC00000), aligned to size, clear of every
   known range. Returns 0 when nothing fits. */
static u32 assign_window(u32 size)
{
    for (u32 a = 0xc0000000u; a && a + size <= 0xfec00000u && a + size > a; a += size) {
        int clash = 0;
        for (u32 i = 0; i < nranges; i++)
            if (a < range_base[i] + range_size[i] && range_base[i] < a + size)
                clash = 1;
        if (!clash) {
            if (nranges < MAX_RANGES) {
                range_base[nranges] = a;
                range_size[nranges++] = size;
            }
            return a;
        }
    }
    return 0;
}

/* The 32-bit address of memory BAR i, assigning it when it reads 0 or lies
   above 4 GiB. 0 on failure (an I/O BAR, an unsizable BAR, no room). */
static u32 bar_address(struct pci_func *p, u8 i, int *assigned)
{
    u8 off = (u8)(0x10 + 4 * i);
    u32 bar = pci_read32(p->bus, p->dev, p->fn, off);
    *assigned = 0;
    if (bar & 1)
        return 0;
    int is64 = ((bar >> 1) & 3) == 2;
    u32 hi = is64 ? pci_read32(p->bus, p->dev, p->fn, (u8)(off + 4)) : 0;
    if ((bar & ~0xfu) && !hi)
        return bar & ~0xfu;
    u16 cmd = pci_read16(p->bus, p->dev, p->fn, 0x04);
    pci_write16(p->bus, p->dev, p->fn, 0x04, (u16)(cmd & ~2));
    pci_write32(p->bus, p->dev, p->fn, off, 0xffffffffu);
    u32 mask = pci_read32(p->bus, p->dev, p->fn, off) & ~0xfu;
    u32 addr = mask ? assign_window(~mask + 1) : 0;
    pci_write32(p->bus, p->dev, p->fn, off, addr | (bar & 0xf));
    if (is64)
        pci_write32(p->bus, p->dev, p->fn, (u8)(off + 4), 0);
    pci_write16(p->bus, p->dev, p->fn, 0x04, cmd);
    *assigned = addr != 0;
    return addr;
}

/* `assign-bars`: zeroes the device's memory BARs (decoding off) so that
   bar_address() assigns them here, as it must where firmware did not. */
static void clear_bars(struct pci_func *p)
{
    u16 cmd = pci_read16(p->bus, p->dev, p->fn, 0x04);
    pci_write16(p->bus, p->dev, p->fn, 0x04, (u16)(cmd & ~2));
    for (u8 i = 0; i < 6; i++) {
        u8 off = (u8)(0x10 + 4 * i);
        u32 bar = pci_read32(p->bus, p->dev, p->fn, off);
        if (bar & 1)
            continue;
        pci_write32(p->bus, p->dev, p->fn, off, bar & 0xf);
        if (((bar >> 1) & 3) == 2) {
            pci_write32(p->bus, p->dev, p->fn, (u8)(off + 4), 0);
            i++;
        }
    }
    puts("INFO bars of 00:"); hex2(p->dev); putc('.'); putc((char)('0' + p->fn));
    puts(" cleared (assign-bars)\n");
}

/* ----------------------------------------------------------------- LAPIC */

static u32 lapic_base;
static u32 bsp_apic_id;
static u32 next_vector = 0x40;

static void lapic_init(void)
{
    lapic_base = (u32)rdmsr(0x1b) & 0xfffff000u;
    /* Software-enable (SVR bit 8, spurious vector 0xff): a disabled LAPIC
       drops fixed interrupts. TPR 0. IF stays clear throughout. */
    mmio_write32(lapic_base + 0xf0, 0x1ff);
    mmio_write32(lapic_base + 0x80, 0);
    bsp_apic_id = mmio_read32(lapic_base + 0x20) >> 24;
    puts("INFO lapic base "); puthex32(lapic_base);
    puts(" bsp-apic-id "); putdec(bsp_apic_id); putc('\n');
}

static int irr_set(u32 vector)
{
    return (mmio_read32(lapic_base + 0x200 + (vector / 32) * 0x10) >> (vector % 32)) & 1;
}

/* Set while a long run of requests (churn) goes on: it takes no vectors,
   so the devices checked after it still have some. */
static int vectors_paused;

/* A fresh vector, or 0 once 0x40-0xEF are used up (no more checks then). */
static u32 alloc_vector(void)
{
    if (next_vector > 0xef || vectors_paused)
        return 0;
    return next_vector++;
}

static int wait_irr(u32 vector, u32 ms)
{
    struct pit_timer t;
    u32 limit = ms * (PIT_HZ / 1000);
    pit_timer_start(&t);
    while (!irr_set(vector)) {
        if (pit_timer_elapsed(&t) > limit)
            return irr_set(vector);
        cpu_relax();
    }
    return 1;
}

/* ------------------------------------------------------ virtio transport */

struct vdesc { u64 addr; u32 len; u16 flags, next; } __attribute__((packed));
struct vused_elem { u32 id, len; } __attribute__((packed));

#define QMAX 16         /* entries we use per queue (the device's size if smaller) */

struct vq {
    u16 index, size;
    struct vdesc *desc;
    volatile u16 *avail;        /* flags, idx, ring[size], used_event */
    volatile u16 *used;         /* flags, idx, then elems at used + 2 (u16 units) */
    u32 notify_addr;
    u16 avail_idx, used_idx;
    u16 next_head;
    u16 msix_entry;
    u32 vector;                 /* LAPIC vector armed for the current request, 0 if none */
    int event_idx;              /* VIRTIO_F_EVENT_IDX negotiated: used_event is honoured */
    u16 quiet_completions;      /* completions to ask no interrupt for (used_event ahead) */
    int hold_notify;            /* batching: vq_post publishes without notifying */
};

struct vdev {
    const char *name;
    struct pci_func *pci;
    u32 common, notify, notify_mult, isr, devcfg, devcfg_len;
    u32 msix_table, msix_pba;
    u16 msix_size;
    u8 msix_cap;
    u64 offered, negotiated;
    struct vq q[3];
    u32 irq_expected, irq_seen, irq_unchecked;
    int broken;                 /* a queue timed out: later requests are skipped */
    int intx;                   /* `intx`: MSI-X left off, completions seen through INTx and ISR */
};

/* Ring memory: one 4 KiB page per queue (desc at 0, avail at 0x100, used at
   0x200 for up to 16 entries). */
#define RING_PAGES 16
static u8 ring_pages[RING_PAGES][4096] __attribute__((aligned(4096)));
static u32 ring_pages_used;

/* Begins a check line named "<dev>-<what>". */
static int dev_check_begin(struct vdev *d, int ok, const char *what)
{
    char name[40];
    u32 n = 0;
    for (const char *s = d->name; *s && n < 20; s++) name[n++] = *s;
    name[n++] = '-';
    for (const char *s = what; *s && n < 39; s++) name[n++] = *s;
    name[n] = 0;
    return check_begin(ok, name);
}

static int dev_check(struct vdev *d, int ok, const char *what, const char *detail)
{
    dev_check_begin(d, ok, what);
    puts(detail);
    putc('\n');
    return ok;
}

static u8 status_read(struct vdev *d) { return mmio_read8(d->common + CC_STATUS); }
static void status_write(struct vdev *d, u8 v) { mmio_write8(d->common + CC_STATUS, v); }

/* MSI-X table entry e: message to the BSP with `vector`, masked or not. */
static void msix_program(struct vdev *d, u16 e, u32 vector, int masked)
{
    u32 ent = d->msix_table + 16u * e;
    mmio_write32(ent + 12, 1);                          /* mask while changing */
    mmio_write32(ent + 0, 0xfee00000u | (bsp_apic_id << 12));
    mmio_write32(ent + 4, 0);
    mmio_write32(ent + 8, vector & 0xff);               /* fixed, edge */
    mmio_write32(ent + 12, masked ? 1 : 0);
}

static int msix_pending(struct vdev *d, u16 e)
{
    return (mmio_read32(d->msix_pba + 4u * (e / 32)) >> (e % 32)) & 1;
}

/* Finds the transport's capabilities; prints one check. */
static int virtio_find_caps(struct vdev *d)
{
    struct pci_func *p = d->pci;
    u32 bars[6] = {0};
    int have_common = 0, have_notify = 0, have_isr = 0, have_dev = 0;
    if (!(pci_read16(p->bus, p->dev, p->fn, 0x06) & 0x10))
        return dev_check(d, 0, "caps", "no capability list (status bit 4)");
    if (has_word("assign-bars"))
        clear_bars(p);
    u8 ptr = pci_read8(p->bus, p->dev, p->fn, 0x34) & 0xfc;
    for (u32 guard = 0; ptr && guard < 48; guard++) {
        u8 id = pci_read8(p->bus, p->dev, p->fn, ptr);
        u8 next = pci_read8(p->bus, p->dev, p->fn, (u8)(ptr + 1)) & 0xfc;
        if (id == 0x09) {
            u8 type = pci_read8(p->bus, p->dev, p->fn, (u8)(ptr + 3));
            u8 bar = pci_read8(p->bus, p->dev, p->fn, (u8)(ptr + 4));
            u32 off = pci_read32(p->bus, p->dev, p->fn, (u8)(ptr + 8));
            u32 len = pci_read32(p->bus, p->dev, p->fn, (u8)(ptr + 12));
            if (bar < 6 && type >= CAP_COMMON && type <= CAP_DEVICE) {
                if (!bars[bar]) {
                    int assigned;
                    bars[bar] = bar_address(p, bar, &assigned);
                    puts("INFO "); puts(d->name); puts(" bar"); putdec(bar); puts(" at ");
                    puthex32(bars[bar]); puts(assigned ? " (assigned here)\n" : "\n");
                }
                u32 addr = bars[bar] ? bars[bar] + off : 0;
                /* The first capability of each type is the one to use (4.1.4). */
                if (type == CAP_COMMON && !have_common && addr && len >= 0x38) {
                    d->common = addr; have_common = 1;
                } else if (type == CAP_NOTIFY && !have_notify && addr) {
                    d->notify = addr;
                    d->notify_mult = pci_read32(p->bus, p->dev, p->fn, (u8)(ptr + 16));
                    have_notify = 1;
                } else if (type == CAP_ISR && !have_isr && addr) {
                    d->isr = addr; have_isr = 1;
                } else if (type == CAP_DEVICE && !have_dev && addr) {
                    d->devcfg = addr; d->devcfg_len = len; have_dev = 1;
                }
            }
        } else if (id == 0x11 && !d->msix_cap) {
            d->msix_cap = ptr;
            u16 ctl = pci_read16(p->bus, p->dev, p->fn, (u8)(ptr + 2));
            u32 table = pci_read32(p->bus, p->dev, p->fn, (u8)(ptr + 4));
            u32 pba = pci_read32(p->bus, p->dev, p->fn, (u8)(ptr + 8));
            d->msix_size = (u16)((ctl & 0x7ff) + 1);
            u32 tbir = table & 7, pbir = pba & 7;   /* BIR 6 and 7 are reserved */
            int assigned;
            if (tbir < 6 && !bars[tbir])
                bars[tbir] = bar_address(p, (u8)tbir, &assigned);
            if (pbir < 6 && !bars[pbir])
                bars[pbir] = bar_address(p, (u8)pbir, &assigned);
            d->msix_table = tbir < 6 && bars[tbir] ? bars[tbir] + (table & ~7u) : 0;
            d->msix_pba = pbir < 6 && bars[pbir] ? bars[pbir] + (pba & ~7u) : 0;
        }
        ptr = next;
    }
    /* Memory decoding and bus mastering on (the device DMAs into our rings). */
    u16 cmd = pci_read16(p->bus, p->dev, p->fn, 0x04);
    pci_write16(p->bus, p->dev, p->fn, 0x04, (u16)(cmd | 0x06));
    int ok = have_common && have_notify && have_isr && d->msix_cap && d->msix_table && d->msix_pba;
    int need_dev = d->pci->device != VIRTIO_MODERN_BASE + VIRTIO_ID_RNG;
    if (need_dev)
        ok = ok && have_dev;
    dev_check_begin(d, ok, "caps");
    puts("common "); puthex32(d->common);
    puts(" notify "); puthex32(d->notify); puts(" mult "); putdec(d->notify_mult);
    puts(" isr "); puthex32(d->isr);
    puts(" device "); puthex32(d->devcfg);
    puts(" msix "); putdec(d->msix_size); puts(" table "); puthex32(d->msix_table);
    puts(" pba "); puthex32(d->msix_pba);
    putc('\n');
    return ok;
}

static void vq_setup_rings(struct vq *q, u16 index, u16 size)
{
    u8 *page = ring_pages[ring_pages_used++];
    memset(page, 0, 4096);
    q->index = index;
    q->size = size;
    q->desc = (struct vdesc *)page;
    q->avail = (volatile u16 *)(page + 0x100);
    q->used = (volatile u16 *)(page + 0x200);
    q->avail_idx = q->used_idx = q->next_head = 0;
    q->vector = 0;
}

/* Reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 | want & offered),
   FEATURES_OK, MSI-X vectors, queues [0, nq), DRIVER_OK. */
static int virtio_init(struct vdev *d, u64 want, u16 nq)
{
    status_write(d, 0);
    /* The device may take a while to reset: device_status reads 0 when done. */
    struct pit_timer t;
    pit_timer_start(&t);
    while (status_read(d) != 0 && pit_timer_elapsed(&t) < PIT_HZ)
        cpu_relax();
    if (status_read(d) != 0)
        return dev_check(d, 0, "reset", "device_status did not read 0 within 1 s of the reset");
    status_write(d, ST_ACKNOWLEDGE);
    status_write(d, ST_ACKNOWLEDGE | ST_DRIVER);

    mmio_write32(d->common + CC_DFSELECT, 0);
    u32 lo = mmio_read32(d->common + CC_DF);
    mmio_write32(d->common + CC_DFSELECT, 1);
    u32 hi = mmio_read32(d->common + CC_DF);
    d->offered = ((u64)hi << 32) | lo;
    puts("INFO "); puts(d->name); puts(" features offered "); puthex(d->offered, 16); putc('\n');
    if (!((d->offered >> F_VERSION_1) & 1)) {
        status_write(d, ST_FAILED);
        return dev_check(d, 0, "features", "VIRTIO_F_VERSION_1 not offered");
    }
    d->negotiated = (want & d->offered) | (1ull << F_VERSION_1);
    mmio_write32(d->common + CC_GFSELECT, 0);
    mmio_write32(d->common + CC_GF, (u32)d->negotiated);
    mmio_write32(d->common + CC_GFSELECT, 1);
    mmio_write32(d->common + CC_GF, (u32)(d->negotiated >> 32));
    status_write(d, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
    u8 st = status_read(d);
    dev_check_begin(d, (st & ST_FEATURES_OK) != 0, "features");
    puts("negotiated "); puthex(d->negotiated, 16); puts(" status "); puthex(st, 2); putc('\n');
    if (!(st & ST_FEATURES_OK)) {
        status_write(d, ST_FAILED);
        return 0;
    }

    /* MSI-X: function enabled and masked while the table is programmed;
       entry 0 for configuration changes, entry 1 + i for queue i (shared
       when the table is smaller). */
    struct pci_func *p = d->pci;
    d->intx = has_word("intx");
    if (!d->intx) {
        u16 ctl = pci_read16(p->bus, p->dev, p->fn, (u8)(d->msix_cap + 2));
        pci_write16(p->bus, p->dev, p->fn, (u8)(d->msix_cap + 2), (u16)(ctl | 0xc000));
        for (u16 e = 0; e < d->msix_size && e < 8; e++)
            msix_program(d, e, 0x30, 1);    /* parked, masked: reprogrammed per request */
        ctl = pci_read16(p->bus, p->dev, p->fn, (u8)(d->msix_cap + 2));
        pci_write16(p->bus, p->dev, p->fn, (u8)(d->msix_cap + 2), (u16)((ctl | 0x8000) & ~0x4000));
    } else {
        /* INTx: MSI-X off, INTx enabled (command bit 10 clear). */
        u16 ctl = pci_read16(p->bus, p->dev, p->fn, (u8)(d->msix_cap + 2));
        pci_write16(p->bus, p->dev, p->fn, (u8)(d->msix_cap + 2), (u16)(ctl & ~0xc000));
        u16 cmd = pci_read16(p->bus, p->dev, p->fn, 0x04);
        pci_write16(p->bus, p->dev, p->fn, 0x04, (u16)(cmd & ~0x400));
    }

    u16 want_vec = d->intx ? NO_VECTOR : 0;
    mmio_write16(d->common + CC_MSIX_CONFIG, want_vec);
    u16 cfgvec = mmio_read16(d->common + CC_MSIX_CONFIG);
    u16 numq = mmio_read16(d->common + CC_NUM_QUEUES);
    int ok = cfgvec == want_vec && numq >= nq;
    for (u16 i = 0; ok && i < nq; i++) {
        struct vq *q = &d->q[i];
        mmio_write16(d->common + CC_Q_SELECT, i);
        u16 max = mmio_read16(d->common + CC_Q_SIZE);
        if (max == 0) {
            ok = 0;
            break;
        }
        u16 size = max < QMAX ? max : QMAX;
        if (ring_pages_used == RING_PAGES) {
            ok = 0;
            break;
        }
        vq_setup_rings(q, i, size);
        q->event_idx = (int)((d->negotiated >> F_EVENT_IDX) & 1);
        q->msix_entry = (u16)(d->msix_size > 1 + i ? 1 + i : d->msix_size - 1);
        mmio_write16(d->common + CC_Q_SIZE, size);
        u16 qvec = d->intx ? NO_VECTOR : q->msix_entry;
        mmio_write16(d->common + CC_Q_MSIX, qvec);
        if (mmio_read16(d->common + CC_Q_MSIX) != qvec)
            ok = 0;
        mmio_write32(d->common + CC_Q_DESC, (u32)q->desc);
        mmio_write32(d->common + CC_Q_DESC + 4, 0);
        mmio_write32(d->common + CC_Q_DRIVER, (u32)q->avail);
        mmio_write32(d->common + CC_Q_DRIVER + 4, 0);
        mmio_write32(d->common + CC_Q_DEVICE, (u32)q->used);
        mmio_write32(d->common + CC_Q_DEVICE + 4, 0);
        u16 noff = mmio_read16(d->common + CC_Q_NOTIFY_OFF);
        q->notify_addr = d->notify + (u32)noff * d->notify_mult;
        mmio_write16(d->common + CC_Q_ENABLE, 1);
        if (mmio_read16(d->common + CC_Q_ENABLE) != 1)
            ok = 0;
        puts("INFO "); puts(d->name); puts(" queue "); putdec(i); puts(" max "); putdec(max);
        puts(" size "); putdec(size); puts(" notify "); puthex32(q->notify_addr);
        puts(" msix-entry "); putdec(q->msix_entry); putc('\n');
    }
    if (ok)
        status_write(d, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    st = status_read(d);
    ok = ok && (st & ST_DRIVER_OK) && !(st & (ST_NEEDS_RESET | ST_FAILED));
    dev_check_begin(d, ok, "init");
    puts("queues "); putdec(numq); puts(" config-vector "); putdec(cfgvec);
    puts(" status "); puthex(st, 2); putc('\n');
    if (!ok)
        status_write(d, ST_FAILED);
    return ok;
}

/* A buffer of a request: address, length, device-writable or not. */
struct seg { void *addr; u32 len; int write; };

/* Indirect tables: one per request in flight (we keep one). */
static struct vdesc indirect_table[16] __attribute__((aligned(16)));

/* Arms a fresh LAPIC vector on the queue's MSI-X entry (unmasked): the next
   interrupt for this queue sets that vector's IRR bit. */
static void vq_arm(struct vdev *d, struct vq *q)
{
    if (d->intx)
        return;
    q->vector = alloc_vector();
    if (q->vector)
        msix_program(d, q->msix_entry, q->vector, 0);
}

static void vq_publish(struct vq *q, u16 head);

/* Puts a chain on the queue (directly, or through one indirect descriptor)
   and notifies. */
static void vq_post(struct vq *q, const struct seg *s, u32 n, int indirect)
{
    u16 head = q->next_head;
    if (indirect) {
        for (u32 i = 0; i < n; i++) {
            indirect_table[i].addr = (u32)s[i].addr;
            indirect_table[i].len = s[i].len;
            indirect_table[i].flags = (u16)((s[i].write ? DESC_WRITE : 0) | (i + 1 < n ? DESC_NEXT : 0));
            indirect_table[i].next = (u16)(i + 1);
        }
        q->desc[head].addr = (u32)indirect_table;
        q->desc[head].len = n * 16;
        q->desc[head].flags = DESC_INDIRECT;
        q->desc[head].next = 0;
        q->next_head = (u16)((head + 1) % q->size);
    } else {
        /* Descriptors from next_head on, wrapping: chains use the whole table
           over time, and `next` is not always "index + 1". */
        u16 idx = head;
        for (u32 i = 0; i < n; i++) {
            u16 nxt = (u16)((idx + 1) % q->size);
            q->desc[idx].addr = (u32)s[i].addr;
            q->desc[idx].len = s[i].len;
            q->desc[idx].flags = (u16)((s[i].write ? DESC_WRITE : 0) | (i + 1 < n ? DESC_NEXT : 0));
            q->desc[idx].next = i + 1 < n ? nxt : 0;
            idx = nxt;
        }
        q->next_head = idx;
    }
    vq_publish(q, head);
}

/* Makes the chain at `head` available and notifies (unless held). */
static void vq_publish(struct vq *q, u16 head)
{
    q->avail[2 + q->avail_idx % q->size] = head;
    if (q->event_idx)                   /* used_event: interrupt once entry used_event is used */
        q->avail[2 + q->size] = (u16)(q->used_idx + q->quiet_completions);
    barrier();                          /* ring entry before idx (x86 keeps store order) */
    q->avail_idx++;
    q->avail[1] = q->avail_idx;
    barrier();
    if (!q->hold_notify)
        mmio_write16(q->notify_addr, q->index);
}

static void vq_submit(struct vdev *d, struct vq *q, const struct seg *s, u32 n, int indirect)
{
    vq_arm(d, q);
    vq_post(q, s, n, indirect);
}

/* After a completion: did its interrupt arrive? (MSI-X: the armed vector's
   IRR bit; intx: PCI status bit 3, ISR bit 0, line down after the read.) */
static void check_interrupt(struct vdev *d, struct vq *q)
{
    if (d->intx) {
        /* The INTx line shows in PCI status bit 3 until the ISR read
           (bit 0: a queue interrupt) clears it. */
        struct pci_func *p = d->pci;
        struct pit_timer t;
        pit_timer_start(&t);
        while (!(pci_read16(p->bus, p->dev, p->fn, 0x06) & 0x08) &&
               pit_timer_elapsed(&t) < IRQ_WAIT_MS * (PIT_HZ / 1000))
            cpu_relax();
        int line = (pci_read16(p->bus, p->dev, p->fn, 0x06) & 0x08) != 0;
        u8 isr = mmio_read8(d->isr);
        int dropped = !(pci_read16(p->bus, p->dev, p->fn, 0x06) & 0x08);
        d->irq_expected++;
        if (line && (isr & 1) && dropped)
            d->irq_seen++;
    } else if (q->vector) {
        d->irq_expected++;
        if (wait_irr(q->vector, IRQ_WAIT_MS)) {
            d->irq_seen++;
        } else {
            puts("INFO "); puts(d->name); puts(" no interrupt within "); putdec(IRQ_WAIT_MS);
            puts(" ms: queue "); putdec(q->index); puts(" vector "); puthex(q->vector, 2);
            puts(" msix-entry "); putdec(q->msix_entry); puts(" used.idx "); putdec(q->used[1]); putc('\n');
        }
        q->vector = 0;
    } else {
        d->irq_unchecked++;
    }
}

/* Waits for the next used element; checks its id and returns its length
   (-1 on timeout or a wrong id). Then checks the request's interrupt. */
static i32 vq_complete(struct vdev *d, struct vq *q, u16 head, const char *what)
{
    u16 want = (u16)(q->used_idx + 1);
    if (!wait_u16(&q->used[1], want, WAIT_MS)) {
        dev_check_begin(d, 0, what);
        puts("no used element within "); putdec(WAIT_MS); puts(" ms (used.idx ");
        putdec(q->used[1]); puts(", status "); puthex(status_read(d), 2); puts(")\n");
        d->broken = 1;
        return -1;
    }
    barrier();
    volatile u32 *elem = (volatile u32 *)(q->used + 2) + 2 * (q->used_idx % q->size);
    u32 id = elem[0], len = elem[1];
    q->used_idx = want;
    if (id != head) {
        dev_check_begin(d, 0, what);
        puts("used id "); putdec(id); puts(" != head "); putdec(head); putc('\n');
        return -1;
    }
    check_interrupt(d, q);
    return (i32)len;
}

/* One request: submit, complete, return used length (or -1). */
static i32 vq_request(struct vdev *d, struct vq *q, const struct seg *s, u32 n, int indirect, const char *what)
{
    if (d->broken) {
        dev_check(d, 0, what, "skipped: the device stopped answering");
        return -1;
    }
    u16 head = q->next_head;
    vq_submit(d, q, s, n, indirect);
    return vq_complete(d, q, head, what);
}

/* MSI-X masking: a masked entry sets its PBA bit and delivers nothing until
   unmasked. */
static void msix_mask_check(struct vdev *d, struct vq *q, const struct seg *s, u32 n)
{
    if (d->intx) {
        puts("INFO "); puts(d->name); puts(" msix-mask skipped: intx\n");
        return;
    }
    u32 v = alloc_vector();
    if (!v || d->broken)
        return;
    msix_program(d, q->msix_entry, v, 1);
    vq_post(q, s, n, 0);
    int done = wait_u16(&q->used[1], (u16)(q->used_idx + 1), WAIT_MS);
    if (done)
        q->used_idx++;
    pit_delay_us(20000);
    int early = irr_set(v);
    int pending = msix_pending(d, q->msix_entry);
    mmio_write32(d->msix_table + 16u * q->msix_entry + 12, 0);   /* unmask */
    int delivered = wait_irr(v, IRQ_WAIT_MS);
    int pending_after = msix_pending(d, q->msix_entry);
    dev_check_begin(d, done && !early && pending && delivered && !pending_after, "msix-mask");
    puts("completed "); putdec(done); puts(" irr-while-masked "); putdec(early);
    puts(" pba "); putdec(pending); puts(" delivered-on-unmask "); putdec(delivered);
    puts(" pba-after "); putdec(pending_after); putc('\n');
}

/* VIRTIO_F_EVENT_IDX (2.7.10): with used_event one entry ahead the device
   must not interrupt for the next completion, and must for the one after.
   Also prints the device's avail_event (it should have seen every entry). */
static void event_idx_check(struct vdev *d, struct vq *q, const struct seg *s, u32 n)
{
    if (!q->event_idx) {
        puts("INFO "); puts(d->name); puts(" event-idx skipped: VIRTIO_F_EVENT_IDX not offered\n");
        return;
    }
    if (d->intx) {
        puts("INFO "); puts(d->name); puts(" event-idx skipped: intx\n");
        return;
    }
    u32 v1 = alloc_vector(), v2 = alloc_vector();
    if (!v2 || d->broken)
        return;
    msix_program(d, q->msix_entry, v1, 0);
    q->quiet_completions = 1;
    vq_post(q, s, n, 0);
    q->quiet_completions = 0;
    int done1 = wait_u16(&q->used[1], (u16)(q->used_idx + 1), WAIT_MS);
    if (done1)
        q->used_idx++;
    pit_delay_us(20000);
    int quiet = !irr_set(v1);
    msix_program(d, q->msix_entry, v2, 0);
    vq_post(q, s, n, 0);                /* used_event stays at this entry */
    int done2 = wait_u16(&q->used[1], (u16)(q->used_idx + 1), WAIT_MS);
    if (done2)
        q->used_idx++;
    int loud = wait_irr(v2, IRQ_WAIT_MS);
    u16 avail_event = q->used[2 + 4 * q->size];
    dev_check_begin(d, done1 && done2 && quiet && loud, "event-idx");
    puts("completed "); putdec(done1 + done2); puts(" interrupt-when-suppressed "); putdec(!quiet);
    puts(" interrupt-when-asked "); putdec(loud); putc('\n');
    puts("INFO "); puts(d->name); puts(" avail_event "); putdec(avail_event);
    puts(" avail.idx "); putdec(q->avail_idx); putc('\n');
}

static void irq_summary(struct vdev *d)
{
    dev_check_begin(d, d->irq_expected > 0 && d->irq_seen == d->irq_expected, d->intx ? "intx" : "msix");
    puts("requests "); putdec(d->irq_expected); puts(" interrupts "); putdec(d->irq_seen);
    if (d->intx)
        puts(" (PCI status bit 3 up, ISR bit 0, line down after the ISR read)");
    else
        puts(" (fixed, to apic "), putdec(bsp_apic_id), puts(", seen in the IRR)");
    if (d->irq_unchecked) { puts(" unchecked "); putdec(d->irq_unchecked); }
    putc('\n');
}

/* ---------------------------------------------------------- device config */

static u32 devcfg_read32(struct vdev *d, u32 off) { return mmio_read32(d->devcfg + off); }

/* The 64-bit field at off, read consistently (config_generation, 4.1.4.3.1). */
static u64 devcfg_read64(struct vdev *d, u32 off)
{
    for (u32 tries = 0; tries < 100; tries++) {
        u8 g = mmio_read8(d->common + CC_CFG_GEN);
        u64 v = ((u64)mmio_read32(d->devcfg + off + 4) << 32) | mmio_read32(d->devcfg + off);
        if (mmio_read8(d->common + CC_CFG_GEN) == g)
            return v;
    }
    return ~0ull;
}

/* -------------------------------------------------------------- finding */

static struct vdev *find_device(struct vdev *d, const char *name, u16 type)
{
    memset(d, 0, sizeof *d);
    d->name = name;
    for (u32 i = 0; i < nfuncs; i++)
        if (funcs[i].vendor == VIRTIO_VENDOR && funcs[i].device == VIRTIO_MODERN_BASE + type) {
            d->pci = &funcs[i];
            dev_check_begin(d, 1, "found");
            puts("00:"); hex2(funcs[i].dev); putc('.'); putc((char)('0' + funcs[i].fn));
            puts(" id "); puthex(funcs[i].device, 4);
            puts(" rev "); puthex(funcs[i].class_rev & 0xff, 2); putc('\n');
            return d;
        }
    /* A transitional (0x1000-0x103f) device of this type: not what we test. */
    for (u32 i = 0; i < nfuncs; i++)
        if (funcs[i].vendor == VIRTIO_VENDOR && funcs[i].device >= 0x1000 && funcs[i].device < 0x1040 &&
            pci_read16(0, funcs[i].dev, funcs[i].fn, 0x2e) == type) {
            dev_check_begin(d, 0, "found");
            puts("only a transitional/legacy id 0x"); puthex(funcs[i].device, 4);
            puts(" (modern 0x"); puthex(VIRTIO_MODERN_BASE + type, 4); puts(" wanted)\n");
            return NULL;
        }
    dev_check_begin(d, 0, "found");
    puts("no device 1af4:"); puthex(VIRTIO_MODERN_BASE + type, 4); putc('\n');
    return NULL;
}

/* ------------------------------------------------------------ virtio-blk */

struct blk_hdr { u32 type, reserved; u64 sector; } __attribute__((packed));
struct blk_range { u64 sector; u32 num_sectors, flags; } __attribute__((packed));

static struct blk_hdr blk_hdr __attribute__((aligned(16)));
static struct blk_range blk_rng __attribute__((aligned(16)));
static volatile u8 blk_status;
static u8 wbuf[32 * 512] __attribute__((aligned(4096)));
static u8 rbuf[32 * 512] __attribute__((aligned(4096)));
static char blk_id[BLK_ID_BYTES + 1];

static u8 pattern_byte(u64 sector, u32 off, u32 seed)
{
    u32 x = (u32)sector * 2654435761u ^ (off * 40503u) ^ seed;
    return (u8)(x ^ (x >> 11) ^ (x >> 19));
}

static void fill_pattern(u8 *buf, u64 sector, u32 nsec, u32 seed)
{
    for (u32 s = 0; s < nsec; s++)
        for (u32 o = 0; o < SECTOR; o++)
            buf[s * SECTOR + o] = pattern_byte(sector + s, o, seed);
}

/* A block request: header, the data split into `nseg` pieces (sizes in
   `split`, or one piece), status. Returns the status byte, or -1. */
static i32 blk_request(struct vdev *d, u32 type, u64 sector, void *data, u32 len, int dev_writes,
                       const u32 *split, u32 nseg, int indirect, const char *what)
{
    struct seg s[8];
    u32 n = 0;
    blk_hdr.type = type;
    blk_hdr.reserved = 0;
    blk_hdr.sector = sector;
    s[n++] = (struct seg){ &blk_hdr, sizeof blk_hdr, 0 };
    if (len) {
        if (split && nseg) {
            u32 off = 0;
            for (u32 i = 0; i < nseg && n < 7; i++) {
                s[n++] = (struct seg){ (u8 *)data + off, split[i], dev_writes };
                off += split[i];
            }
        } else {
            s[n++] = (struct seg){ data, len, dev_writes };
        }
    }
    blk_status = 0xff;
    s[n++] = (struct seg){ (void *)&blk_status, 1, 1 };
    i32 used = vq_request(d, &d->q[0], s, n, indirect, what);
    if (used < 0)
        return -1;
    u32 writable = 1 + (dev_writes ? len : 0);
    if ((u32)used > writable) {
        dev_check_begin(d, 0, what);
        puts("used length "); putdec((u32)used); puts(" > device-writable "); putdec(writable); putc('\n');
        return -1;
    }
    return blk_status;
}

static void status_detail(i32 st)
{
    puts("status ");
    if (st < 0) puts("none"); else putdec((u32)st);
}

/* Writes a pattern, reads it back (read split differently), compares. */
static void blk_rw_check(struct vdev *d, const char *what, u64 sector, u32 nsec,
                         const u32 *wsplit, u32 wn, const u32 *rsplit, u32 rn, int indirect, u32 seed)
{
    u32 len = nsec * SECTOR;
    fill_pattern(wbuf, sector, nsec, seed);
    i32 ws = blk_request(d, BLK_T_OUT, sector, wbuf, len, 0, wsplit, wn, indirect, what);
    if (ws < 0)
        return;
    memset(rbuf, 0, len);
    i32 rs = blk_request(d, BLK_T_IN, sector, rbuf, len, 1, rsplit, rn, indirect, what);
    if (rs < 0)
        return;
    u32 bad = len;
    for (u32 i = 0; i < len; i++)
        if (rbuf[i] != wbuf[i]) { bad = i; break; }
    dev_check_begin(d, ws == BLK_S_OK && rs == BLK_S_OK && bad == len, what);
    puts("sector "); putdec(sector); puts(" count "); putdec(nsec);
    puts(" write-"); status_detail(ws); puts(" read-"); status_detail(rs);
    if (bad != len) { puts(" first mismatch at byte "); putdec(bad); }
    putc('\n');
}

/* Four requests of `type` published with one notification; all four must
   complete (in any order: each head once) with status OK. */
#define BATCH 4
static struct blk_hdr batch_hdr[BATCH] __attribute__((aligned(16)));
static volatile u8 batch_status[BATCH];

static int blk_batch(struct vdev *d, u32 type, u64 sector, u8 *buf, u32 nsec, const char *what)
{
    struct vq *q = &d->q[0];
    u16 heads[BATCH];
    vq_arm(d, q);
    q->hold_notify = 1;
    for (u32 i = 0; i < BATCH; i++) {
        batch_hdr[i] = (struct blk_hdr){ type, 0, sector + i * nsec };
        batch_status[i] = 0xff;
        struct seg s[3] = { { &batch_hdr[i], sizeof batch_hdr[i], 0 },
                            { buf + i * nsec * SECTOR, nsec * SECTOR, type == BLK_T_IN },
                            { (void *)&batch_status[i], 1, 1 } };
        heads[i] = q->next_head;
        vq_post(q, s, 3, 0);
    }
    q->hold_notify = 0;
    mmio_write16(q->notify_addr, q->index);
    u16 want = (u16)(q->used_idx + BATCH);
    if (!wait_u16(&q->used[1], want, WAIT_MS)) {
        dev_check_begin(d, 0, what);
        puts("used.idx "); putdec(q->used[1]); puts(", "); putdec(want); puts(" wanted within ");
        putdec(WAIT_MS); puts(" ms\n");
        d->broken = 1;
        return 0;
    }
    u32 seen = 0;
    int ok = 1;
    for (u32 k = 0; k < BATCH; k++) {
        volatile u32 *elem = (volatile u32 *)(q->used + 2) + 2 * ((u16)(q->used_idx + k) % q->size);
        u32 j = 0;
        while (j < BATCH && heads[j] != elem[0])
            j++;
        if (j == BATCH || (seen & (1u << j)))
            ok = 0;
        else
            seen |= 1u << j;
    }
    q->used_idx = want;
    check_interrupt(d, q);
    for (u32 i = 0; i < BATCH; i++)
        if (batch_status[i] != BLK_S_OK)
            ok = 0;
    if (!ok) {
        dev_check_begin(d, 0, what);
        puts("used ids not the four heads once each, or a status not OK\n");
    }
    return ok;
}

static int all_zero(const u8 *b, u32 n)
{
    for (u32 i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* A hostile driver (`hostile`): a descriptor chain that loops, an indirect
   table whose length is not a multiple of 16, then a data descriptor at
   64 GiB (outside RAM). The first two have no valid reading: the device
   must set DEVICE_NEEDS_RESET and, DRIVER_OK being set, send a
   configuration change notification (virtio 1.2, 2.1.2). After a reset and
   a new initialisation the device must work again. */
enum hostile { HOSTILE_LOOP, HOSTILE_INDIRECT_SIZE, HOSTILE_ADDRESS };
static void blk_hostile_case(struct vdev *d, u64 want, const char *what, enum hostile kind)
{
    int out_of_ram = kind == HOSTILE_ADDRESS;
    struct vq *q = &d->q[0];
    u32 v = alloc_vector();
    if (!v || d->broken)
        return;
    msix_program(d, 0, v, 0);           /* entry 0: configuration changes */
    blk_hdr = (struct blk_hdr){ BLK_T_OUT, 0, 0 };
    blk_status = 0xff;
    u16 h0 = q->next_head, h1 = (u16)((h0 + 1) % q->size), h2 = (u16)((h0 + 2) % q->size);
    q->desc[h0] = (struct vdesc){ (u32)&blk_hdr, sizeof blk_hdr, DESC_NEXT, h1 };
    if (out_of_ram) {
        q->desc[h1] = (struct vdesc){ 0x1000000000ull, SECTOR, DESC_NEXT, h2 };
        q->desc[h2] = (struct vdesc){ (u32)&blk_status, 1, DESC_WRITE, 0 };
    } else if (kind == HOSTILE_INDIRECT_SIZE) {
        indirect_table[0] = (struct vdesc){ (u32)&blk_hdr, sizeof blk_hdr, DESC_NEXT, 1 };
        indirect_table[1] = (struct vdesc){ (u32)&blk_status, 1, DESC_WRITE, 0 };
        q->desc[h0] = (struct vdesc){ (u32)indirect_table, 20, DESC_INDIRECT, 0 };
    } else {
        q->desc[h1] = (struct vdesc){ (u32)wbuf, SECTOR, DESC_NEXT, h0 };   /* back to the head */
    }
    q->next_head = (u16)((h0 + 3) % q->size);
    vq_publish(q, h0);
    struct pit_timer t;
    pit_timer_start(&t);
    while (!(status_read(d) & ST_NEEDS_RESET) && pit_timer_elapsed(&t) < IRQ_WAIT_MS * (PIT_HZ / 1000))
        cpu_relax();
    u8 st = status_read(d);
    int needs_reset = (st & ST_NEEDS_RESET) != 0;
    int cfg_irq = needs_reset && wait_irr(v, IRQ_WAIT_MS);
    int completed = q->used[1] != q->used_idx;
    /* A loop has no valid reading: NEEDS_RESET is the only answer. An
       address outside RAM may also be answered by completing the request
       (QEMU 7.2 does: DMA to an unassigned address reads as bytes through
       a bounce buffer); which one happened is printed. */
    int ok = needs_reset ? cfg_irq : (out_of_ram && completed);
    dev_check_begin(d, ok, what);
    puts(needs_reset ? "outcome needs-reset" : completed ? "outcome completed" : "outcome none");
    puts(" status "); puthex(st, 2); puts(" config-interrupt "); putdec(cfg_irq);
    puts(" used.idx "); putdec(q->used[1]); puts(" (was "); putdec(q->used_idx);
    puts(") request-status "); putdec(blk_status); putc('\n');
    /* Recovery: reset and initialise again (fresh rings), then one write
       and read back. */
    char recovered[32];
    u32 n = 0;
    for (const char *c = what; *c && n < 21; c++) recovered[n++] = *c;
    memcpy(recovered + n, "-recovered", 11);
    if (virtio_init(d, want, 1))
        blk_rw_check(d, recovered, 16, 2, NULL, 0, NULL, 0, 0, 0xc0 + (u32)kind);
}

/* "churn=R": R rounds (2..1024) over a 256-sector region from sector 64;
   round r writes sector 64 + r % 256 with seed r and reads the sector round
   r - 1 wrote into page r of churn_pages, which the guest itself never
   writes. So the device keeps writing guest RAM (data, used ring) while a
   snapshot or migration is taken, and some of those pages are written only
   by the device: at the end every page must still hold what its round
   read, and every sector of the region its last round's pattern.
   Progress every 100 rounds. */
#define CHURN_FIRST 64
#define CHURN_SPAN 256
#define CHURN_MAX 1024
static u8 churn_pages[CHURN_MAX + 1][4096] __attribute__((aligned(4096)));

static int churn_page_holds(u32 r)
{
    fill_pattern(wbuf, CHURN_FIRST + (r - 1) % CHURN_SPAN, 1, r - 1);
    return memcmp(churn_pages[r], wbuf, SECTOR) == 0;
}

static void blk_churn_rounds(struct vdev *d, u64 cap)
{
    u32 len;
    const char *v = cmdline_value(cmdline, "churn", &len);
    int ok = 1;
    u32 rounds = v ? parse_decimal(v, len, &ok) : 0;
    if (!ok || rounds < 2 || rounds > CHURN_MAX || cap < CHURN_FIRST + CHURN_SPAN) {
        dev_check_begin(d, 0, "churn");
        puts("churn= needs a round count of 2 to "); putdec(CHURN_MAX); puts(" and a disk of at least ");
        putdec(CHURN_FIRST + CHURN_SPAN); puts(" sectors\n");
        return;
    }
    for (u32 r = 1; r <= rounds; r++) {
        u64 sector = CHURN_FIRST + r % CHURN_SPAN, previous = CHURN_FIRST + (r - 1) % CHURN_SPAN;
        fill_pattern(wbuf, sector, 1, r);
        i32 ws = blk_request(d, BLK_T_OUT, sector, wbuf, SECTOR, 0, NULL, 0, 0, "churn");
        i32 rs = ws < 0 ? -1 : blk_request(d, BLK_T_IN, previous, churn_pages[r], SECTOR, 1, NULL, 0, 0, "churn");
        if (ws != BLK_S_OK || rs != BLK_S_OK || (r > 1 && !churn_page_holds(r))) {
            dev_check_begin(d, 0, "churn");
            puts("round "); putdec(r); puts(" write-"); status_detail(ws); puts(" read-"); status_detail(rs);
            puts(" sector "); putdec(previous); puts(r > 1 ? " (the previous round's pattern wanted)\n" : "\n");
            return;
        }
        if (r % 100 == 0) { puts("INFO churn round "); putdec(r); putc('\n'); }
    }
    /* What the device put in guest RAM is still there (round 1 read a
       sector nothing had written). */
    for (u32 r = 2; r <= rounds; r++) {
        if (!churn_page_holds(r)) {
            dev_check_begin(d, 0, "churn-pages");
            puts("page of round "); putdec(r); puts(" no longer holds what its read returned\n");
            return;
        }
    }
    for (u32 i = 0; i < CHURN_SPAN; i++) {
        /* The last round r <= rounds with r % SPAN == i (round 0 wrote nothing). */
        u32 last = rounds - ((rounds - i) % CHURN_SPAN + CHURN_SPAN) % CHURN_SPAN;
        if (last == 0 || last > rounds)
            continue;
        u64 sector = CHURN_FIRST + i;
        i32 rs = blk_request(d, BLK_T_IN, sector, rbuf, SECTOR, 1, NULL, 0, 0, "churn-final");
        fill_pattern(wbuf, sector, 1, last);
        if (rs != BLK_S_OK || memcmp(rbuf, wbuf, SECTOR) != 0) {
            dev_check_begin(d, 0, "churn-final");
            puts("sector "); putdec(sector); puts(" read-"); status_detail(rs);
            puts(" (round "); putdec(last); puts("'s pattern wanted)\n");
            return;
        }
    }
    dev_check_begin(d, 1, "churn");
    puts("rounds "); putdec(rounds); puts(", pages and region checked\n");
}

static void blk_churn(struct vdev *d, u64 cap)
{
    vectors_paused = 1;
    blk_churn_rounds(d, cap);
    vectors_paused = 0;
}

static void test_blk(void)
{
    static struct vdev dev;
    struct vdev *d = find_device(&dev, "blk", VIRTIO_ID_BLK);
    if (!d || !virtio_find_caps(d))
        return;
    int want_ro = has_word("ro");
    u64 want = (1ull << BLK_F_SEG_MAX) | (1ull << BLK_F_RO) | (1ull << BLK_F_BLK_SIZE) |
               (1ull << BLK_F_FLUSH) | (1ull << BLK_F_DISCARD) | (1ull << BLK_F_WRITE_ZEROES) |
               (1ull << F_INDIRECT_DESC) | (1ull << F_EVENT_IDX);
    if (!virtio_init(d, want, 1))
        return;
    u64 neg = d->negotiated;

    u64 cap = devcfg_read64(d, 0);
    u32 seg_max = (neg >> BLK_F_SEG_MAX) & 1 ? devcfg_read32(d, 12) : 0;
    u32 blk_size = (neg >> BLK_F_BLK_SIZE) & 1 ? devcfg_read32(d, 20) : 512;
    u32 exp_len;
    const char *exp = cmdline_value(cmdline, "sectors", &exp_len);
    int ok_num = 1;
    u32 exp_sectors = exp ? parse_decimal(exp, exp_len, &ok_num) : 0;
    dev_check_begin(d, cap >= 128 && cap != ~0ull && (!exp || (ok_num && cap == exp_sectors)), "capacity");
    puts("sectors "); putdec(cap); puts(" blk_size "); putdec(blk_size);
    puts(" seg_max "); putdec(seg_max);
    if (exp) { puts(" expected "); putsn(exp, exp_len); }
    putc('\n');
    if (cap < 128 || cap == ~0ull)
        return;
    int ro = (neg >> BLK_F_RO) & 1;
    dev_check_begin(d, ro == want_ro, "ro-feature");
    puts(ro ? "VIRTIO_BLK_F_RO offered" : "VIRTIO_BLK_F_RO not offered");
    puts(want_ro ? " (ro asked for)\n" : " (read-write asked for)\n");

    if (!ro) {
        /* Sizes: one sector, 4 KiB, 16 sectors in four uneven pieces read
           back in three, the last sector; the first write also checks
           masking on its queue's MSI-X entry. */
        blk_rw_check(d, "rw-1-sector", 0, 1, NULL, 0, NULL, 0, 0, 0x11);
        blk_rw_check(d, "rw-4k", 8, 8, NULL, 0, NULL, 0, 0, 0x22);
        static const u32 wsplit[4] = { 512, 3584, 2048, 2048 };
        static const u32 rsplit[3] = { 1536, 4096, 2560 };
        if (!seg_max || seg_max >= 4)
            blk_rw_check(d, "rw-multi-descriptor", 32, 16, wsplit, 4, rsplit, 3, 0, 0x33);
        else
            puts("INFO blk rw-multi-descriptor skipped: seg_max < 4\n");
        blk_rw_check(d, "rw-last-sector", cap - 1, 1, NULL, 0, NULL, 0, 0, 0x44);
        blk_rw_check(d, "rw-32-sectors", 96, 32, NULL, 0, NULL, 0, 0, 0x55);
        if ((neg >> F_INDIRECT_DESC) & 1) {
            static const u32 isplit[2] = { 1024, 1024 };
            blk_rw_check(d, "rw-indirect", 48, 4, isplit, 2, isplit, 2, 1, 0x66);
        } else {
            puts("INFO blk rw-indirect skipped: VIRTIO_F_INDIRECT_DESC not offered\n");
        }
        /* Four writes and then four reads, each batch behind one notify. */
        fill_pattern(wbuf, 128, 4 * 4, 0xbb);
        memset(rbuf, 0, 4 * 4 * SECTOR);
        if (blk_batch(d, BLK_T_OUT, 128, wbuf, 4, "batch") && blk_batch(d, BLK_T_IN, 128, rbuf, 4, "batch"))
            dev_check(d, memcmp(rbuf, wbuf, 4 * 4 * SECTOR) == 0, "batch",
                      "4 writes, then 4 reads of 4 sectors, one notification each: read back equal");
        /* Masked MSI-X entry on a 1-sector write. */
        blk_hdr.type = BLK_T_OUT; blk_hdr.reserved = 0; blk_hdr.sector = 1;
        fill_pattern(wbuf, 1, 1, 0x77);
        blk_status = 0xff;
        struct seg ms[3] = { { &blk_hdr, sizeof blk_hdr, 0 }, { wbuf, SECTOR, 0 }, { (void *)&blk_status, 1, 1 } };
        msix_mask_check(d, &d->q[0], ms, 3);
        event_idx_check(d, &d->q[0], ms, 3);
    } else {
        memset(rbuf, 0, SECTOR);
        i32 rs = blk_request(d, BLK_T_IN, 0, rbuf, SECTOR, 1, NULL, 0, 0, "ro-read");
        if (rs >= 0) {
            dev_check_begin(d, rs == BLK_S_OK, "ro-read"); status_detail(rs); putc('\n');
        }
        fill_pattern(wbuf, 0, 1, 0x99);
        i32 ws = blk_request(d, BLK_T_OUT, 0, wbuf, SECTOR, 0, NULL, 0, 0, "ro-write-refused");
        if (ws >= 0) {
            dev_check_begin(d, ws == BLK_S_IOERR, "ro-write-refused");
            status_detail(ws); puts(" (IOERR wanted)\n");
        }
        memset(wbuf, 0, SECTOR);
        rs = blk_request(d, BLK_T_IN, 0, wbuf, SECTOR, 1, NULL, 0, 0, "ro-unchanged");
        if (rs >= 0)
            dev_check(d, rs == BLK_S_OK && memcmp(wbuf, rbuf, SECTOR) == 0, "ro-unchanged",
                      "sector 0 reads the same after the refused write");
    }

    if ((neg >> BLK_F_FLUSH) & 1) {
        i32 fs = blk_request(d, BLK_T_FLUSH, 0, NULL, 0, 0, NULL, 0, 0, "flush");
        if (fs >= 0) {
            dev_check_begin(d, fs == BLK_S_OK, "flush"); status_detail(fs); putc('\n');
        }
    } else {
        puts("INFO blk flush skipped: VIRTIO_BLK_F_FLUSH not offered\n");
    }

    memset(blk_id, 0, sizeof blk_id);
    i32 is = blk_request(d, BLK_T_GET_ID, 0, blk_id, BLK_ID_BYTES, 1, NULL, 0, 0, "get-id");
    if (is >= 0) {
        u32 slen;
        const char *serial = cmdline_value(cmdline, "serial", &slen);
        u32 idlen = strlen(blk_id);
        int ok = is == BLK_S_OK && (!serial || (slen == idlen && memcmp(serial, blk_id, slen) == 0));
        dev_check_begin(d, ok, "get-id");
        status_detail(is); puts(" id \""); putsn(blk_id, BLK_ID_BYTES); putc('"');
        if (serial) { puts(" expected \""); putsn(serial, slen); putc('"'); }
        putc('\n');
    }

    if (!ro && ((neg >> BLK_F_WRITE_ZEROES) & 1)) {
        fill_pattern(wbuf, 64, 8, 0x88);
        i32 ws = blk_request(d, BLK_T_OUT, 64, wbuf, 8 * SECTOR, 0, NULL, 0, 0, "write-zeroes");
        blk_rng = (struct blk_range){ 64, 8, 0 };
        i32 zs = ws < 0 ? -1 : blk_request(d, BLK_T_WRITE_ZEROES, 0, &blk_rng, sizeof blk_rng, 0, NULL, 0, 0, "write-zeroes");
        memset(rbuf, 0xa5, 8 * SECTOR);
        i32 rs = zs < 0 ? -1 : blk_request(d, BLK_T_IN, 64, rbuf, 8 * SECTOR, 1, NULL, 0, 0, "write-zeroes");
        if (rs >= 0) {
            dev_check_begin(d, ws == BLK_S_OK && zs == BLK_S_OK && rs == BLK_S_OK && all_zero(rbuf, 8 * SECTOR),
                            "write-zeroes");
            puts("sectors 64-71 "); status_detail(zs);
            puts(all_zero(rbuf, 8 * SECTOR) ? " read back zeros\n" : " NOT zero on read back\n");
        }
    } else {
        puts("INFO blk write-zeroes skipped: read-only or VIRTIO_BLK_F_WRITE_ZEROES not offered\n");
    }
    if (!ro && ((neg >> BLK_F_DISCARD) & 1)) {
        /* Discarded sectors read back unspecified data (5.2.6): only the
           status is checked; whether they read zero is printed. */
        blk_rng = (struct blk_range){ 72, 8, 0 };
        i32 ds = blk_request(d, BLK_T_DISCARD, 0, &blk_rng, sizeof blk_rng, 0, NULL, 0, 0, "discard");
        if (ds >= 0) {
            dev_check_begin(d, ds == BLK_S_OK, "discard"); puts("sectors 72-79 "); status_detail(ds); putc('\n');
            if (blk_request(d, BLK_T_IN, 72, rbuf, 8 * SECTOR, 1, NULL, 0, 0, "discard") == BLK_S_OK) {
                puts("INFO blk discarded sectors read back ");
                puts(all_zero(rbuf, 8 * SECTOR) ? "zeros\n" : "data\n");
            }
        }
    } else {
        puts("INFO blk discard skipped: read-only or VIRTIO_BLK_F_DISCARD not offered\n");
    }

    /* Past the end: wholly beyond, and straddling the last sector. */
    i32 ps = blk_request(d, BLK_T_IN, cap, rbuf, SECTOR, 1, NULL, 0, 0, "read-past-end");
    i32 ss = ps < 0 ? -1 : blk_request(d, BLK_T_IN, cap - 1, rbuf, 2 * SECTOR, 1, NULL, 0, 0, "read-past-end");
    if (ss >= 0) {
        dev_check_begin(d, ps == BLK_S_IOERR && ss == BLK_S_IOERR, "read-past-end");
        puts("at capacity "); status_detail(ps); puts(", straddling "); status_detail(ss); puts(" (IOERR wanted)\n");
    }
    i32 us = blk_request(d, 0xff, 0, NULL, 0, 0, NULL, 0, 0, "unsupported-type");
    if (us >= 0) {
        dev_check_begin(d, us == BLK_S_UNSUPP, "unsupported-type"); puts("type 255 "); status_detail(us);
        puts(" (UNSUPP wanted)\n");
    }
    irq_summary(d);
    u8 st = status_read(d);
    dev_check_begin(d, !(st & (ST_NEEDS_RESET | ST_FAILED)), "status-end");
    puts("status "); puthex(st, 2); putc('\n');
    if (cmdline_value(cmdline, "churn", &exp_len) && !ro)
        blk_churn(d, cap);
    if (has_word("hostile") && !ro && !d->intx) {
        blk_hostile_case(d, want, "hostile-loop", HOSTILE_LOOP);
        if ((neg >> F_INDIRECT_DESC) & 1)
            blk_hostile_case(d, want, "hostile-indirect-size", HOSTILE_INDIRECT_SIZE);
        blk_hostile_case(d, want, "hostile-address", HOSTILE_ADDRESS);
    }
}

/* ------------------------------------------------------------ virtio-rng */

static u8 rng_a[64] __attribute__((aligned(64))), rng_b[64] __attribute__((aligned(64)));

/* Fills buf (64 bytes) with as many requests as it takes (at most 16). */
static int rng_fill(struct vdev *d, u8 *buf, const char *what)
{
    u32 got = 0, requests = 0;
    while (got < 64 && requests < 16) {
        struct seg s = { buf + got, 64 - got, 1 };
        i32 n = vq_request(d, &d->q[0], &s, 1, 0, what);
        requests++;
        if (n < 0)
            return 0;
        if ((u32)n > 64 - got) {
            dev_check_begin(d, 0, what); puts("used length "); putdec((u32)n);
            puts(" > buffer "); putdec(64 - got); putc('\n');
            return 0;
        }
        got += (u32)n;
    }
    dev_check_begin(d, got == 64, what);
    puts("64 bytes wanted, "); putdec(got); puts(" in "); putdec(requests); puts(" requests\n");
    return got == 64;
}

static void test_rng(void)
{
    static struct vdev dev;
    struct vdev *d = find_device(&dev, "rng", VIRTIO_ID_RNG);
    if (!d || !virtio_find_caps(d) || !virtio_init(d, 0, 1))
        return;
    memset(rng_a, 0, 64);
    memset(rng_b, 0, 64);
    int a = rng_fill(d, rng_a, "read-1");
    int b = rng_fill(d, rng_b, "read-2");
    if (a && b) {
        puts("INFO rng first bytes ");
        for (u32 i = 0; i < 8; i++) puthex(rng_a[i], 2);
        putc(' ');
        for (u32 i = 0; i < 8; i++) puthex(rng_b[i], 2);
        putc('\n');
        dev_check(d, memcmp(rng_a, rng_b, 64) != 0 && !all_zero(rng_a, 64), "differ",
                  "two 64-byte reads differ and are not all zero");
    }
    irq_summary(d);
}

/* -------------------------------------------------------- virtio-console */

static const char console_line[] = "VIRTIO-CONSOLE-OK\n";
static u8 con_rx[4][64] __attribute__((aligned(64)));
static char con_line[128];

static void test_console(void)
{
    static struct vdev dev;
    struct vdev *d = find_device(&dev, "console", VIRTIO_ID_CONSOLE);
    /* No MULTIPORT: port 0 only, queues 0 (receiveq) and 1 (transmitq). */
    if (!d || !virtio_find_caps(d) || !virtio_init(d, 0, 2))
        return;
    static char txbuf[sizeof console_line];
    memcpy(txbuf, console_line, sizeof console_line - 1);
    struct seg s = { txbuf, sizeof console_line - 1, 0 };
    i32 n = vq_request(d, &d->q[1], &s, 1, 0, "tx");
    if (n >= 0)
        dev_check(d, 1, "tx", "port 0 transmitq took \"VIRTIO-CONSOLE-OK\\n\"");
    if (has_word("console-echo")) {
        /* Four receive buffers (one vector armed for the first answer),
           then bytes until a newline (bounded). */
        struct vq *q = &d->q[0];
        u16 heads[4];
        vq_arm(d, q);
        for (u32 i = 0; i < 4; i++) {
            struct seg r = { con_rx[i], 64, 1 };
            heads[i] = q->next_head;
            vq_post(q, &r, 1, 0);
        }
        u32 len = 0;
        int newline = 0, error = 0;
        for (u32 i = 0; i < 4 && !newline && !error; i++) {
            i32 got = vq_complete(d, q, heads[i], "rx");
            if (got > 64) {
                dev_check_begin(d, 0, "rx"); puts("used length "); putdec((u32)got);
                puts(" > buffer 64\n");
            }
            if (got < 0 || got > 64) { error = 1; break; }
            for (i32 j = 0; j < got && len < sizeof con_line - 1; j++) {
                char c = (char)con_rx[i][j];
                if (c == '\n') { newline = 1; break; }
                con_line[len++] = c;
            }
        }
        con_line[len] = 0;
        if (!error) {
            puts("INFO console received ");
            putsn(con_line, len);
            putc('\n');
            dev_check_begin(d, newline, "rx");
            putdec(len); puts(" bytes before the newline\n");
        }
    }
    irq_summary(d);
}

/* ------------------------------------------------------------ virtio-net */

/* No offloads and no MRG_RXBUF: every frame sits whole in one buffer behind
   the 12-byte virtio_net_hdr_v1 (flags, gso_type, hdr_len, gso_size,
   csum_start, csum_offset, num_buffers), which VERSION_1 always has. */
#define NET_F_MAC           5
#define NET_F_STATUS        16
#define NET_S_LINK_UP       1
#define NET_HDR             12
#define NET_RXBUF           2048      /* >= NET_HDR + 1514, as 5.1.6.3.1 asks without MRG_RXBUF */
#define NET_NRX             8
#define ETH_HLEN            14
#define ETH_MAX             1514
#define ETHERTYPE_IPV4      0x0800
#define ETHERTYPE_ARP       0x0806
#define NET_RX_INFO_LINES   40        /* "INFO net rx" lines printed at most */
#define NET_DEFAULT_SECONDS 20

static u8 net_rx[NET_NRX][NET_RXBUF] __attribute__((aligned(64)));
static u8 net_tx[NET_HDR + ETH_MAX] __attribute__((aligned(64)));
static u8 net_mac[6], net_ip[4], net_peer[4], net_peer_mac[6];
static const u8 eth_broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

struct net_state {
    int want_peer, peer_known, arp_answered;
    u32 echoes, pings_wanted, rx_frames, rx_ignored, rx_info_lines, arp_requests;
    int failed;                 /* a FAIL line was printed: the loop stops */
};

static u16 be16(const u8 *p) { return (u16)((u16)p[0] << 8 | p[1]); }
static void put_be16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }

/* RFC 1071: the one's complement of the one's complement sum. Over a
   header that carries its checksum the result is 0. */
static u16 inet_checksum(const u8 *p, u32 n)
{
    u32 sum = 0;
    for (u32 i = 0; i + 1 < n; i += 2)
        sum += (u32)p[i] << 8 | p[i + 1];
    if (n & 1)
        sum += (u32)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

static void put_mac(const u8 *m)
{
    for (u32 i = 0; i < 6; i++) {
        if (i) putc(':');
        puthex(m[i], 2);
    }
}

static void put_ip(const u8 *a)
{
    for (u32 i = 0; i < 4; i++) {
        if (i) putc('.');
        putdec(a[i]);
    }
}

/* "A.B.C.D" in p[0..len); 0 when it is not one. */
static int parse_ipv4(const char *p, u32 len, u8 out[4])
{
    u32 part = 0, start = 0;
    for (u32 i = 0; i <= len; i++) {
        if (i < len && p[i] != '.')
            continue;
        int ok;
        u32 v = parse_decimal(p + start, i - start, &ok);
        if (!ok || v > 255 || part == 4)
            return 0;
        out[part++] = (u8)v;
        start = i + 1;
    }
    return part == 4;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "xx:xx:xx:xx:xx:xx" in p[0..len); 0 when it is not one. */
static int parse_mac(const char *p, u32 len, u8 out[6])
{
    if (len != 17)
        return 0;
    for (u32 i = 0; i < 6; i++) {
        int hi = hex_digit(p[3 * i]), lo = hex_digit(p[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && p[3 * i + 2] != ':'))
            return 0;
        out[i] = (u8)(hi << 4 | lo);
    }
    return 1;
}

/* The run's clock: TSC ticks per millisecond, measured over 50 ms of PIT
   channel 2. The PIT itself cannot time the whole run: every bounded wait
   inside it (requests, interrupts) restarts channel 2. */
static u64 tsc_per_ms;

static void tsc_calibrate(void)
{
    struct pit_timer t;
    pit_timer_start(&t);
    u64 a = rdtsc();
    while (pit_timer_elapsed(&t) < PIT_HZ / 20)
        cpu_relax();
    tsc_per_ms = udiv64(rdtsc() - a, 50, NULL);
    if (!tsc_per_ms)
        tsc_per_ms = 1;
}

/* Sends the frame in net_tx (after the header), padded to the 60-byte
   Ethernet minimum, through the transmit queue (1). */
static int net_send(struct vdev *d, u32 len, const char *what)
{
    memset(net_tx, 0, NET_HDR);          /* no checksum or segmentation offload asked for */
    if (len < 60) {
        memset(net_tx + NET_HDR + len, 0, 60 - len);
        len = 60;
    }
    struct seg s = { net_tx, NET_HDR + len, 0 };
    return vq_request(d, &d->q[1], &s, 1, 0, what) >= 0;
}

/* An ARP packet from this guest (RFC 826, Ethernet/IPv4) into net_tx. */
static u32 net_arp_frame(u16 oper, const u8 *eth_dst, const u8 *tha, const u8 *tpa)
{
    u8 *f = net_tx + NET_HDR;
    memcpy(f, eth_dst, 6);
    memcpy(f + 6, net_mac, 6);
    put_be16(f + 12, ETHERTYPE_ARP);
    u8 *a = f + ETH_HLEN;
    put_be16(a, 1);
    put_be16(a + 2, ETHERTYPE_IPV4);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, oper);
    memcpy(a + 8, net_mac, 6);
    memcpy(a + 14, net_ip, 4);
    memcpy(a + 18, tha, 6);
    memcpy(a + 24, tpa, 4);
    return ETH_HLEN + 28;
}

static void net_fail(struct vdev *d, struct net_state *s, const char *what, const char *why, u32 len)
{
    dev_check_begin(d, 0, what);
    puts(why);
    puts(" (frame length "); putdec(len); puts(")\n");
    s->failed = 1;
}

static void net_arp(struct vdev *d, struct net_state *s, const u8 *f, u32 len)
{
    const u8 *a = f + ETH_HLEN;
    if (len < ETH_HLEN + 28 || be16(a) != 1 || be16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4) {
        s->rx_ignored++;
        return;
    }
    u16 oper = be16(a + 6);
    if (oper == 1 && memcmp(a + 24, net_ip, 4) == 0) {
        u8 sha[6], spa[4];
        memcpy(sha, a + 8, 6);
        memcpy(spa, a + 14, 4);
        if (!net_send(d, net_arp_frame(2, sha, sha, spa), "arp-reply")) {
            s->failed = 1;
            return;
        }
        if (!s->arp_answered) {
            dev_check_begin(d, 1, "arp-reply");
            puts("who-has "); put_ip(net_ip); puts(" from "); put_ip(spa); puts(" ");
            put_mac(sha); puts(": answered is-at "); put_mac(net_mac); putc('\n');
        }
        s->arp_answered++;
    } else if (oper == 2 && s->want_peer && memcmp(a + 14, net_peer, 4) == 0 &&
               memcmp(a + 24, net_ip, 4) == 0) {
        if (!s->peer_known) {
            memcpy(net_peer_mac, a + 8, 6);
            s->peer_known = 1;
            dev_check_begin(d, 1, "arp-peer");
            puts("mac "); put_mac(net_peer_mac); puts(" for "); put_ip(net_peer);
            puts(" after "); putdec(s->arp_requests); puts(" request(s)\n");
        }
    } else {
        s->rx_ignored++;
    }
}

static void net_ipv4(struct vdev *d, struct net_state *s, const u8 *f, u32 len)
{
    const u8 *ip = f + ETH_HLEN;
    u32 avail = len - ETH_HLEN;
    if (avail < 20 || (ip[0] >> 4) != 4) {
        s->rx_ignored++;
        return;
    }
    u32 ihl = (ip[0] & 0xfu) * 4u, total = be16(ip + 2);
    if (ihl < 20 || total < ihl || total > avail) {
        net_fail(d, s, "rx-ipv4", "IPv4 header or total length beyond the frame", len);
        return;
    }
    if (memcmp(ip + 16, net_ip, 4) != 0 || ip[9] != 1 || ETH_HLEN + total > ETH_MAX) {
        s->rx_ignored++;
        return;
    }
    if (inet_checksum(ip, ihl) != 0) {
        net_fail(d, s, "rx-ipv4-checksum", "IPv4 header checksum wrong on a packet to this guest", len);
        return;
    }
    if (be16(ip + 6) & 0x3fff) {        /* MF or a fragment offset: not reassembled here */
        s->rx_ignored++;
        return;
    }
    const u8 *icmp = ip + ihl;
    u32 icmp_len = total - ihl;
    if (icmp_len < 8 || icmp[0] != 8 || icmp[1] != 0) {
        s->rx_ignored++;
        return;
    }
    if (inet_checksum(icmp, icmp_len) != 0) {
        net_fail(d, s, "rx-icmp-checksum", "ICMP echo request checksum wrong", len);
        return;
    }
    /* The reply: addresses swapped, TTL 64, ICMP type 0, both checksums
       computed again; identifier, sequence and data kept. */
    u8 *r = net_tx + NET_HDR;
    memcpy(r, f + 6, 6);
    memcpy(r + 6, net_mac, 6);
    put_be16(r + 12, ETHERTYPE_IPV4);
    u8 *rip = r + ETH_HLEN;
    memcpy(rip, ip, total);
    memcpy(rip + 12, net_ip, 4);
    memcpy(rip + 16, ip + 12, 4);
    rip[8] = 64;
    put_be16(rip + 10, 0);
    put_be16(rip + 10, inet_checksum(rip, ihl));
    u8 *ricmp = rip + ihl;
    ricmp[0] = 0;
    put_be16(ricmp + 2, 0);
    put_be16(ricmp + 2, inet_checksum(ricmp, icmp_len));
    if (!net_send(d, ETH_HLEN + total, "echo-reply")) {
        s->failed = 1;
        return;
    }
    s->echoes++;
    puts("INFO net echo from "); put_ip(ip + 12); puts(" id "); putdec(be16(icmp + 4));
    puts(" seq "); putdec(be16(icmp + 6)); puts(" bytes "); putdec(icmp_len - 8); puts(" answered\n");
}

/* One used receive buffer: header and frame checked, then handled. */
static void net_frame(struct vdev *d, struct net_state *s, const u8 *buf, u32 used)
{
    if (used > NET_RXBUF) {
        dev_check_begin(d, 0, "rx-length");
        puts("used length "); putdec(used); puts(" > buffer "); putdec(NET_RXBUF); putc('\n');
        s->failed = 1;
        return;
    }
    if (used < NET_HDR + ETH_HLEN) {
        dev_check_begin(d, 0, "rx-length");
        puts("used length "); putdec(used); puts(": no room for the header and an Ethernet header\n");
        s->failed = 1;
        return;
    }
    /* Nothing was negotiated that lets the device leave a checksum to us
       (GUEST_CSUM) or hand over a segment (GUEST_TSO*). */
    if (buf[0] != 0 || buf[1] != 0) {
        dev_check_begin(d, 0, "rx-header");
        puts("flags "); puthex(buf[0], 2); puts(" gso_type "); puthex(buf[1], 2);
        puts(" without any offload negotiated\n");
        s->failed = 1;
        return;
    }
    const u8 *f = buf + NET_HDR;
    u32 len = used - NET_HDR;
    u16 type = be16(f + 12);
    s->rx_frames++;
    if (s->rx_info_lines < NET_RX_INFO_LINES) {
        s->rx_info_lines++;
        puts("INFO net rx "); putdec(len); puts(" bytes type "); puthex(type, 4);
        puts(" from "); put_mac(f + 6); puts(" to "); put_mac(f); puts(" num_buffers ");
        putdec((u32)buf[10] | (u32)buf[11] << 8); putc('\n');
    }
    int for_us = memcmp(f, net_mac, 6) == 0 || (f[0] & 1);    /* ours, broadcast or multicast */
    if (!for_us)
        s->rx_ignored++;
    else if (type == ETHERTYPE_ARP)
        net_arp(d, s, f, len);
    else if (type == ETHERTYPE_IPV4)
        net_ipv4(d, s, f, len);
    else
        s->rx_ignored++;
}

static void test_net(void)
{
    static struct vdev dev;
    static struct net_state st;
    struct net_state *s = &st;
    u32 len;
    const char *ip = cmdline_value(cmdline, "ip", &len);
    if (!ip || !parse_ipv4(ip, len, net_ip)) {
        check(0, "net-args", "ip=A.B.C.D wanted (the guest's address)");
        return;
    }
    const char *peer = cmdline_value(cmdline, "peer", &len);
    s->want_peer = peer != NULL;
    if (peer && !parse_ipv4(peer, len, net_peer)) {
        check(0, "net-args", "peer= is not an IPv4 address");
        return;
    }
    int ok_num = 1;
    const char *pings = cmdline_value(cmdline, "pings", &len);
    s->pings_wanted = pings ? parse_decimal(pings, len, &ok_num) : 0;
    u32 seconds = NET_DEFAULT_SECONDS;
    const char *secs = cmdline_value(cmdline, "seconds", &len);
    if (ok_num && secs)
        seconds = parse_decimal(secs, len, &ok_num);
    u8 want_mac[6];
    const char *mac = cmdline_value(cmdline, "mac", &len);
    if (!ok_num || (mac && !parse_mac(mac, len, want_mac)) || seconds == 0) {
        check(0, "net-args", "pings=N, seconds=N (> 0) and mac=xx:xx:xx:xx:xx:xx take those forms");
        return;
    }

    struct vdev *d = find_device(&dev, "net", VIRTIO_ID_NET);
    if (!d || !virtio_find_caps(d) || !virtio_init(d, (1ull << NET_F_MAC) | (1ull << NET_F_STATUS), 2))
        return;
    int has_mac = (d->negotiated >> NET_F_MAC) & 1, has_status = (d->negotiated >> NET_F_STATUS) & 1;
    if (has_mac) {
        for (u32 i = 0; i < 6; i++)
            net_mac[i] = mmio_read8(d->devcfg + i);
    } else {
        static const u8 own[6] = { 0x52, 0x54, 0x00, 0xde, 0xf1, 0xec };   /* locally administered */
        memcpy(net_mac, own, 6);
    }
    u16 link = has_status ? mmio_read16(d->devcfg + 6) : 0;
    int config_ok = (!has_status || (link & NET_S_LINK_UP)) && (!mac || (has_mac && memcmp(want_mac, net_mac, 6) == 0));
    dev_check_begin(d, config_ok, "config");
    puts("mac "); put_mac(net_mac); puts(has_mac ? " (VIRTIO_NET_F_MAC)" : " (chosen here: no VIRTIO_NET_F_MAC)");
    if (mac) { puts(" expected "); putsn(mac, 17); }
    if (has_status) { puts(" status "); puthex(link, 4); puts((link & NET_S_LINK_UP) ? " link up" : " link DOWN"); }
    else puts(" (no VIRTIO_NET_F_STATUS: link assumed up)");
    putc('\n');
    if (!config_ok)
        return;

    tsc_calibrate();
    struct vq *rx = &d->q[0];
    u32 nrx = rx->size < NET_NRX ? rx->size : NET_NRX;
    vq_arm(d, rx);
    for (u16 i = 0; i < nrx; i++) {
        rx->desc[i] = (struct vdesc){ (u32)net_rx[i], NET_RXBUF, DESC_WRITE, 0 };
        vq_publish(rx, i);
    }
    /* The host side waits for this line before it pings. */
    puts("INFO net ready ip "); put_ip(net_ip); puts(" mac "); put_mac(net_mac);
    puts(" rx-buffers "); putdec(nrx); puts(" x "); putdec(NET_RXBUF); puts(" seconds "); putdec(seconds);
    putc('\n');

    u64 start = rdtsc(), deadline = start + (u64)seconds * 1000 * tsc_per_ms;
    u64 half = start + (u64)seconds * 500 * tsc_per_ms, next_arp = start;
    for (;;) {
        u64 now = rdtsc();
        int pings_done = s->echoes >= s->pings_wanted;
        int done = (!s->want_peer || s->peer_known) && pings_done && (s->pings_wanted || s->want_peer);
        if (done || s->failed || d->broken || now >= deadline)
            break;
        /* The peer is asked once the pings are answered (or half the time
           is gone): asked earlier, the host would learn this guest's MAC
           from the request and never send the ARP request checked above. */
        if (s->want_peer && !s->peer_known && (pings_done || now >= half) && now >= next_arp) {
            s->arp_requests++;
            static const u8 unknown[6];
            if (!net_send(d, net_arp_frame(1, eth_broadcast, unknown, net_peer), "arp-request"))
                break;
            next_arp = now + 1000 * tsc_per_ms;
        }
        if (rx->used[1] == rx->used_idx) {
            cpu_relax();
            continue;
        }
        /* One interrupt check per batch, re-armed before the batch is read:
           entries used after this point raise the new vector. */
        check_interrupt(d, rx);
        vq_arm(d, rx);
        u16 upto = rx->used[1];
        barrier();
        while (rx->used_idx != upto && !s->failed) {
            volatile u32 *elem = (volatile u32 *)(rx->used + 2) + 2 * (rx->used_idx % rx->size);
            u32 id = elem[0], used = elem[1];
            rx->used_idx++;
            if (id >= nrx) {
                dev_check_begin(d, 0, "rx-id");
                puts("used id "); putdec(id); puts(" was never posted ("); putdec(nrx); puts(" buffers)\n");
                s->failed = 1;
                break;
            }
            net_frame(d, s, net_rx[id], used);
            vq_publish(rx, (u16)id);        /* the buffer goes back to the device */
        }
    }
    u32 ms = (u32)udiv64(rdtsc() - start, (u32)tsc_per_ms, NULL);
    puts("INFO net "); putdec(s->rx_frames); puts(" frames received ("); putdec(s->rx_ignored);
    puts(" not for this guest's ARP or ICMP echo) in "); putdec(ms); puts(" ms\n");
    if (s->failed || d->broken)
        return;
    if (s->pings_wanted || s->echoes) {
        dev_check_begin(d, s->echoes >= s->pings_wanted, "echo-reply");
        puts("n="); putdec(s->echoes);
        if (s->pings_wanted) { puts(" of "); putdec(s->pings_wanted); }
        puts(" echo requests answered\n");
    }
    if (s->want_peer && !s->peer_known) {
        dev_check_begin(d, 0, "arp-peer");
        puts("no ARP reply from "); put_ip(net_peer); puts(" to "); putdec(s->arp_requests);
        puts(" request(s) within "); putdec(seconds); puts(" s\n");
    }
    if (s->arp_answered)
        { puts("INFO net "); putdec(s->arp_answered); puts(" ARP request(s) answered\n"); }
    if (d->irq_expected || d->irq_unchecked)
        irq_summary(d);
    else
        puts("INFO net no request completed: no interrupt to check\n");
    u8 status = status_read(d);
    dev_check_begin(d, !(status & (ST_NEEDS_RESET | ST_FAILED)), "status-end");
    puts("status "); puthex(status, 2); putc('\n');
}

/* ---------------------------------------------------------- virtio-vsock */

/* No feature bits (stream sockets are implied, 5.10.3): rx queue 0, tx 1,
   event 2, config guest_cid. Every packet is a 44-byte virtio_vsock_hdr and
   its payload; the host is CID 2 and a stream is keyed by (guest port, host
   port). Each side tells the other its buf_alloc and fwd_cnt (payload bytes
   consumed) in every packet and sends no more than the peer's
   buf_alloc - (sent - peer fwd_cnt). */
#define VSOCK_HOST_CID          2
#define VSOCK_HDR               44
#define VSOCK_PAYLOAD           4096
#define VSOCK_RXBUF             (VSOCK_HDR + VSOCK_PAYLOAD)
#define VSOCK_NRX               6
#define VSOCK_NEVT              4
#define VSOCK_TYPE_STREAM       1
#define VSOCK_OP_REQUEST        1
#define VSOCK_OP_RESPONSE       2
#define VSOCK_OP_RST            3
#define VSOCK_OP_SHUTDOWN       4
#define VSOCK_OP_RW             5
#define VSOCK_OP_CREDIT_UPDATE  6
#define VSOCK_OP_CREDIT_REQUEST 7
#define VSOCK_SHUTDOWN_RECEIVE  1
#define VSOCK_SHUTDOWN_SEND     2
#define VSOCK_SHUTDOWN_BOTH     3
#define VSOCK_EVENT_TRANSPORT_RESET 0
#define VSOCK_LINE_MAX          512
/* buf_alloc told to the host: small on purpose, so that a line from the
   host arrives in pieces and the device's credit accounting (and its
   CREDIT_REQUEST when it runs out) is exercised. `vsock-buf=N` changes it. */
#define VSOCK_DEFAULT_BUF       16
#define VSOCK_DEFAULT_SECONDS   30
#define VSOCK_STEP_MS           5000u      /* per protocol step */
#define VSOCK_FIRST_LOCAL_PORT  49152u

struct vsock_hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
_Static_assert(sizeof(struct vsock_hdr) == VSOCK_HDR, "virtio_vsock_hdr is 44 bytes");

enum vsock_state { VC_CLOSED, VC_CONNECTING, VC_ESTABLISHED };

struct vsock_conn {
    const char *name;               /* in messages: connect, refused, accept */
    enum vsock_state state;
    u32 local_port, peer_port;
    u32 peer_buf_alloc, peer_fwd_cnt;
    u32 tx_cnt;                     /* payload bytes sent */
    u32 rx_cnt, fwd_cnt, fwd_told;  /* received, consumed, consumed as last told */
    u32 peer_shutdown;              /* SHUTDOWN flags the host sent */
    int got_response, got_rst, transport_reset;
    u32 rw_packets, credit_updates_sent, credit_requests_sent, credit_requests_answered;
    char line[VSOCK_LINE_MAX];
    u32 line_len, extra_bytes;
    int line_done;
    const char *error;              /* a protocol violation by the device */
    u32 error_value;
};

static struct vdev *vsock_dev;
static u64 vsock_cid;
static u32 vsock_buf_alloc = VSOCK_DEFAULT_BUF;
static u32 vsock_listen_port;
static int vsock_listening, vsock_accepted, vsock_failed;
static u32 vsock_nrx, vsock_nevt;
static u32 vsock_rx_packets, vsock_refused_requests, vsock_resets_sent, vsock_transport_resets, vsock_other_type;
static struct vsock_conn vs_connect, vs_refused, vs_accept;
static struct vsock_conn *const vsock_conns[3] = { &vs_connect, &vs_refused, &vs_accept };
static u8 vsock_rx[VSOCK_NRX][VSOCK_RXBUF] __attribute__((aligned(64)));
static u8 vsock_evt[VSOCK_NEVT][4] __attribute__((aligned(16)));
static struct vsock_hdr vsock_tx_hdr __attribute__((aligned(16)));
static u8 vsock_tx_data[VSOCK_PAYLOAD] __attribute__((aligned(64)));

static void vsock_conn_init(struct vsock_conn *c, const char *name, enum vsock_state state, u32 local, u32 peer)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->state = state;
    c->local_port = local;
    c->peer_port = peer;
}

/* Stops the run's vsock steps with one FAIL line (`why`, then `value`). */
static void vsock_fail(const char *what, const char *why, u32 value)
{
    dev_check_begin(vsock_dev, 0, what);
    puts(why); putdec(value); putc('\n');
    vsock_failed = 1;
}

/* Header then payload, two descriptors when there is a payload. */
static int vsock_xmit(const struct vsock_hdr *h, const void *data, u32 len)
{
    vsock_tx_hdr = *h;
    vsock_tx_hdr.len = len;
    if (len)
        memcpy(vsock_tx_data, data, len);
    struct seg s[2] = { { &vsock_tx_hdr, VSOCK_HDR, 0 }, { vsock_tx_data, len, 0 } };
    return vq_request(vsock_dev, &vsock_dev->q[1], s, len ? 2 : 1, 0, "tx") >= 0;
}

/* A packet on connection c; it tells the host our credit (so fwd_told). */
static int vsock_send(struct vsock_conn *c, u16 op, u32 flags, const void *data, u32 len)
{
    struct vsock_hdr h = { vsock_cid, VSOCK_HOST_CID, c->local_port, c->peer_port, len,
                           VSOCK_TYPE_STREAM, op, flags, vsock_buf_alloc, c->fwd_cnt };
    c->fwd_told = c->fwd_cnt;
    if (op == VSOCK_OP_RW)
        c->tx_cnt += len;
    if (op == VSOCK_OP_CREDIT_UPDATE)
        c->credit_updates_sent++;
    return vsock_xmit(&h, data, len);
}

/* RST answering `in` (a packet for no connection of ours). */
static void vsock_reset_reply(const struct vsock_hdr *in)
{
    struct vsock_hdr h = { vsock_cid, in->src_cid, in->dst_port, in->src_port, 0, in->type, VSOCK_OP_RST, 0, 0, 0 };
    vsock_resets_sent++;
    vsock_xmit(&h, NULL, 0);
}

/* A protocol violation on c: remembered for the step's FAIL line, and the
   connection is reset. */
static void vsock_violation(struct vsock_conn *c, const char *error, u32 value)
{
    if (!c->error) {
        c->error = error;
        c->error_value = value;
    }
    if (c->state != VC_CLOSED) {
        vsock_send(c, VSOCK_OP_RST, 0, NULL, 0);
        c->state = VC_CLOSED;
    }
}

static u32 vsock_credit(const struct vsock_conn *c)
{
    u32 in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* RW payload: consumed at once into the connection's line (the bytes after
   its newline are counted and dropped); CREDIT_UPDATE tells the host. */
static void vsock_data(struct vsock_conn *c, const struct vsock_hdr *h, const u8 *payload)
{
    if (c->state != VC_ESTABLISHED)
        return vsock_violation(c, "RW before the connection was established, length ", h->len);
    if (c->peer_shutdown & VSOCK_SHUTDOWN_SEND)
        return vsock_violation(c, "RW after the host's SHUTDOWN(SEND), length ", h->len);
    /* The host may count on what we told last (fwd_told) and no more. */
    if (c->rx_cnt + h->len - c->fwd_told > vsock_buf_alloc)
        return vsock_violation(c, "the host sent past the credit given (buf_alloc, consumed as told, "
                                  "then this RW): bytes beyond buf_alloc ",
                               c->rx_cnt + h->len - c->fwd_told - vsock_buf_alloc);
    c->rw_packets++;
    for (u32 i = 0; i < h->len; i++) {
        if (c->line_done) {
            c->extra_bytes++;
        } else if (payload[i] == '\n') {
            c->line_done = 1;
        } else if (c->line_len + 1 < VSOCK_LINE_MAX) {
            c->line[c->line_len++] = (char)payload[i];
        } else {
            return vsock_violation(c, "a line longer than the guest's line buffer, bytes ", VSOCK_LINE_MAX);
        }
    }
    c->line[c->line_len] = 0;
    c->rx_cnt += h->len;
    c->fwd_cnt += h->len;
    if (h->len)
        vsock_send(c, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
}

static void vsock_packet(const u8 *buf, u32 used)
{
    struct vsock_hdr h;
    if (used < VSOCK_HDR || used > VSOCK_RXBUF)
        return vsock_fail("rx-length", "used length outside [44, 4140]: ", used);
    memcpy(&h, buf, VSOCK_HDR);
    if (h.len > VSOCK_PAYLOAD || used < VSOCK_HDR + h.len)
        return vsock_fail("rx-length", "header len beyond the used length or the buffer: len ", h.len);
    if (h.dst_cid != vsock_cid || h.src_cid != VSOCK_HOST_CID) {
        dev_check_begin(vsock_dev, 0, "rx-header");
        puts("packet from CID "); putdec(h.src_cid); puts(" to CID "); putdec(h.dst_cid);
        puts(" (from the host, 2, to this guest, "); putdec(vsock_cid); puts(", wanted)\n");
        vsock_failed = 1;
        return;
    }
    vsock_rx_packets++;
    if (h.type != VSOCK_TYPE_STREAM) {
        /* 5.10.6.3: an unknown type is answered with RST. */
        vsock_other_type++;
        puts("INFO vsock packet of type "); putdec(h.type); puts(" op "); putdec(h.op); puts(": RST\n");
        if (h.op != VSOCK_OP_RST)
            vsock_reset_reply(&h);
        return;
    }
    struct vsock_conn *c = NULL;
    for (u32 i = 0; i < 3; i++)
        if (vsock_conns[i]->state != VC_CLOSED && vsock_conns[i]->local_port == h.dst_port &&
            vsock_conns[i]->peer_port == h.src_port)
            c = vsock_conns[i];
    if (!c) {
        if (h.op == VSOCK_OP_REQUEST && vsock_listening && h.dst_port == vsock_listen_port && !vsock_accepted) {
            vsock_accepted = 1;
            c = &vs_accept;
            vsock_conn_init(c, "accept", VC_ESTABLISHED, h.dst_port, h.src_port);
            c->peer_buf_alloc = h.buf_alloc;
            c->peer_fwd_cnt = h.fwd_cnt;
            vsock_send(c, VSOCK_OP_RESPONSE, 0, NULL, 0);
            puts("INFO vsock REQUEST from host port "); putdec(h.src_port); puts(" to port "); putdec(h.dst_port);
            puts(" (host buf_alloc "); putdec(h.buf_alloc); puts("): RESPONSE sent\n");
        } else if (h.op == VSOCK_OP_REQUEST) {
            vsock_refused_requests++;
            puts("INFO vsock REQUEST from host port "); putdec(h.src_port); puts(" to port "); putdec(h.dst_port);
            puts(vsock_listening && h.dst_port == vsock_listen_port ? ": RST (one connection accepted at most)\n"
                                                                     : ": RST (no listener there)\n");
            vsock_reset_reply(&h);
        } else if (h.op != VSOCK_OP_RST) {
            puts("INFO vsock op "); putdec(h.op); puts(" for no connection (host port "); putdec(h.src_port);
            puts(", guest port "); putdec(h.dst_port); puts("): RST\n");
            vsock_reset_reply(&h);
        }
        return;
    }
    /* Every packet of a stream carries the sender's credit. */
    c->peer_buf_alloc = h.buf_alloc;
    c->peer_fwd_cnt = h.fwd_cnt;
    if (c->tx_cnt - h.fwd_cnt > c->tx_cnt)
        return vsock_violation(c, "the host's fwd_cnt counts more bytes than were sent: fwd_cnt ", h.fwd_cnt);
    switch (h.op) {
    case VSOCK_OP_RESPONSE:
        if (c->state != VC_CONNECTING)
            return vsock_violation(c, "RESPONSE on an established connection, flags ", h.flags);
        c->state = VC_ESTABLISHED;
        c->got_response = 1;
        break;
    case VSOCK_OP_RST:
        c->got_rst = 1;
        c->state = VC_CLOSED;
        break;
    case VSOCK_OP_SHUTDOWN:
        if (c->state != VC_ESTABLISHED)
            return vsock_violation(c, "SHUTDOWN on a connection not established, flags ", h.flags);
        c->peer_shutdown |= h.flags & VSOCK_SHUTDOWN_BOTH;
        puts("INFO vsock "); puts(c->name); puts(" host SHUTDOWN flags "); putdec(h.flags); putc('\n');
        break;
    case VSOCK_OP_RW:
        vsock_data(c, &h, buf + VSOCK_HDR);
        break;
    case VSOCK_OP_CREDIT_UPDATE:
        break;
    case VSOCK_OP_CREDIT_REQUEST:
        c->credit_requests_answered++;
        vsock_send(c, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
        break;
    default:            /* REQUEST on an open connection, or no operation at all */
        vsock_violation(c, "unexpected op on an open connection: op ", h.op);
        break;
    }
}

/* Event queue: TRANSPORT_RESET drops the connections (listening goes on)
   and guest_cid is read again (5.10.6.6). */
static void vsock_events(void)
{
    struct vdev *d = vsock_dev;
    struct vq *q = &d->q[2];
    if (q->used[1] == q->used_idx)
        return;
    check_interrupt(d, q);
    vq_arm(d, q);
    u16 upto = q->used[1];
    barrier();
    while (q->used_idx != upto) {
        volatile u32 *elem = (volatile u32 *)(q->used + 2) + 2 * (q->used_idx % q->size);
        u32 id = elem[0], len = elem[1];
        q->used_idx++;
        if (id >= vsock_nevt || len < 4)
            return vsock_fail("event", "used event buffer with a wrong id or a length below 4: id ", id);
        u32 event = (u32)vsock_evt[id][0] | (u32)vsock_evt[id][1] << 8 | (u32)vsock_evt[id][2] << 16 |
                    (u32)vsock_evt[id][3] << 24;
        if (event == VSOCK_EVENT_TRANSPORT_RESET) {
            vsock_transport_resets++;
            u64 cid = devcfg_read64(d, 0);
            puts("INFO vsock TRANSPORT_RESET: connections dropped, guest_cid now "); putdec(cid); putc('\n');
            vsock_cid = cid;
            for (u32 i = 0; i < 3; i++)
                if (vsock_conns[i]->state != VC_CLOSED) {
                    vsock_conns[i]->state = VC_CLOSED;
                    vsock_conns[i]->transport_reset = 1;
                }
        } else {
            puts("INFO vsock unknown event id "); putdec(event); putc('\n');
        }
        memset(vsock_evt[id], 0xff, 4);
        vq_publish(q, (u16)id);
    }
}

/* Handles what the device has used: events, then received packets (one
   interrupt check per batch, the vector armed again before the batch is
   read); each receive buffer goes back to the device once handled. */
static void vsock_poll(void)
{
    struct vdev *d = vsock_dev;
    vsock_events();
    struct vq *rx = &d->q[0];
    if (rx->used[1] == rx->used_idx || vsock_failed)
        return;
    check_interrupt(d, rx);
    vq_arm(d, rx);
    u16 upto = rx->used[1];
    barrier();
    while (rx->used_idx != upto && !vsock_failed && !d->broken) {
        volatile u32 *elem = (volatile u32 *)(rx->used + 2) + 2 * (rx->used_idx % rx->size);
        u32 id = elem[0], used = elem[1];
        rx->used_idx++;
        if (id >= vsock_nrx)
            return vsock_fail("rx-id", "used id that is no posted buffer's head: ", id);
        vsock_packet(vsock_rx[id], used);
        vq_publish(rx, (u16)id);
    }
}

typedef int (*vsock_cond)(const struct vsock_conn *c);
static int vc_not_connecting(const struct vsock_conn *c) { return c->state != VC_CONNECTING; }
static int vc_closed(const struct vsock_conn *c) { return c->state == VC_CLOSED; }
static int vc_line(const struct vsock_conn *c) { return c->line_done || c->state == VC_CLOSED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND); }
static int vc_host_done(const struct vsock_conn *c) { return c->state == VC_CLOSED || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND); }
static int vc_credit(const struct vsock_conn *c) { return c->state != VC_ESTABLISHED || vsock_credit(c) > 0; }
static int vc_accepted(const struct vsock_conn *c) { (void)c; return vsock_accepted; }

/* Polls until cond holds (1) or ms pass (TSC: the requests inside restart
   PIT channel 2), the device stops answering or a FAIL stops the run (0). */
static int vsock_wait(const struct vsock_conn *c, vsock_cond cond, u32 ms)
{
    u64 deadline = rdtsc() + (u64)ms * tsc_per_ms;
    for (;;) {
        if (cond(c))
            return 1;
        if (vsock_failed || vsock_dev->broken || rdtsc() >= deadline)
            return 0;
        vsock_poll();
        cpu_relax();
    }
}

/* Why a connection step did not get what it waited for. */
static void vsock_why(const struct vsock_conn *c, u32 ms)
{
    if (c->error) { puts(c->error); putdec(c->error_value); }
    else if (c->transport_reset) puts("the connection was dropped by TRANSPORT_RESET");
    else if (c->got_rst) puts("the host reset the connection (RST)");
    else if (vsock_failed) puts("stopped by the FAIL above");
    else if (vsock_dev->broken) puts("the device stopped answering");
    else { puts("nothing within "); putdec(ms); puts(" ms"); }
}

/* Sends n bytes as RW within the host's credit, asking for credit
   (CREDIT_REQUEST) when there is none. */
static int vsock_write(struct vsock_conn *c, const char *what, const char *data, u32 n)
{
    u32 sent = 0;
    while (sent < n && c->state == VC_ESTABLISHED && !vsock_failed) {
        if (c->peer_shutdown & VSOCK_SHUTDOWN_RECEIVE) {
            dev_check(vsock_dev, 0, what, "the host shut its receive side before the data was sent");
            return 0;
        }
        u32 credit = vsock_credit(c);
        if (!credit) {
            c->credit_requests_sent++;
            if (!vsock_send(c, VSOCK_OP_CREDIT_REQUEST, 0, NULL, 0))
                return 0;
            if (!vsock_wait(c, vc_credit, VSOCK_STEP_MS)) {
                dev_check_begin(vsock_dev, 0, what);
                puts("no credit from the host within "); putdec(VSOCK_STEP_MS); puts(" ms: buf_alloc ");
                putdec(c->peer_buf_alloc); puts(" fwd_cnt "); putdec(c->peer_fwd_cnt); puts(" sent ");
                putdec(c->tx_cnt); putc('\n');
                return 0;
            }
            continue;
        }
        u32 chunk = n - sent;
        if (chunk > credit) chunk = credit;
        if (chunk > VSOCK_PAYLOAD) chunk = VSOCK_PAYLOAD;
        if (!vsock_send(c, VSOCK_OP_RW, 0, data + sent, chunk))
            return 0;
        sent += chunk;
    }
    if (sent < n && !vsock_failed) {
        dev_check_begin(vsock_dev, 0, what);
        puts("the stream closed with "); putdec(n - sent); puts(" of "); putdec(n); puts(" bytes unsent: ");
        vsock_why(c, 0);
        putc('\n');
    }
    return sent == n;
}

static void vsock_credit_detail(const struct vsock_conn *c)
{
    puts(" (buf_alloc "); putdec(vsock_buf_alloc); puts(": "); putdec(c->rw_packets); puts(" RW in, ");
    putdec(c->credit_updates_sent); puts(" CREDIT_UPDATE out, "); putdec(c->credit_requests_answered);
    puts(" CREDIT_REQUEST answered, "); putdec(c->credit_requests_sent); puts(" asked)");
}

/* Clean close (5.10.6.5): SHUTDOWN both ways, then the host's RST; without
   it within the step's time, RST and a FAIL. */
static void vsock_close(struct vsock_conn *c, const char *what)
{
    if (c->state != VC_ESTABLISHED) {
        dev_check_begin(vsock_dev, 0, what);
        puts("not open at the close: "); vsock_why(c, 0); putc('\n');
        return;
    }
    u32 host_flags = c->peer_shutdown;
    if (!vsock_send(c, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, NULL, 0))
        return;
    int rst = vsock_wait(c, vc_closed, VSOCK_STEP_MS) && c->got_rst && !c->error;
    dev_check_begin(vsock_dev, rst, what);
    if (rst) {
        puts("SHUTDOWN(receive|send) answered with RST (host SHUTDOWN flags before: "); putdec(host_flags); puts(")\n");
    } else {
        puts("no RST after SHUTDOWN: "); vsock_why(c, VSOCK_STEP_MS); putc('\n');
        if (c->state != VC_CLOSED) {
            vsock_send(c, VSOCK_OP_RST, 0, NULL, 0);
            c->state = VC_CLOSED;
        }
    }
}

/* `vsock-connect=PORT`: a stream to the host's PORT, `PING <token>` echoed. */
static void vsock_connect_flow(u32 port)
{
    struct vsock_conn *c = &vs_connect;
    vsock_conn_init(c, "connect", VC_CONNECTING, VSOCK_FIRST_LOCAL_PORT + (u32)(rdtsc() & 0x3fff), port);
    if (!vsock_send(c, VSOCK_OP_REQUEST, 0, NULL, 0))
        return;
    int ok = vsock_wait(c, vc_not_connecting, VSOCK_STEP_MS) && c->state == VC_ESTABLISHED;
    dev_check_begin(vsock_dev, ok, "connect");
    puts("host port "); putdec(port); puts(" from guest port "); putdec(c->local_port);
    if (ok) {
        puts(": RESPONSE, host buf_alloc "); putdec(c->peer_buf_alloc); puts(" fwd_cnt "); putdec(c->peer_fwd_cnt);
    } else {
        puts(": ");
        if (c->got_rst) puts("refused (RST): does a host program listen on the socket PATH_PORT?");
        else vsock_why(c, VSOCK_STEP_MS);
    }
    putc('\n');
    if (!ok)
        return;

    static char ping[40];
    u64 t = rdtsc();
    u32 token_hi = (u32)(t >> 32) ^ (u32)t * 2654435761u, token_lo = (u32)t ^ 0x5a5a5a5au;
    memcpy(ping, "PING ", 5);
    for (u32 i = 0; i < 16; i++) {
        u32 nib = (i < 8 ? token_hi >> (28 - 4 * i) : token_lo >> (28 - 4 * (i - 8))) & 0xf;
        ping[5 + i] = (char)(nib < 10 ? '0' + nib : 'a' + nib - 10);
    }
    ping[21] = '\n';
    ping[22] = 0;
    if (vsock_write(c, "echo", ping, 22)) {
        int got = vsock_wait(c, vc_line, VSOCK_STEP_MS) && c->line_done;
        int same = got && c->line_len == 21 && memcmp(c->line, ping, 21) == 0 && !c->error;
        dev_check_begin(vsock_dev, same, "echo");
        puts("sent \""); putsn(ping, 21); puts("\\n\"");
        if (got) { puts(", received \""); putsn(c->line, c->line_len); puts("\\n\""); }
        else { puts(", no line back: "); vsock_why(c, VSOCK_STEP_MS); }
        vsock_credit_detail(c);
        putc('\n');
        if (c->extra_bytes) { puts("INFO vsock connect "); putdec(c->extra_bytes); puts(" bytes after the line\n"); }
    }
    vsock_close(c, "close");
}

/* `vsock-refused=PORT`: a REQUEST to a host port nobody listens on gets RST. */
static void vsock_refused_flow(u32 port)
{
    struct vsock_conn *c = &vs_refused;
    vsock_conn_init(c, "refused", VC_CONNECTING, VSOCK_FIRST_LOCAL_PORT + 0x4000 + (u32)(rdtsc() & 0x3fff), port);
    if (!vsock_send(c, VSOCK_OP_REQUEST, 0, NULL, 0))
        return;
    vsock_wait(c, vc_not_connecting, VSOCK_STEP_MS);
    int ok = c->got_rst && !c->got_response && !c->error;
    dev_check_begin(vsock_dev, ok, "refused");
    puts("REQUEST to host port "); putdec(port);
    if (ok) puts(": RST\n");
    else if (c->got_response) puts(": RESPONSE, though nobody should listen there\n");
    else { puts(": "); vsock_why(c, VSOCK_STEP_MS); putc('\n'); }
    if (c->state == VC_ESTABLISHED) {
        vsock_send(c, VSOCK_OP_RST, 0, NULL, 0);
        c->state = VC_CLOSED;
    }
}

/* `vsock-listen=PORT`: accepts one host connection, answers its line
   uppercased, waits for the host to finish, closes. */
static void vsock_listen_flow(u32 port, u32 seconds)
{
    struct vsock_conn *c = &vs_accept;
    vsock_listen_port = port;
    vsock_listening = 1;
    puts("INFO vsock waiting "); putdec(seconds); puts(" s at most for a host connection, buf_alloc ");
    putdec(vsock_buf_alloc); putc('\n');
    /* The host side's cue to connect. */
    puts("INFO vsock listening "); putdec(port); putc('\n');
    int ok = vsock_wait(c, vc_accepted, seconds * 1000);
    dev_check_begin(vsock_dev, ok, "accept");
    if (ok) {
        puts("REQUEST from host port "); putdec(c->peer_port); puts(" to port "); putdec(port);
        puts(" answered with RESPONSE\n");
    } else {
        puts("no REQUEST to port "); putdec(port); puts(": "); vsock_why(c, seconds * 1000);
        puts(" ("); putdec(vsock_refused_requests); puts(" REQUEST(s) to other ports refused)\n");
    }
    if (ok) {
        static char upper[VSOCK_LINE_MAX + 1];
        int got = vsock_wait(c, vc_line, 2 * VSOCK_STEP_MS) && c->line_done && !c->error;
        int sent = 0, host_done = 0;
        u32 n = c->line_len;
        if (got) {
            for (u32 i = 0; i < n; i++) {
                char ch = c->line[i];
                upper[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
            }
            upper[n] = '\n';
            sent = vsock_write(c, "host-echo", upper, n + 1);
            /* The host reads the answer, then shuts down or resets. */
            host_done = sent && vsock_wait(c, vc_host_done, VSOCK_STEP_MS) && !c->error &&
                        (c->got_rst || (c->peer_shutdown & VSOCK_SHUTDOWN_SEND));
        }
        dev_check_begin(vsock_dev, got && sent && host_done, "host-echo");
        if (got) {
            puts("received \""); putsn(c->line, n); puts("\\n\", sent \""); putsn(upper, n); puts("\\n\"");
            if (!sent) puts(", but the answer was not sent");
            else if (host_done) puts(c->got_rst ? ", then the host's RST" : ", then the host's SHUTDOWN");
            else { puts(", then the host did not finish: "); vsock_why(c, VSOCK_STEP_MS); }
        } else {
            puts("no line from the host: "); vsock_why(c, 2 * VSOCK_STEP_MS);
        }
        vsock_credit_detail(c);
        putc('\n');
        if (host_done && c->state == VC_ESTABLISHED)
            vsock_close(c, "host-close");
    }
    vsock_listening = 0;
}

static void test_vsock(void)
{
    static struct vdev dev;
    u32 len, connect_port = 0, listen_port = 0, refused_port = 0, seconds = VSOCK_DEFAULT_SECONDS, want_cid = 0;
    int ok_num = 1;
    const char *v;
    if ((v = cmdline_value(cmdline, "cid", &len)) && ok_num) want_cid = parse_decimal(v, len, &ok_num);
    int have_cid = v != NULL;
    const char *cv = cmdline_value(cmdline, "vsock-connect", &len);
    if (cv && ok_num) connect_port = parse_decimal(cv, len, &ok_num);
    const char *lv = cmdline_value(cmdline, "vsock-listen", &len);
    if (lv && ok_num) listen_port = parse_decimal(lv, len, &ok_num);
    const char *rv = cmdline_value(cmdline, "vsock-refused", &len);
    if (rv && ok_num) refused_port = parse_decimal(rv, len, &ok_num);
    if ((v = cmdline_value(cmdline, "vsock-buf", &len)) && ok_num) vsock_buf_alloc = parse_decimal(v, len, &ok_num);
    if ((v = cmdline_value(cmdline, "vsock-seconds", &len)) && ok_num) seconds = parse_decimal(v, len, &ok_num);
    if (!ok_num || vsock_buf_alloc == 0 || seconds == 0 || seconds > 3600) {
        check(0, "vsock-args", "cid=N, vsock-connect=PORT, vsock-listen=PORT, vsock-refused=PORT, "
                               "vsock-buf=N (> 0) and vsock-seconds=N (1-3600) take decimal numbers");
        return;
    }
    struct vdev *d = find_device(&dev, "vsock", VIRTIO_ID_VSOCK);
    if (!d || !virtio_find_caps(d) || !virtio_init(d, 0, 3))
        return;
    vsock_dev = d;
    u64 cid = devcfg_read64(d, 0);
    /* 5.10.4: the upper 32 bits are zero; 0, 1, 2 and 0xffffffff are reserved. */
    int config_ok = d->devcfg_len >= 8 && (cid >> 32) == 0 && cid > VSOCK_HOST_CID && cid != 0xffffffffu &&
                    (!have_cid || cid == want_cid);
    dev_check_begin(d, config_ok, "config");
    puts("cid "); putdec(cid);
    if (have_cid) { puts(" expected "); putdec(want_cid); }
    if (d->devcfg_len < 8) { puts(" (device config only "); putdec(d->devcfg_len); puts(" bytes)"); }
    putc('\n');
    if (!config_ok)
        return;
    vsock_cid = cid;

    tsc_calibrate();
    /* Event buffers first, then receive buffers (5.10.5). Odd receive
       buffers are two descriptors (header, payload), as older Linux
       drivers post them; the rest one. */
    struct vq *ev = &d->q[2], *rx = &d->q[0];
    vsock_nevt = ev->size < VSOCK_NEVT ? ev->size : VSOCK_NEVT;
    vq_arm(d, ev);
    for (u16 i = 0; i < vsock_nevt; i++) {
        memset(vsock_evt[i], 0xff, 4);
        ev->desc[i] = (struct vdesc){ (u32)vsock_evt[i], 4, DESC_WRITE, 0 };
        vq_publish(ev, i);
    }
    vsock_nrx = rx->size < VSOCK_NRX ? rx->size : VSOCK_NRX;
    int split = rx->size >= 2 * VSOCK_NRX;
    vq_arm(d, rx);
    for (u16 i = 0; i < vsock_nrx; i++) {
        if (split && (i & 1)) {
            u16 tail = (u16)(VSOCK_NRX + i);
            rx->desc[i] = (struct vdesc){ (u32)vsock_rx[i], VSOCK_HDR, DESC_WRITE | DESC_NEXT, tail };
            rx->desc[tail] = (struct vdesc){ (u32)vsock_rx[i] + VSOCK_HDR, VSOCK_PAYLOAD, DESC_WRITE, 0 };
        } else {
            rx->desc[i] = (struct vdesc){ (u32)vsock_rx[i], VSOCK_RXBUF, DESC_WRITE, 0 };
        }
        vq_publish(rx, i);
    }
    puts("INFO vsock ready cid "); putdec(cid); puts(" rx-buffers "); putdec(vsock_nrx); puts(" x ");
    putdec(VSOCK_RXBUF); puts(split ? " (odd ones header + payload descriptors)" : "");
    puts(" event-buffers "); putdec(vsock_nevt); puts(" buf_alloc "); putdec(vsock_buf_alloc); putc('\n');

    if (cv && !vsock_failed && !d->broken)
        vsock_connect_flow(connect_port);
    if (rv && !vsock_failed && !d->broken)
        vsock_refused_flow(refused_port);
    if (lv && !vsock_failed && !d->broken)
        vsock_listen_flow(listen_port, seconds);
    vsock_poll();       /* late packets: RSTs answering ours are counted, others answered */

    puts("INFO vsock "); putdec(vsock_rx_packets); puts(" packets received, ");
    putdec(vsock_resets_sent); puts(" RST sent for no connection ("); putdec(vsock_refused_requests);
    puts(" REQUEST refused), "); putdec(vsock_other_type); puts(" of another type, ");
    putdec(vsock_transport_resets); puts(" TRANSPORT_RESET\n");
    if (vsock_failed || d->broken)
        return;
    if (d->intx) {
        /* Three queues share the line: a packet used right after a transmit
           completion raises it again after that request's ISR read, so the
           per-request INTx check cannot judge this device. */
        puts("INFO vsock intx: "); putdec(d->irq_seen); puts(" of "); putdec(d->irq_expected);
        puts(" requests saw the line rise and drop (not judged: the queues share it)\n");
    } else if (d->irq_expected || d->irq_unchecked) {
        irq_summary(d);
    }
    u8 status = status_read(d);
    dev_check_begin(d, !(status & (ST_NEEDS_RESET | ST_FAILED)), "status-end");
    puts("status "); puthex(status, 2); putc('\n');
}

/* ------------------------------------------------------------ benchmarks */

/* `blk-bench` and `net-bench`: the same drivers driven as fast as the device
   answers, for deflect-bench --virtio (Deflect's devices against QEMU's,
   the same guest in the same run).
     blk-bench [blk-ops=N] [blk-seq-mib=M] [blk-verify]
       blk-randread-qd1, blk-randread-qd16: N reads of 4 KiB at pseudo-random
       4 KiB-aligned offsets over the disk, one at a time, then 16 in flight
       (each request one indirect descriptor; without INDIRECT_DESC as many
       three-descriptor chains as the queue holds); blk-seqread-qd1 and
       blk-seqread-qd4: 128 KiB reads over the first M MiB (default: the
       whole disk). `blk-verify`: every 4 KiB block read must start with its
       block number and "BNCH" (little-endian words; the bench's file).
     net-bench [net-frames=N]
       net-tx-60, net-tx-1514: N frames of 60 bytes (the 64-byte minimum
       without the FCS) and of 1514 bytes (a 1500-byte payload) to the TAP,
       as many in flight as the transmit queue holds, used buffers reclaimed
       and refilled, one notification per batch.
   Each phase prints "BENCH begin NAME" and "BENCH end NAME ops=N bytes=B
   cycles=C", after "BENCH tsc-khz K" once. Timing is the guest's TSC
   (calibrated against the PIT), not the host's clock on the serial lines:
   the host's arrival times would include how each VMM buffers and forwards
   serial output, which differs between Deflect and QEMU; the TSC ticks
   alike under both. Completions are polled (IF stays clear) with the queue's
   MSI-X entry armed on one vector, so the device pays for its interrupts as
   it would for a driver taking them; their arrival is checked once per
   phase. Every wait is bounded by the TSC (5 s without progress: FAIL). */

#define BENCH_SLOTS         16
#define BENCH_SEQ_BYTES     (128u * 1024)
#define BENCH_SEQ_SLOTS     4
#define BENCH_MAGIC         0x48434e42u          /* "BNCH" little-endian */
#define BENCH_STALL_MS      5000u

static struct vdesc bench_table[BENCH_SLOTS][3] __attribute__((aligned(16)));
static struct blk_hdr bench_hdr[BENCH_SLOTS] __attribute__((aligned(16)));
static volatile u8 bench_status[BENCH_SLOTS];
static u8 bench_small[BENCH_SLOTS][4096] __attribute__((aligned(4096)));
static u8 bench_large[BENCH_SEQ_SLOTS][BENCH_SEQ_BYTES] __attribute__((aligned(4096)));
static u8 bench_tx[BENCH_SLOTS][NET_HDR + ETH_MAX] __attribute__((aligned(64)));
static u64 bench_slot_offset[BENCH_SLOTS];
static int bench_failed;

static u32 bench_option(const char *key, u32 fallback)
{
    u32 len;
    int ok = 1;
    const char *v = cmdline_value(cmdline, key, &len);
    u32 n = v ? parse_decimal(v, len, &ok) : fallback;
    return ok && n ? n : fallback;
}

static u64 bench_begin(const char *name)
{
    puts("BENCH begin "); puts(name); putc('\n');
    return rdtsc();
}

static void bench_end(const char *name, u64 t0, u32 ops, u64 bytes)
{
    u64 cycles = rdtsc() - t0;
    puts("BENCH end "); puts(name); puts(" ops="); putdec(ops); puts(" bytes="); putdec(bytes);
    puts(" cycles="); putdec(cycles); putc('\n');
}

/* Arms one vector on the queue's MSI-X entry for a whole phase. */
static u32 bench_arm(struct vdev *d, struct vq *q)
{
    u32 v = d->intx ? 0 : alloc_vector();
    if (v)
        msix_program(d, q->msix_entry, v, 0);
    return v;
}

static void bench_interrupts(struct vdev *d, const char *name, u32 vector)
{
    if (!vector)
        return;
    dev_check_begin(d, irr_set(vector), name);
    puts("interrupts "); puts(irr_set(vector) ? "delivered" : "NOT delivered"); puts(" (vector ");
    puthex(vector, 2); puts(")\n");
}

/* Waits (TSC-bounded) until the device has used more than the driver has
   seen; 0 after BENCH_STALL_MS without progress. */
static int bench_wait_used(struct vq *q)
{
    u64 deadline = rdtsc() + (u64)BENCH_STALL_MS * tsc_per_ms;
    while (q->used[1] == q->used_idx) {
        if (rdtsc() > deadline)
            return 0;
        cpu_relax();
    }
    barrier();
    return 1;
}

/* Makes `head` available without notifying (the caller notifies per batch). */
static void bench_offer(struct vq *q, u16 head)
{
    q->avail[2 + q->avail_idx % q->size] = head;
    if (q->event_idx)
        q->avail[2 + q->size] = q->used_idx;
    barrier();
    q->avail_idx++;
    q->avail[1] = q->avail_idx;
}

/* One phase: `ops` requests of `len` bytes, `depth` in flight. `offer`
   puts request n into slot s and returns its head, `slot_of` maps a used
   id back to its slot, `done` looks at a completed slot. */
struct bench_phase {
    struct vdev *d;
    struct vq *q;
    const char *name;
    u32 depth, ops, len;
    u16 (*offer)(struct bench_phase *p, u32 slot, u32 n);
    u32 (*slot_of)(struct bench_phase *p, u32 id);
    void (*done)(struct bench_phase *p, u32 slot);
    int indirect, sequential, verify;       /* blk */
    u32 blocks, lcg, bad_status, bad_data;  /* blk */
};

/* Keeps `depth` requests in flight until `ops` have completed, one
   notification per batch of refills; prints the BENCH lines and whether the
   interrupts arrived. 0 on a stall (FAIL printed, the device left broken). */
static int bench_pump(struct bench_phase *p)
{
    struct vq *q = p->q;
    u32 vector = bench_arm(p->d, q);
    u32 submitted = 0, completed = 0;
    u64 t0 = bench_begin(p->name);
    for (u32 s = 0; s < p->depth && submitted < p->ops; s++)
        bench_offer(q, p->offer(p, s, submitted++));
    mmio_write16(q->notify_addr, q->index);
    while (completed < p->ops) {
        if (!bench_wait_used(q)) {
            dev_check_begin(p->d, 0, p->name + 4);
            puts("no completion within "); putdec(BENCH_STALL_MS); puts(" ms after "); putdec(completed);
            puts(" (used.idx "); putdec(q->used[1]); puts(")\n");
            p->d->broken = bench_failed = 1;
            return 0;
        }
        u16 upto = q->used[1];
        int offered = 0;
        while (q->used_idx != upto) {
            volatile u32 *elem = (volatile u32 *)(q->used + 2) + 2 * (q->used_idx % q->size);
            u32 s = p->slot_of(p, elem[0]);
            q->used_idx++;
            completed++;
            if (s >= p->depth)
                continue;
            p->done(p, s);
            if (submitted < p->ops) {
                bench_offer(q, p->offer(p, s, submitted++));
                offered = 1;
            }
        }
        if (offered)
            mmio_write16(q->notify_addr, q->index);
    }
    bench_end(p->name, t0, p->ops, (u64)p->ops * p->len);
    bench_interrupts(p->d, p->name + 4, vector);
    return 1;
}

static u8 *bench_blk_buffer(struct bench_phase *p, u32 s) { return p->len > 4096 ? bench_large[s] : bench_small[s]; }

/* A read of request n (random or sequential block) into slot s. */
static u16 bench_blk_offer(struct bench_phase *p, u32 s, u32 n)
{
    u32 block = p->sequential ? n % p->blocks : (p->lcg = p->lcg * 1103515245u + 12345u, (p->lcg >> 7) % p->blocks);
    u64 offset = (u64)block * p->len;
    bench_hdr[s] = (struct blk_hdr){ BLK_T_IN, 0, offset / SECTOR };
    bench_status[s] = 0xff;
    bench_slot_offset[s] = offset;
    struct vdesc chain[3] = {
        { (u32)&bench_hdr[s], sizeof bench_hdr[s], DESC_NEXT, 1 },
        { (u32)bench_blk_buffer(p, s), p->len, DESC_WRITE | DESC_NEXT, 2 },
        { (u32)&bench_status[s], 1, DESC_WRITE, 0 },
    };
    if (p->indirect) {
        memcpy(bench_table[s], chain, sizeof chain);
        p->q->desc[s] = (struct vdesc){ (u32)bench_table[s], sizeof chain, DESC_INDIRECT, 0 };
        return (u16)s;
    }
    u16 h = (u16)(3 * s);
    for (u16 i = 0; i < 3; i++) {
        p->q->desc[h + i] = chain[i];
        p->q->desc[h + i].next = (u16)(h + i + 1);
    }
    return h;
}

static u32 bench_blk_slot_of(struct bench_phase *p, u32 id) { return p->indirect ? id : id / 3; }

/* Status OK, and with blk-verify every 4 KiB block the one asked for. */
static void bench_blk_done(struct bench_phase *p, u32 s)
{
    if (bench_status[s] != BLK_S_OK) {
        p->bad_status++;
        return;
    }
    for (u32 o = 0; p->verify && o < p->len; o += 4096) {
        u32 *w = (u32 *)(bench_blk_buffer(p, s) + o);
        if (w[0] != (u32)((bench_slot_offset[s] + o) >> 12) || w[1] != BENCH_MAGIC)
            p->bad_data++;
    }
}

/* One blk phase: `ops` reads of `len` bytes, `depth` in flight, random
   (aligned to `len`, over `span` bytes) or sequential (wrapping at `span`). */
static void bench_blk_phase(struct vdev *d, const char *name, u32 depth, u32 len, u32 ops, int sequential, u64 span)
{
    struct bench_phase p = { .d = d, .q = &d->q[0], .name = name, .depth = depth, .ops = ops, .len = len,
                             .offer = bench_blk_offer, .slot_of = bench_blk_slot_of, .done = bench_blk_done,
                             .indirect = (int)((d->negotiated >> F_INDIRECT_DESC) & 1), .sequential = sequential,
                             .verify = has_word("blk-verify"), .blocks = (u32)udiv64(span, len, NULL), .lcg = 0x2545f491u };
    u32 max_depth = p.indirect ? p.q->size : p.q->size / 3u;
    u32 slots = len > 4096 ? BENCH_SEQ_SLOTS : BENCH_SLOTS;
    if (p.depth > max_depth) p.depth = max_depth;
    if (p.depth > slots) p.depth = slots;
    puts("INFO "); puts(name); puts(" depth "); putdec(p.depth); puts(p.indirect ? " (indirect)" : " (chains)");
    puts(" request "); putdec(len); puts(" bytes over "); putdec(span); puts(" bytes\n");
    if (!bench_pump(&p))
        return;
    dev_check_begin(d, !p.bad_status && !p.bad_data, name + 4);
    putdec(ops); puts(" reads, status not OK "); putdec(p.bad_status);
    if (p.verify) { puts(", 4 KiB blocks with the wrong contents "); putdec(p.bad_data); }
    putc('\n');
    bench_failed |= p.bad_status || p.bad_data;
}

/* The device found and initialised (nq queues), or NULL with the run failed. */
static struct vdev *bench_device(struct vdev *dev, const char *name, u16 type, u64 want, u16 nq)
{
    struct vdev *d = find_device(dev, name, type);
    if (d && virtio_find_caps(d) && virtio_init(d, want, nq))
        return d;
    bench_failed = 1;
    return NULL;
}

static void bench_blk(void)
{
    static struct vdev dev;
    struct vdev *d = bench_device(&dev, "blk", VIRTIO_ID_BLK, (1ull << F_INDIRECT_DESC) | (1ull << F_EVENT_IDX), 1);
    if (!d)
        return;
    u64 cap = devcfg_read64(d, 0) * SECTOR;
    u32 ops = bench_option("blk-ops", 2000);
    u64 seq = (u64)bench_option("blk-seq-mib", 0) << 20;
    if (!seq || seq > cap)
        seq = cap;
    if (cap < BENCH_SEQ_BYTES) {
        dev_check(d, 0, "bench", "the disk is smaller than one 128 KiB request");
        bench_failed = 1;
        return;
    }
    bench_blk_phase(d, "blk-randread-qd1", 1, 4096, ops, 0, cap);
    if (!d->broken)
        bench_blk_phase(d, "blk-randread-qd16", 16, 4096, ops, 0, cap);
    u32 seq_ops = (u32)udiv64(seq, BENCH_SEQ_BYTES, NULL);
    if (!d->broken)
        bench_blk_phase(d, "blk-seqread-qd1", 1, BENCH_SEQ_BYTES, seq_ops, 1, seq);
    if (!d->broken)
        bench_blk_phase(d, "blk-seqread-qd4", BENCH_SEQ_SLOTS, BENCH_SEQ_BYTES, seq_ops, 1, seq);
}

static u16 bench_net_offer(struct bench_phase *p, u32 s, u32 n) { (void)p; (void)n; return (u16)s; }
static u32 bench_net_slot_of(struct bench_phase *p, u32 id) { (void)p; return id; }
static void bench_net_done(struct bench_phase *p, u32 s) { (void)p; (void)s; }

/* One net phase: `frames` frames of `len` bytes (Ethernet header included),
   each slot's frame built once and sent again and again. */
static void bench_net_phase(struct vdev *d, const char *name, u32 len, u32 frames)
{
    struct bench_phase p = { .d = d, .q = &d->q[1], .name = name, .ops = frames, .len = len,
                             .offer = bench_net_offer, .slot_of = bench_net_slot_of, .done = bench_net_done };
    p.depth = p.q->size < BENCH_SLOTS ? p.q->size : BENCH_SLOTS;
    /* To a locally administered unicast address nobody has, with the IEEE's
       local experimental ethertype: the host's stack drops them at once. */
    static const u8 nobody[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x02 };
    for (u32 s = 0; s < p.depth; s++) {
        u8 *f = bench_tx[s];
        memset(f, 0, NET_HDR);
        memcpy(f + NET_HDR, nobody, 6);
        memcpy(f + NET_HDR + 6, net_mac, 6);
        put_be16(f + NET_HDR + 12, 0x88b5);
        for (u32 i = ETH_HLEN; i < len; i++)
            f[NET_HDR + i] = (u8)(i + s);
        p.q->desc[s] = (struct vdesc){ (u32)f, NET_HDR + len, 0, 0 };
    }
    if (bench_pump(&p))
        dev_check(d, 1, name + 4, "frames sent");
}

static void bench_net(void)
{
    static struct vdev dev;
    struct vdev *d = bench_device(&dev, "net", VIRTIO_ID_NET, (1ull << NET_F_MAC) | (1ull << F_EVENT_IDX), 2);
    if (!d)
        return;
    static const u8 own[6] = { 0x52, 0x54, 0x00, 0xde, 0xf1, 0xec };
    for (u32 i = 0; i < 6; i++)
        net_mac[i] = (d->negotiated >> NET_F_MAC) & 1 ? mmio_read8(d->devcfg + i) : own[i];
    /* Receive buffers posted as a driver would (and never read back). */
    struct vq *rx = &d->q[0];
    for (u16 i = 0; i < rx->size && i < NET_NRX; i++) {
        rx->desc[i] = (struct vdesc){ (u32)net_rx[i], NET_RXBUF, DESC_WRITE, 0 };
        bench_offer(rx, i);
    }
    mmio_write16(rx->notify_addr, rx->index);
    u32 frames = bench_option("net-frames", 20000);
    bench_net_phase(d, "net-tx-60", 60, frames);
    if (!d->broken)
        bench_net_phase(d, "net-tx-1514", ETH_MAX, frames);
}

/* ------------------------------------------------------------------ main */

void kmain(u32 magic, struct mb_info *mbi);
void kmain(u32 magic, struct mb_info *mbi)
{
    serial_init();
    puts("virtio: modern virtio-pci drivers\n");
    if (magic == MB_BOOT_MAGIC && (mbi->flags & MBI_CMDLINE) && mbi->cmdline)
        cmdline = (const char *)mbi->cmdline;
    puts("INFO cmdline "); puts(cmdline); putc('\n');
    int blk = has_word("blk"), rng = has_word("rng"), con = has_word("console") || has_word("console-echo");
    int net = has_word("net"), vsock = has_word("vsock");
    int blk_bench = has_word("blk-bench"), net_bench = has_word("net-bench");
    int any = blk || rng || con || net || vsock || blk_bench || net_bench;
    if (!check(any, "args", any ? "devices chosen" : "none of blk, rng, console, net, vsock, blk-bench, net-bench"))
        finish();
    lapic_init();
    pci_enumerate();
    if (blk_bench || net_bench) {
        tsc_calibrate();
        puts("BENCH tsc-khz "); putdec(tsc_per_ms); putc('\n');
        if (blk_bench) bench_blk();
        if (net_bench) bench_net();
        check(!bench_failed, "bench", bench_failed ? "a phase failed" : "every phase ran");
    }
    if (blk) test_blk();
    if (rng) test_rng();
    if (con) test_console();
    if (net) test_net();
    if (vsock) test_vsock();
    finish();
}
