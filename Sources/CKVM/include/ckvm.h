// CKVM: the C shim between Swift and <linux/kvm.h>.
//
// Why it exists: the _IO*/_IOW* request macros do not import into Swift, the
// kvm_run union is awkward to read from Swift, glibc's ioctl wants a full
// `unsigned long` argument, and the installed uapi headers (Linux 6.1) are
// older than the kernel we run on. Everything here is a constant, a struct
// layout or a `static inline` helper; no state.
#ifndef DEFLECT_CKVM_H
#define DEFLECT_CKVM_H

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/kvm.h>

// ---- uapi definitions newer than the installed 6.1 headers -----------------

// x86 ONE_REG encoding (Linux 6.18): KVM_REG_X86 | type << 32 | size | index.
#ifndef KVM_X86_REG_TYPE_MSR
#define KVM_X86_REG_TYPE_MSR 2
#endif
#ifndef KVM_X86_REG_TYPE_KVM
#define KVM_X86_REG_TYPE_KVM 3
#endif
#ifndef KVM_REG_GUEST_SSP
#define KVM_REG_GUEST_SSP 0
#endif
// KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on a VM fd answers the XSAVE image
// size, which KVM_GET_XSAVE2 fills and KVM_SET_XSAVE reads (Linux 5.17).
#ifndef KVM_CAP_XSAVE2
#define KVM_CAP_XSAVE2 208
#endif
#ifndef KVM_GET_XSAVE2
#define KVM_GET_XSAVE2 _IOR(KVMIO, 0xcf, struct kvm_xsave)
#endif
// run->hypercall.flags bit 0 (the 6.1 header calls the low word `longmode`).
#ifndef KVM_EXIT_HYPERCALL_LONG_MODE
#define KVM_EXIT_HYPERCALL_LONG_MODE (1ULL << 0)
#endif

// Every pointer below is non-null (Swift imports them without Optional): the
// helpers are only ever called with live structures.
#pragma clang assume_nonnull begin

// ---- request numbers, exported because the macros do not import ------------
// (`static const`, not `static`: Swift 6 rejects mutable globals.)

// System fd (/dev/kvm)
static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
static const unsigned long CKVM_GET_MSR_FEATURE_INDEX_LIST = KVM_GET_MSR_FEATURE_INDEX_LIST;
// VM fd
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long CKVM_ENABLE_CAP = KVM_ENABLE_CAP;
static const unsigned long CKVM_X86_SET_MSR_FILTER = KVM_X86_SET_MSR_FILTER;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long CKVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long CKVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long CKVM_IRQFD = KVM_IRQFD;
static const unsigned long CKVM_SET_GSI_ROUTING = KVM_SET_GSI_ROUTING;
static const unsigned long CKVM_SIGNAL_MSI = KVM_SIGNAL_MSI;
static const unsigned long CKVM_GET_IRQCHIP = KVM_GET_IRQCHIP;
static const unsigned long CKVM_SET_IRQCHIP = KVM_SET_IRQCHIP;
static const unsigned long CKVM_GET_PIT2 = KVM_GET_PIT2;
static const unsigned long CKVM_GET_CLOCK = KVM_GET_CLOCK;
static const unsigned long CKVM_SET_CLOCK = KVM_SET_CLOCK;
static const unsigned long CKVM_SET_PIT2 = KVM_SET_PIT2;
static const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
static const unsigned long CKVM_CLEAR_DIRTY_LOG = KVM_CLEAR_DIRTY_LOG;
// vCPU fd
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long CKVM_GET_XSAVE2 = KVM_GET_XSAVE2;
static const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_GET_CPUID2 = KVM_GET_CPUID2;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_ONE_REG = KVM_GET_ONE_REG;
static const unsigned long CKVM_SET_ONE_REG = KVM_SET_ONE_REG;
static const unsigned long CKVM_GET_REG_LIST = KVM_GET_REG_LIST;
static const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long CKVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long CKVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long CKVM_GET_SREGS2 = KVM_GET_SREGS2;
static const unsigned long CKVM_SET_SREGS2 = KVM_SET_SREGS2;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
static const unsigned long CKVM_SET_TSC_KHZ = KVM_SET_TSC_KHZ;

// Binary statistics (Linux 5.14+): a file of KVM's own counters per VM / vCPU.
static const unsigned long CKVM_GET_STATS_FD = KVM_GET_STATS_FD;

