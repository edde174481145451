/* unwind_chain: see unwind_chain.h. The .debug_frame half: built with
 * -fno-asynchronous-unwind-tables -fno-unwind-tables -g, so its CFI is in .debug_frame only. */
#include "unwind_chain.h"

#include <stdlib.h>

static volatile int sink;
static int captured;

__attribute__((noinline, noclone)) static void chain_df_c(void)
{
	chain_capture();
	sink++;
}

__attribute__((noinline, noclone)) static int chain_df_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	if (!captured) {
		captured = 1;
		chain_df_c();
	}
	sink++;
	return (x > y) - (x < y);
}

__attribute__((noinline, noclone)) static int chain_df_b(void)
{
	static const int keys[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int key = 6;
	void *(*bsearch_fn)(const void *, const void *, size_t, size_t,
			    int (*)(const void *, const void *));
	const int *hit;

	/* through a pointer: <stdlib.h> would inline bsearch, and ASan interposes it */
	bsearch_fn = (void *(*)(const void *, const void *, size_t, size_t,
				int (*)(const void *, const void *)))chain_libc_sym("bsearch");
	if (!bsearch_fn)
		return -1;
	captured = 0;
	hit = bsearch_fn(&key, keys, 8, sizeof(keys[0]), chain_df_cmp);
	sink++;
	return hit ? *hit : -1;
}

__attribute__((noinline)) int chain_df_a(void)
{
	int r = chain_df_b();

	sink++;
	return r + 1;
}
