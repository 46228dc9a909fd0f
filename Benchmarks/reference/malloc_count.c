/* malloc_count: an LD_PRELOAD shim that counts heap allocations, so the
 * benchmark can report allocations per VM exit. It forwards to glibc's
 * __libc_* entry points (no dlsym, which itself allocates). */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static _Atomic unsigned long long allocation_calls;

static inline void count(void) { atomic_fetch_add_explicit(&allocation_calls, 1, memory_order_relaxed); }

void *malloc(size_t size) { count(); return __libc_malloc(size); }
void *calloc(size_t count_, size_t size) { count(); return __libc_calloc(count_, size); }
void *realloc(void *pointer, size_t size) { count(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    count();
    void *p = __libc_memalign(alignment, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* Read by the benchmark through dlsym(RTLD_DEFAULT, ...). */
unsigned long long deflect_malloc_calls(void) {
    return atomic_load_explicit(&allocation_calls, memory_order_relaxed);
}