static const uint64_t CKVM_REG_X86 = KVM_REG_X86;
static const uint64_t CKVM_REG_SIZE_U64 = KVM_REG_SIZE_U64;
static const uint64_t CKVM_REG_SIZE_MASK = KVM_REG_SIZE_MASK;
static const uint64_t CKVM_REG_ARCH_MASK = KVM_REG_ARCH_MASK;

// ---- ioctl helpers: return the result, or -errno ---------------------------
// Why: glibc's ioctl is variadic and Swift's overloads take CInt or a pointer;
// returning -errno keeps the error with the call instead of a thread-local.

static inline int ckvm_ioctl_none(int fd, unsigned long request) {
    int r = ioctl(fd, request, 0UL);
    return r < 0 ? -errno : r;
}
static inline int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) {
    int r = ioctl(fd, request, value);
    return r < 0 ? -errno : r;
}
static inline int ckvm_ioctl_ptr(int fd, unsigned long request, void *argument) {
    int r = ioctl(fd, request, argument);
    return r < 0 ? -errno : r;
}

// ---- flexible array members (dropped by the Swift importer) -----------------

static inline struct kvm_msr_entry *ckvm_msrs_entries(struct kvm_msrs *m) { return m->entries; }
static inline struct kvm_cpuid_entry2 *ckvm_cpuid2_entries(struct kvm_cpuid2 *c) { return c->entries; }
static inline __u32 *ckvm_msr_list_indices(struct kvm_msr_list *l) { return l->indices; }
static inline __u64 *ckvm_reg_list_regs(struct kvm_reg_list *l) { return l->reg; }

// ---- kvm_irqchip: the chip union -------------------------------------------
// The PIC member of the anonymous union, read and written here so Swift never
// names the union (chip_id 0 = master PIC, 1 = slave PIC).
static inline struct kvm_pic_state ckvm_irqchip_pic(const struct kvm_irqchip *c) { return c->chip.pic; }
static inline void ckvm_irqchip_set_pic(struct kvm_irqchip *c, struct kvm_pic_state p) { c->chip.pic = p; }
// The IOAPIC member (chip_id 2); redirection entries as their raw 64 bits.
static inline struct kvm_ioapic_state ckvm_irqchip_ioapic(const struct kvm_irqchip *c) { return c->chip.ioapic; }
static inline void ckvm_irqchip_set_ioapic(struct kvm_irqchip *c, struct kvm_ioapic_state s) { c->chip.ioapic = s; }
static inline uint64_t ckvm_ioapic_redirection(const struct kvm_ioapic_state *s, unsigned pin) {
    return pin < KVM_IOAPIC_NUM_PINS ? s->redirtbl[pin].bits : 0;
}
static inline void ckvm_ioapic_set_redirection(struct kvm_ioapic_state *s, unsigned pin, uint64_t bits) {
    if (pin < KVM_IOAPIC_NUM_PINS) s->redirtbl[pin].bits = bits;
}
static const unsigned CKVM_IOAPIC_NUM_PINS = KVM_IOAPIC_NUM_PINS;

// ---- dirty logging: the bitmap pointer lives in an anonymous union ---------
static inline struct kvm_dirty_log ckvm_dirty_log(uint32_t slot, void *bitmap) {
    struct kvm_dirty_log log;
    memset(&log, 0, sizeof(log));
    log.slot = slot;
    log.dirty_bitmap = bitmap;
    return log;
}
static inline struct kvm_clear_dirty_log ckvm_clear_dirty_log(uint32_t slot, uint64_t first_page, uint32_t num_pages, void *bitmap) {
    struct kvm_clear_dirty_log log;
    memset(&log, 0, sizeof(log));
    log.slot = slot;
    log.first_page = first_page;
    log.num_pages = num_pages;
    log.dirty_bitmap = bitmap;
    return log;
}

