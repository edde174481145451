/* util: small helpers every module needs: overflow-checked array growth and clocks.
 * Thread-safe (no state). */
#ifndef EMBER_UTIL_H
#define EMBER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define NSEC_PER_SEC 1000000000LL

/* Makes room for `need` elements of `elem` bytes in *p (capacity *cap, doubled as needed,
 * starting at 16). *p and *cap change only on success. Returns 0 or -ENOMEM (also when the
 * size would overflow). */
int util_grow(void **p, size_t *cap, size_t need, size_t elem);

/* Now on clock, in nanoseconds. */
static inline int64_t util_now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

#endif
