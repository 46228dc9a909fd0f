/*
 * msr_loop — reference for Deflect's MSR exit-path benchmark: the smallest
 * KVM_RUN loop that does what Deflect does for a user-space MSR exit, so the
 * Swift numbers can be reported as a ratio against it, measured in the same run.
 *
 * Usage: msr_loop ITERATIONS [rdmsr|wrmsr|kernel] [IMAGE]
 *   IMAGE defaults to Guests/build/real/msr_loop.bin (relative to the
 *   repository root); it is the same real-mode guest Deflect's benchmark runs
 *   (source: Guests/real/msr_loop.S; parameter block at image offsets 4, 8, 12).
 *
 * Machine: 2 MiB of RAM at guest-physical 0, one vCPU in real mode (CS:IP =
 * 0:0x7c00, flat 64 KiB segments at base 0, SP 0x7000), the image at 0x7c00.
 * The vCPU gets KVM's supported CPUID (KVM_SET_CPUID2), as Deflect's do.
 * KVM_CAP_X86_USER_SPACE_MSR is enabled with KVM_MSR_EXIT_REASON_FILTER only,
 * and one MSR filter is installed in every mode: default allow, one range
 * denying reads and writes of MSR_IA32_SYSENTER_ESP (0x175). 0x175 is an MSR
 * KVM implements, so the filter is the only reason its accesses leave the
 * kernel; every other MSR stays in KVM.
 *   rdmsr   guest does ITERATIONS x RDMSR 0x175: each one a KVM_EXIT_X86_RDMSR,
 *           answered with data = 0x0123456789abcdef
 *   wrmsr   guest does ITERATIONS x WRMSR 0x175 (value 0): each one a
 *           KVM_EXIT_X86_WRMSR, accepted (error = 0)
 *   kernel  guest does ITERATIONS x RDMSR 0x174 (MSR_IA32_SYSENTER_CS),
 *           allowed by the filter and handled inside KVM: no user-space exit
 * The guest ends by writing 0x4d to port 0xf4.
 *
 * Output (stdout, one line):
 *   iterations=N exits=M seconds=S ns_per_iteration=X
 * exits counts every KVM_RUN return, including the final port write; seconds
 * is CLOCK_MONOTONIC from the first KVM_RUN to the port-0xf4 exit.
 * Exit status 0 on success, 1 on a usage or setup error, 2 on an unexpected
 * exit, 3 if the run takes longer than 120 s (alarm).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEMORY_SIZE     (2u << 20)
#define LOAD_ADDRESS    0x7c00u
#define STACK_TOP       0x7000u
#define DEBUG_EXIT_PORT 0xf4
#define GUEST_DONE      0x4d
#define MSR_USER        0x175u  /* MSR_IA32_SYSENTER_ESP: denied by the filter */
#define MSR_KERNEL      0x174u  /* MSR_IA32_SYSENTER_CS: allowed, KVM handles it */
#define READ_ANSWER     0x0123456789abcdefull
/* Guests/real/msr_loop.S parameter block */
#define PARAM_ITERATIONS 4
#define PARAM_MSR        8
#define PARAM_OPERATION  12