// ---- eventfds, ioeventfds, irqfds and GSI routing --------------------------
// Why: eventfd(2) is not in the Swift Glibc module, and the routing entry's
// irqchip/msi members live in an anonymous union.
static inline int ckvm_eventfd(unsigned initval, int nonblocking) {
    long r = syscall(SYS_eventfd2, initval, 02000000 /* EFD_CLOEXEC */ | (nonblocking ? 04000 /* EFD_NONBLOCK */ : 0));
    return r < 0 ? -errno : (int)r;
}
static const uint32_t CKVM_IOEVENTFD_FLAG_DATAMATCH = 1U << kvm_ioeventfd_flag_nr_datamatch;
static const uint32_t CKVM_IOEVENTFD_FLAG_PIO = 1U << kvm_ioeventfd_flag_nr_pio;
static const uint32_t CKVM_IOEVENTFD_FLAG_DEASSIGN = 1U << kvm_ioeventfd_flag_nr_deassign;
static const uint32_t CKVM_IRQFD_FLAG_DEASSIGN = KVM_IRQFD_FLAG_DEASSIGN;
static inline struct kvm_irq_routing_entry *ckvm_irq_routing_entries(struct kvm_irq_routing *r) { return r->entries; }
static inline struct kvm_irq_routing_entry ckvm_route_irqchip(uint32_t gsi, uint32_t chip, uint32_t pin) {
    struct kvm_irq_routing_entry e;
    memset(&e, 0, sizeof(e));
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_IRQCHIP;
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    return e;
}
static inline struct kvm_irq_routing_entry ckvm_route_msi(uint32_t gsi, uint64_t address, uint32_t data) {
    struct kvm_irq_routing_entry e;
    memset(&e, 0, sizeof(e));
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_MSI;
    e.u.msi.address_lo = (uint32_t)address;
    e.u.msi.address_hi = (uint32_t)(address >> 32);
    e.u.msi.data = data;
    return e;
}

// ---- TAP devices -------------------------------------------------------------
// Why: struct ifreq and the TUN ioctls (linux/if_tun.h) do not import into
// Swift. Opens /dev/net/tun as the TAP `name` (IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR, non-blocking), sets the 12-byte virtio_net_hdr_v1 and tries
// the offloads in `offloads` (TUN_F_* bits); returns the fd or -errno, and
// in *accepted the offload bits the TAP took (0 when it took none).
static inline int ckvm_tap_open(const char *name, unsigned offloads, unsigned *accepted) {
    *accepted = 0;
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &request) < 0) { int e = errno; close(fd); return -e; }
    int header = 12;
    if (ioctl(fd, TUNSETVNETHDRSZ, &header) < 0) { int e = errno; close(fd); return -e; }
    if (offloads != 0 && ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) == 0) *accepted = offloads;
    return fd;
}
/// Sets the offloads the TAP may hand over (the driver's receive offloads).
static inline int ckvm_tap_set_offloads(int fd, unsigned offloads) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) < 0 ? -errno : 0;
}
static const unsigned CKVM_TUN_F_CSUM = TUN_F_CSUM;
static const unsigned CKVM_TUN_F_TSO4 = TUN_F_TSO4;
static const unsigned CKVM_TUN_F_TSO6 = TUN_F_TSO6;
static const unsigned CKVM_TUN_F_TSO_ECN = TUN_F_TSO_ECN;
static const unsigned CKVM_TUN_F_UFO = TUN_F_UFO;

// ---- host memory files -------------------------------------------------------
// Why: memfd_create, SEEK_DATA and SEEK_HOLE are declared by glibc only
// under _GNU_SOURCE, which the Swift Glibc module does not define; the raw
// system call has the same contract and returns the result or -errno.
static inline int ckvm_memfd_create(const char *name, unsigned flags) {
    long r = syscall(SYS_memfd_create, name, flags);
    return r < 0 ? -errno : (int)r;
}
static const int CKVM_SEEK_DATA = 3;   // SEEK_DATA (linux/fs.h, lseek(2))
static const int CKVM_SEEK_HOLE = 4;   // SEEK_HOLE
static const unsigned CKVM_MFD_CLOEXEC = 1U;   // MFD_CLOEXEC
// O_TMPFILE and AT_EMPTY_PATH are _GNU_SOURCE too (values of the x86-64 uapi).
static const int CKVM_O_TMPFILE = 020000000 | O_DIRECTORY;   // O_TMPFILE
static const int CKVM_AT_EMPTY_PATH = 0x1000;                // AT_EMPTY_PATH
static const int CKVM_O_DIRECT = 040000;                     // O_DIRECT (_GNU_SOURCE, x86-64)

// ---- kvm_run: the exit union, read in one place -----------------------------
// Small by-value snapshots so Swift never copies (or names) the whole union.

static inline uint32_t ckvm_run_exit_reason(const struct kvm_run *r) { return r->exit_reason; }

struct ckvm_io_exit { uint8_t direction; uint8_t size; uint16_t port; uint32_t count; uint64_t data_offset; };
static inline struct ckvm_io_exit ckvm_run_io(const struct kvm_run *r) {
    struct ckvm_io_exit e = { r->io.direction, r->io.size, r->io.port, r->io.count, r->io.data_offset };
    return e;
}

