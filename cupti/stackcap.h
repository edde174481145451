/* stackcap: the launching thread's native stack, captured inside a CUPTI callback.
 *
 * Walks frame pointers first (about 1 ns a frame) and falls back to libunwind's unw_backtrace
 * when the chain does not end cleanly (libcupti, libcuda and most of Debian are built without
 * frame pointers). Leading frames inside the ignored address ranges (this library, libcupti,
 * libcuda) are dropped, so a stack starts at the CUDA API the application called. PCs are
 * return addresses, innermost first. Also a per-thread token bucket for rate limiting.
 * Ranges are set once before any capture; capture itself is thread-safe and allocation-free. */
#ifndef EMBER_CUPTI_STACKCAP_H
#define EMBER_CUPTI_STACKCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STACKCAP_MAX_RANGES 16

/* Drops leading frames whose PC lies in [lo, hi). Returns 0 or -ENOSPC. Not thread-safe:
 * call before the first capture. */
int stackcap_ignore_range(uintptr_t lo, uintptr_t hi);
/* Adds the executable segments of every loaded object whose path contains one of `names`
 * (NULL-terminated), and of the object holding `self` (may be NULL). Returns ranges added. */
int stackcap_ignore_objects(const char *const *names, const void *self);
void stackcap_clear_ranges(void);

/* Captures up to max PCs into pcs; *ret_fallback tells whether unw_backtrace was used.
 * Returns the number of PCs (0 when nothing could be walked). */
size_t stackcap_capture(uint64_t *pcs, size_t max, bool *ret_fallback);

/* Token bucket: `rate` tokens per second, at most `burst`; rate < 0 means unlimited.
 * Embed one per thread, zero-initialised. */
struct stackcap_bucket {
	uint64_t last_ns;
	double tokens;
	bool primed;
};

/* Takes one token at time now_ns (CLOCK_MONOTONIC). True if the caller may walk. */
bool stackcap_take(struct stackcap_bucket *b, double rate, double burst, uint64_t now_ns);

/* CLOCK_MONOTONIC_COARSE in ns: cheap enough for every launch. */
uint64_t stackcap_now_ns(void);

#endif
