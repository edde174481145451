/* libinterpose_floor.so: the least an LD_PRELOAD allocation sampler can do. malloc, calloc,
 * realloc and free pass straight to glibc; nothing is counted or sampled. bench_alloc.py runs
 * mloop under it to show what interposition itself costs, apart from libember_alloc.so's
 * sampling logic. */
#include <stddef.h>

#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

EXPORT void *malloc(size_t size);
EXPORT void *calloc(size_t n, size_t size);
EXPORT void *realloc(void *p, size_t size);
EXPORT void free(void *p);

EXPORT void *malloc(size_t size)
{
	return __libc_malloc(size);
}

EXPORT void *calloc(size_t n, size_t size)
{
	return __libc_calloc(n, size);
}

EXPORT void *realloc(void *p, size_t size)
{
	return __libc_realloc(p, size);
}

EXPORT void free(void *p)
{
	__libc_free(p);
}
