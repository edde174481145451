/* alloc_preload: libember_alloc.so, the in-process allocation sampler of preload mode.
 *
 * LD_PRELOAD=libember_alloc.so CMD (what `ember run --profiles alloc -- CMD` does) interposes
 * malloc, calloc, realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign, valloc
 * and pvalloc, and forwards them to glibc's __libc_* entry points (no dlsym, so there is no
 * recursion and nothing to initialise: allocations made before constructors run are served).
 * Sampling is the agent's byte-interval scheme (bpf/alloc_sample.h) with a thread-local
 * countdown: an unsampled call costs a decrement and a branch. A sampled allocation fires the
 * USDT probe ember_alloc:alloc(ptr, size, interval, flags) and is remembered in a lock-free
 * table of sampled live addresses; free() checks that table (one load when the slot is empty)
 * and fires ember_alloc:free(ptr) for sampled addresses only. The agent attaches to both.
 * Threads: per-thread countdown, lock-free table. fork: memory is inherited as the heap is.
 * exec: LD_PRELOAD is inherited. dlopen: interposition is global, nothing to redo.
 * EMBER_ALLOC_SAMPLE_BYTES sets the mean interval (default 512 KiB). */
#include <errno.h>
#include <linux/types.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>
#include <unistd.h>
#include <x86intrin.h>

#include "alloc_sample.h"

#define EXPORT __attribute__((visibility("default")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/* Sampled live addresses: open addressing, 8 probes, CAS updates. 0 empty, 1 deleted. */
#define TABLE_BITS 16
#define TABLE_PROBES 8
#define TOMBSTONE ((uintptr_t)1)
static uintptr_t table[1u << TABLE_BITS];
static long table_live; /* sampled addresses in the table; 0 lets free skip the lookup */

static __u64 interval = ALLOC_SAMPLE_DEFAULT_BYTES;
static __thread int64_t remaining __attribute__((tls_model("initial-exec")));
static __thread __u64 rng __attribute__((tls_model("initial-exec")));

static inline size_t slot_of(uintptr_t p)
{
	return (size_t)(((__u64)p >> 4) * 0x9e3779b97f4a7c15ULL >> (64 - TABLE_BITS));
}

static bool table_insert(uintptr_t p)
{
	size_t s = slot_of(p);

	for (int i = 0; i < TABLE_PROBES; i++, s = (s + 1) & ((1u << TABLE_BITS) - 1)) {
		uintptr_t cur = __atomic_load_n(&table[s], __ATOMIC_RELAXED);

		if ((cur == 0 || cur == TOMBSTONE) &&
		    __atomic_compare_exchange_n(&table[s], &cur, p, false, __ATOMIC_RELEASE,
						__ATOMIC_RELAXED)) {
			__atomic_add_fetch(&table_live, 1, __ATOMIC_RELAXED);
			return true;
		}
	}
	return false;
}

/* Removes p if it is a sampled address. Returns true if it was. */
static bool table_remove(uintptr_t p)
{
	size_t s = slot_of(p);

	for (int i = 0; i < TABLE_PROBES; i++, s = (s + 1) & ((1u << TABLE_BITS) - 1)) {
		uintptr_t cur = __atomic_load_n(&table[s], __ATOMIC_RELAXED);

		if (cur == 0)
			return false;
		if (cur == p && __atomic_compare_exchange_n(&table[s], &cur, TOMBSTONE, false,
							    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			__atomic_sub_fetch(&table_live, 1, __ATOMIC_RELAXED);
			return true;
		}
	}
	return false;
}

static __u32 next_random(void)
{
	__u64 x = rng;

	if (!x)
		x = ((__u64)(uintptr_t)&remaining ^ __rdtsc() ^ ((__u64)getpid() << 32)) | 1;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng = x;
	return (__u32)((x * 0x2545f4914f6cdd1dULL) >> 32);
}

/* The countdown went through zero (or was never set on this thread). Returns true when this
 * allocation is sampled, and draws the next gap. */
static __attribute__((noinline)) bool countdown_expired(size_t size)
{
	if (!rng) {
		/* First allocation of this thread: draw the first gap, then account for it. */
		remaining = (int64_t)alloc_sample_gap(next_random(), interval) - (int64_t)size;
		if (remaining > 0)
			return false;
	}
	remaining = (int64_t)alloc_sample_gap(next_random(), interval);
	return true;
}

/* The probe site: callers tail-call here so that the frame-pointer chain above the probe is
 * this function, then the application's call site. */
static __attribute__((noinline)) void *report(void *p, size_t size)
{
	__u64 flags = 0, iv = interval;

	/* Force a frame here (GCC drops it in leaf functions even with -fno-omit-frame-pointer):
	 * the probe's stack walk then goes report -> the caller of malloc -> ... */
	__asm__ volatile("" : : "r"(__builtin_frame_address(0)) : "memory");
	if (p) {
		if (!table_insert((uintptr_t)p))
			flags |= 1; /* untracked: its free will not be reported */
		DTRACE_PROBE4(ember_alloc, alloc, p, size, iv, flags);
	}
	return p;
}

static inline bool sampled(size_t size)
{
	remaining -= (int64_t)size;
	if (likely(remaining > 0))
		return false;
	return countdown_expired(size);
}

static inline void forget(void *p)
{
	if (unlikely(__atomic_load_n(&table_live, __ATOMIC_RELAXED) != 0) &&
	    table_remove((uintptr_t)p))
		DTRACE_PROBE1(ember_alloc, free, p);
}

EXPORT void *malloc(size_t size)
{
	if (likely(!sampled(size)))
		return __libc_malloc(size);
	return report(__libc_malloc(size), size);
}

EXPORT void free(void *p)
{
	if (p)
		forget(p);
	__libc_free(p);
}

EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total) || likely(!sampled(total)))
		return __libc_calloc(n, size);
	return report(__libc_calloc(n, size), total);
}

EXPORT void *realloc(void *p, size_t size)
{
	if (p)
		forget(p);
	if (likely(!sampled(size)))
		return __libc_realloc(p, size);
	return report(__libc_realloc(p, size), size);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, total);
}

EXPORT void *memalign(size_t align, size_t size)
{
	if (likely(!sampled(size)))
		return __libc_memalign(align, size);
	return report(__libc_memalign(align, size), size);
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
	return memalign(align, size);
}

EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
	void *p;

	if (align % sizeof(void *) || (align & (align - 1)) || !align)
		return EINVAL;
	p = memalign(align, size);
	if (!p)
		return ENOMEM;
	*memptr = p;
	return 0;
}

EXPORT void *valloc(size_t size)
{
	if (likely(!sampled(size)))
		return __libc_valloc(size);
	return report(__libc_valloc(size), size);
}

EXPORT void *pvalloc(size_t size)
{
	if (likely(!sampled(size)))
		return __libc_pvalloc(size);
	return report(__libc_pvalloc(size), size);
}

__attribute__((constructor)) static void ember_alloc_init(void)
{
	const char *v = getenv("EMBER_ALLOC_SAMPLE_BYTES");
	char *end;
	unsigned long long n;

	if (!v || !*v)
		return;
	n = strtoull(v, &end, 10);
	if (!*end && n > 0)
		interval = n;
}