struct ckvm_mmio_exit { uint64_t phys_addr; uint64_t data; uint32_t len; uint8_t is_write; };
static inline struct ckvm_mmio_exit ckvm_run_mmio(const struct kvm_run *r) {
    struct ckvm_mmio_exit e = { r->mmio.phys_addr, 0, r->mmio.len, r->mmio.is_write };
    memcpy(&e.data, r->mmio.data, sizeof(e.data));
    return e;
}
static inline void ckvm_run_mmio_set_data(struct kvm_run *r, uint64_t data) {
    memcpy(r->mmio.data, &data, sizeof(data));
}

struct ckvm_msr_exit { uint32_t reason; uint32_t index; uint64_t data; };
static inline struct ckvm_msr_exit ckvm_run_msr(const struct kvm_run *r) {
    struct ckvm_msr_exit e = { r->msr.reason, r->msr.index, r->msr.data };
    return e;
}
static inline void ckvm_run_msr_complete(struct kvm_run *r, uint64_t data, uint8_t error) {
    r->msr.data = data;
    r->msr.error = error;
}

struct ckvm_hypercall_exit { uint64_t nr; uint64_t args[6]; uint64_t flags; };
static inline struct ckvm_hypercall_exit ckvm_run_hypercall(const struct kvm_run *r) {
    struct ckvm_hypercall_exit e;
    e.nr = r->hypercall.nr;
    memcpy(e.args, r->hypercall.args, sizeof(e.args));
    e.flags = r->hypercall.longmode; // low word of `flags` in newer headers
    return e;
}
static inline void ckvm_run_hypercall_set_ret(struct kvm_run *r, uint64_t ret) { r->hypercall.ret = ret; }

struct ckvm_internal_exit { uint32_t suberror; uint32_t ndata; uint64_t data[16]; };
static inline struct ckvm_internal_exit ckvm_run_internal(const struct kvm_run *r) {
    struct ckvm_internal_exit e;
    memset(&e, 0, sizeof(e));
    e.suberror = r->internal.suberror;
    e.ndata = r->internal.ndata > 16 ? 16 : r->internal.ndata;
    memcpy(e.data, r->internal.data, e.ndata * sizeof(uint64_t));
    return e;
}

static inline uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *r) {
    return r->fail_entry.hardware_entry_failure_reason;
}
struct ckvm_system_event_exit { uint32_t type; uint32_t ndata; uint64_t data0; };
static inline struct ckvm_system_event_exit ckvm_run_system_event(const struct kvm_run *r) {
    struct ckvm_system_event_exit e = { r->system_event.type, r->system_event.ndata, r->system_event.data[0] };
    return e;
}
static inline struct kvm_debug_exit_arch ckvm_run_debug(const struct kvm_run *r) { return r->debug.arch; }

// ---- synced registers (KVM_CAP_SYNC_REGS) --------------------------------
// With KVM_SYNC_X86_REGS in kvm_valid_regs, KVM copies the general registers
// into the run page on every exit: RIP for events and traces without an ioctl.
static inline void ckvm_run_set_valid_regs(struct kvm_run *r, uint64_t mask) { r->kvm_valid_regs = mask; }
static inline uint64_t ckvm_run_sync_rip(const struct kvm_run *r) { return r->s.regs.regs.rip; }
static const uint64_t CKVM_SYNC_X86_REGS = KVM_SYNC_X86_REGS;

