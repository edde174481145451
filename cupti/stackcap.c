#include "stackcap.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

struct range {
	uintptr_t lo, hi;
};

static struct range ranges[STACKCAP_MAX_RANGES];
static size_t nranges;

struct thread_bounds {
	uintptr_t lo, hi;
	int state; /* 0 unknown, 1 known, -1 unavailable */
};

static __thread struct thread_bounds tb;

int stackcap_ignore_range(uintptr_t lo, uintptr_t hi)
{
	if (nranges == STACKCAP_MAX_RANGES)
		return -ENOSPC;
	ranges[nranges].lo = lo;
	ranges[nranges].hi = hi;
	nranges++;
	return 0;
}

void stackcap_clear_ranges(void)
{
	nranges = 0;
}

struct phdr_ctx {
	const char *const *names;
	uintptr_t self_base;
	int added;
};

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct phdr_ctx *c = data;
	bool want = c->self_base && info->dlpi_addr == c->self_base;

	(void)size;
	for (size_t i = 0; !want && c->names && c->names[i]; i++)
		want = info->dlpi_name && strstr(info->dlpi_name, c->names[i]);
	if (!want)
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		if (stackcap_ignore_range(info->dlpi_addr + ph->p_vaddr,
					  info->dlpi_addr + ph->p_vaddr + ph->p_memsz) == 0)
			c->added++;
	}
	return 0;
}

int stackcap_ignore_objects(const char *const *names, const void *self)
{
	struct phdr_ctx c = { .names = names };
	Dl_info di;

	if (self && dladdr(self, &di) && di.dli_fbase) {
		/* dlpi_addr is the load bias; for a shared object it equals the base address. */
		c.self_base = (uintptr_t)di.dli_fbase;
	}
	dl_iterate_phdr(phdr_cb, &c);
	return c.added;
}

static bool ignored(uintptr_t pc)
{
	for (size_t i = 0; i < nranges; i++)
		if (pc >= ranges[i].lo && pc < ranges[i].hi)
			return true;
	return false;
}

static bool thread_bounds(uintptr_t *lo, uintptr_t *hi)
{
	pthread_attr_t attr;
	void *addr;
	size_t size;

	if (tb.state == 0) {
		tb.state = -1;
		if (pthread_getattr_np(pthread_self(), &attr) == 0) {
			if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
				tb.lo = (uintptr_t)addr;
				tb.hi = (uintptr_t)addr + size;
				tb.state = 1;
			}
			pthread_attr_destroy(&attr);
		}
	}
	*lo = tb.lo;
	*hi = tb.hi;
	return tb.state == 1;
}

/* Frame-pointer walk from this function. Clean when the chain ends with a NULL frame pointer
 * or a zero return address (as _start and clone leave it), having left the ignored ranges. */
static __attribute__((noinline)) size_t fp_walk(uint64_t *pcs, size_t max, bool *ret_clean)
{
	uintptr_t lo, hi, fp = (uintptr_t)__builtin_frame_address(0);
	bool outside = false;
	size_t n = 0;

	*ret_clean = false;
	if (!thread_bounds(&lo, &hi))
		return 0;
	while (n < max) {
		uintptr_t next, ret;

		if (fp < lo || fp > hi - 2 * sizeof(uintptr_t) || (fp & (sizeof(uintptr_t) - 1)))
			return n;
		next = ((const uintptr_t *)fp)[0];
		ret = ((const uintptr_t *)fp)[1];
		if (ret == 0) {
			*ret_clean = outside;
			return n;
		}
		if (ret < 4096)
			return n;
		if (!outside && ignored(ret))
			;
		else {
			outside = true;
			pcs[n++] = ret;
		}
		if (next == 0) {
			*ret_clean = outside;
			return n;
		}
		if (next <= fp)
			return n;
		fp = next;
	}
	*ret_clean = outside;
	return n;
}

size_t stackcap_capture(uint64_t *pcs, size_t max, bool *ret_fallback)
{
	void *buf[256];
	bool clean;
	size_t n, skip;
	int got;

	*ret_fallback = false;
	if (max == 0)
		return 0;
	n = fp_walk(pcs, max, &clean);
	if (clean || n == max)
		return n;

	*ret_fallback = true;
	got = unw_backtrace(buf, (int)(max + 32 < 256 ? max + 32 : 256));
	if (got <= 0)
		return 0;
	for (skip = 0; skip < (size_t)got && ignored((uintptr_t)buf[skip]); skip++)
		;
	/* Our own frames come first; if no range was registered, skip at least this one. */
	if (nranges == 0 && got > 0)
		skip = 1;
	n = 0;
	for (size_t i = skip; i < (size_t)got && n < max; i++)
		pcs[n++] = (uint64_t)(uintptr_t)buf[i];
	return n;
}

bool stackcap_take(struct stackcap_bucket *b, double rate, double burst, uint64_t now_ns)
{
	if (rate < 0)
		return true;
	if (!b->primed) {
		b->primed = true;
		b->tokens = burst;
		b->last_ns = now_ns;
	} else if (now_ns > b->last_ns) {
		b->tokens += (double)(now_ns - b->last_ns) * 1e-9 * rate;
		if (b->tokens > burst)
			b->tokens = burst;
		b->last_ns = now_ns;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return true;
	}
	return false;
}

uint64_t stackcap_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
