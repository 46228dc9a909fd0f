// Prints KVM_GET_SUPPORTED_CPUID of this host as the "leaves" of a host file here:
//   gcc -O1 -o /tmp/dump dump-supported-cpuid.c && /tmp/dump
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
int main(void) {
    int kvm = open("/dev/kvm", O_RDWR);
    if (kvm < 0) { perror("/dev/kvm"); return 1; }
    int n = 256;
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof(struct kvm_cpuid_entry2));
    c->nent = n;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) < 0) { perror("KVM_GET_SUPPORTED_CPUID"); return 1; }
    printf("[\n");
    for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        printf("  {\"function\": %u, \"index\": %u, \"flags\": %u, \"eax\": %u, \"ebx\": %u, \"ecx\": %u, \"edx\": %u}%s\n",
               e->function, e->index, e->flags, e->eax, e->ebx, e->ecx, e->edx, i + 1 < c->nent ? "," : "");
    }
    printf("]\n");
    return 0;
}