// ---- kicking a vCPU out of KVM_RUN -------------------------------------------
// A no-op handler installed without SA_RESTART: the signal's only job is to
// make a blocking KVM_RUN return -EINTR. `immediate_exit` covers the window
// before the thread enters KVM_RUN.
static void ckvm_kick_handler(int signo) { (void)signo; }
static inline int ckvm_kick_signal(void) { return SIGRTMIN + 1; }
static inline int ckvm_install_kick_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ckvm_kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    return sigaction(ckvm_kick_signal(), &sa, NULL) < 0 ? -errno : 0;
}
// Threads inherit their creator's signal mask, and libdispatch worker threads
// block nearly everything: a vCPU thread must unblock the kick signal itself.
// pthread_sigmask and pthread_kill return an error number and leave errno
// alone: these helpers return its negation (0 on success).
static inline int ckvm_unblock_kick_signal(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, ckvm_kick_signal());
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
// 1 when the kick signal is blocked on the calling thread, 0 when not, or -error.
static inline int ckvm_kick_signal_blocked(void) {
    sigset_t current;
    sigemptyset(&current);
    int r = pthread_sigmask(SIG_BLOCK, NULL, &current);
    return r != 0 ? -r : sigismember(&current, ckvm_kick_signal());
}
// 1 when the kick signal has a handler, 0 when it is SIG_DFL (a kick would
// kill the process) or SIG_IGN (a kick would be discarded), or -errno.
static inline int ckvm_kick_handler_present(void) {
    struct sigaction current;
    if (sigaction(ckvm_kick_signal(), NULL, &current) < 0) return -errno;
    return current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
}
static inline int ckvm_kick_thread(pthread_t thread) {
    return -pthread_kill(thread, ckvm_kick_signal());
}
static inline void ckvm_run_set_immediate_exit(struct kvm_run *r, uint8_t v) {
    __atomic_store_n(&r->immediate_exit, v, __ATOMIC_SEQ_CST);
}

#pragma clang assume_nonnull end


// ---- stream sockets for live migration ---------------------------------------
// Why here: sockaddr structures are built through pointer casts that Swift
// cannot express without unsafe code, and Deflect keeps all such code in the
// KVM layer and this shim. Each helper returns a descriptor (or a count) or
// -errno; -EADDRNOTAVAIL when a host name does not resolve.

static inline int ckvm_socket_set_timeout(int fd, int milliseconds) {
    struct timeval tv = { .tv_sec = milliseconds / 1000, .tv_usec = (milliseconds % 1000) * 1000 };
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) return -errno;
    return 0;
}

/// Listens on (backlog > 0) or connects to (backlog == 0) host:port over TCP.
/// A connect gives up after timeout_ms (SO_SNDTIMEO bounds connect on Linux).
static inline int ckvm_tcp_socket(const char *_Nonnull host, uint16_t port, int backlog, int timeout_ms) {
    struct addrinfo hints, *_Nullable list = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (backlog > 0 ? AI_PASSIVE : 0);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    if (getaddrinfo(host, service, &hints, &list) != 0 || list == NULL) return -EADDRNOTAVAIL;
    int result = -EADDRNOTAVAIL;
    for (struct addrinfo *_Nullable a = list; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { result = -errno; continue; }
        int one = 1;
        int ok;
        if (backlog > 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            ok = bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, backlog) == 0;
        } else {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ok = ckvm_socket_set_timeout(fd, timeout_ms) == 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        }
        if (ok) { freeaddrinfo(list); return fd; }
        result = -errno;
        close(fd);
    }
    freeaddrinfo(list);
    return result;
}

/// Listens on (backlog > 0) or connects to (backlog == 0) a Unix stream socket.
static inline int ckvm_unix_socket(const char *_Nonnull path, int backlog, int timeout_ms) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address.sun_path) return -ENAMETOOLONG;
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int ok = backlog > 0
        ? bind(fd, (struct sockaddr *)&address, sizeof address) == 0 && listen(fd, backlog) == 0
        : ckvm_socket_set_timeout(fd, timeout_ms) == 0 && connect(fd, (struct sockaddr *)&address, sizeof address) == 0;
    if (ok) return fd;
    int error = -errno;
    close(fd);
    return error;
}

/// accept4 after waiting at most timeout_ms (-1: no limit) for a peer.
static inline int ckvm_socket_accept(int fd, int timeout_ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return -ETIMEDOUT;
        break;
    }
    int peer = accept(fd, NULL, NULL);
    if (peer < 0) return -errno;
    fcntl(peer, F_SETFD, FD_CLOEXEC);
    return peer;
}

/// The local port of a TCP socket (0 for other sockets).
static inline int ckvm_socket_port(int fd) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return -errno;
    if (address.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&address)->sin_port);
    if (address.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    return 0;
}

/// Reads until `count` bytes or end of stream; the bytes read, or -errno
/// (-EAGAIN when the receive timeout passed).
static inline long ckvm_socket_read_full(int fd, void *_Nullable buffer, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = recv(fd, (char *)buffer + done, count - done, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) break;
        done += (size_t)n;
    }
    return (long)done;
}

/// Writes all `count` bytes (no SIGPIPE); 0 or -errno.
static inline long ckvm_socket_write_full(int fd, const void *_Nullable buffer, size_t count) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = send(fd, (const char *)buffer + done, count - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        done += (size_t)n;
    }
    return 0;
}

#endif