static void die(const char *what)
{
    fprintf(stderr, "msr_loop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char message[] = "msr_loop: timed out (KVM_RUN did not come back)\n";
    if (write(2, message, sizeof message - 1) < 0) {
        /* nothing more to do */
    }
    _exit(3);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

static size_t load_image(const char *path, uint8_t *dst, size_t room)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    size_t n = fread(dst, 1, room, f);
    if (ferror(f))
        die(path);
    if (!feof(f) && fgetc(f) != EOF) {
        fprintf(stderr, "msr_loop: %s does not fit below 640 KiB\n", path);
        exit(1);
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: msr_loop ITERATIONS [rdmsr|wrmsr|kernel] [IMAGE]\n");
        return 1;
    }
    char *end;
    errno = 0;
    unsigned long iterations = strtoul(argv[1], &end, 0);
    if (errno || *end || end == argv[1] || iterations > UINT32_MAX) {
        fprintf(stderr, "msr_loop: bad ITERATIONS '%s'\n", argv[1]);
        return 1;
    }
    const char *mode = argc > 2 ? argv[2] : "rdmsr";
    uint32_t msr, operation;
    if (!strcmp(mode, "rdmsr")) {
        msr = MSR_USER; operation = 0;
    } else if (!strcmp(mode, "wrmsr")) {
        msr = MSR_USER; operation = 1;
    } else if (!strcmp(mode, "kernel")) {
        msr = MSR_KERNEL; operation = 0;
    } else {
        fprintf(stderr, "msr_loop: mode must be rdmsr, wrmsr or kernel, not '%s'\n", mode);
        return 1;
    }
    const char *image = argc > 3 ? argv[3] : "Guests/build/real/msr_loop.bin";

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fprintf(stderr, "msr_loop: unexpected KVM API version\n");
        return 1;
    }
    /* Both answer 1 (not a mask of exit reasons) on Linux 6.18. */
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR) <= 0 ||
        ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER) <= 0) {
        fprintf(stderr, "msr_loop: KVM lacks user-space MSR exits or MSR filters\n");
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");

    uint8_t *memory = mmap(NULL, MEMORY_SIZE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED)
        die("mmap guest memory");
    size_t size = load_image(image, memory + LOAD_ADDRESS, 0xa0000 - LOAD_ADDRESS);
    if (size < PARAM_OPERATION + 4) {
        fprintf(stderr, "msr_loop: %s is too small to be msr_loop.bin\n", image);
        return 1;
    }
    put32(memory + LOAD_ADDRESS + PARAM_ITERATIONS, (uint32_t)iterations);
    put32(memory + LOAD_ADDRESS + PARAM_MSR, msr);
    put32(memory + LOAD_ADDRESS + PARAM_OPERATION, operation);

    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEMORY_SIZE,
        .userspace_addr = (uintptr_t)memory,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");

    struct kvm_enable_cap cap = {
        .cap = KVM_CAP_X86_USER_SPACE_MSR,
        .args = { KVM_MSR_EXIT_REASON_FILTER },
    };
    if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0)
        die("KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)");
    uint8_t deny = 0;   /* bit 0 clear: MSR_USER denied */
    struct kvm_msr_filter filter = {
        .flags = KVM_MSR_FILTER_DEFAULT_ALLOW,
        .ranges = { { .flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
                      .nmsrs = 1, .base = MSR_USER, .bitmap = &deny } },
    };
    if (ioctl(vm, KVM_X86_SET_MSR_FILTER, &filter) < 0)
        die("KVM_X86_SET_MSR_FILTER");

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    /* The vCPU presents KVM's supported CPUID, as Deflect's vCPUs do: the
     * features it enables change what KVM does on every entry and exit, so
     * both sides of the comparison must have the same. */
    {
        int nent = 256;
        struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
        if (!cpuid)
            die("calloc");
        cpuid->nent = nent;
        if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
            die("KVM_GET_SUPPORTED_CPUID");
        if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
            die("KVM_SET_CPUID2");
        free(cpuid);
    }
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    struct kvm_segment *data_segments[] = { &sregs.ds, &sregs.es, &sregs.fs, &sregs.gs, &sregs.ss };
    for (size_t i = 0; i < sizeof data_segments / sizeof data_segments[0]; i++) {
        data_segments[i]->base = 0;
        data_segments[i]->selector = 0;
    }
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = LOAD_ADDRESS, .rsp = STACK_TOP, .rflags = 0x2 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");

    signal(SIGALRM, on_alarm);
    alarm(120);

    unsigned long exits = 0, reads = 0, writes = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        exits++;
        switch (run->exit_reason) {
        case KVM_EXIT_X86_RDMSR:
            run->msr.data = READ_ANSWER;
            run->msr.error = 0;
            reads++;
            continue;
        case KVM_EXIT_X86_WRMSR:
            run->msr.error = 0;
            writes++;
            continue;
        case KVM_EXIT_IO:
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == DEBUG_EXIT_PORT) {
                uint8_t value = *((uint8_t *)run + run->io.data_offset);
                if (value != GUEST_DONE) {
                    fprintf(stderr, "msr_loop: guest exited with 0x%x, not 0x%x\n", value, GUEST_DONE);
                    return 2;
                }
                goto done;
            }
            continue;   /* any other port: ignore, as an unowned port */
        default: {
            struct kvm_regs r;
            ioctl(vcpu, KVM_GET_REGS, &r);
            fprintf(stderr, "msr_loop: unexpected exit %u at rip 0x%llx (ecx 0x%llx, rbx 0x%llx)\n",
                    run->exit_reason, r.rip, r.rcx, r.rbx);
            return 2;
        }
        }
    }
done:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (!strcmp(mode, "rdmsr") && iterations > 0) {
        /* The last RDMSR's answer must have reached the guest's EDX:EAX
           (AL then carries the debug-exit value, so it is not compared). */
        struct kvm_regs r;
        if (ioctl(vcpu, KVM_GET_REGS, &r) < 0)
            die("KVM_GET_REGS");
        if (((uint32_t)r.rax >> 8) != ((uint32_t)READ_ANSWER >> 8) ||
            (uint32_t)r.rdx != (uint32_t)(READ_ANSWER >> 32))
            fprintf(stderr, "msr_loop: warning: guest EDX:EAX = %08llx:%08llx, not the answer\n",
                    r.rdx & 0xffffffffull, r.rax & 0xffffffffull);
    }
    unsigned long expected_user = strcmp(mode, "kernel") ? iterations : 0;
    if (reads + writes != expected_user)
        fprintf(stderr, "msr_loop: warning: %lu MSR exits, expected %lu\n", reads + writes, expected_user);
    printf("iterations=%lu exits=%lu seconds=%.6f ns_per_iteration=%.1f\n",
           iterations, exits, seconds, iterations ? seconds * 1e9 / (double)iterations : 0.0);
    return 0;
}
