/* LD_PRELOAD shim for tests/pynn/test_fast_path.py: counts calls to the C allocator, so a
 * test can show that a compiled training step allocates nothing (tracemalloc sees only
 * Python's allocations). Each call is passed on to glibc's own implementation. */
#include <stddef.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static long allocations = 0;

static void counted(void) { __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED); }

void *malloc(size_t size) { counted(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { counted(); return __libc_calloc(count, size); }
void *realloc(void *ptr, size_t size) { counted(); return __libc_realloc(ptr, size); }
void *memalign(size_t alignment, size_t size) { counted(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) {
    counted();
    return __libc_memalign(alignment, size);
}
int posix_memalign(void **out, size_t alignment, size_t size) {
    counted();
    *out = __libc_memalign(alignment, size);
    return *out == NULL ? 12 /* ENOMEM */ : 0;
}

long malloc_count(void) { return __atomic_load_n(&allocations, __ATOMIC_RELAXED); }
