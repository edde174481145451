/* flamegraph: a tree of stacks rendered as a self-contained, interactive SVG flame graph.
 *
 * Stacks are added root first with a count; identical prefixes are merged. The SVG has frames
 * whose width is proportional to the count, the root at the bottom, names inside frames that
 * fit, a title with the total, <title> hover text with counts and percentages, and an inline
 * script for click-to-zoom (no network access). Not thread-safe. Strings are copied. */
#ifndef EMBER_FLAMEGRAPH_H
#define EMBER_FLAMEGRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct flamegraph;

/* How a profile is shown as a flame graph: its title, what a count means, which of the
 * profile's values it shows and a divisor (the CPU period, so that the graph counts samples). */
struct flamegraph_view {
	const char *title;
	const char *unit;
	size_t value;
	int64_t divisor;
};

/* The usual view of family ("cpu": samples; "alloc": allocated bytes; "gpu": GPU ns; others:
 * value 0 as is) for a profile of that period, titled title. */
void flamegraph_view_of(const char *family, int64_t period, const char *title,
			struct flamegraph_view *ret);

/* unit names what a count means in hover text, e.g. "samples" or "bytes". */
struct flamegraph *flamegraph_new(const char *title, const char *unit);
void flamegraph_free(struct flamegraph *fg);

/* frames[0] is the root (e.g. the process), frames[n-1] the leaf. Returns 0 or -ENOMEM. */
int flamegraph_add(struct flamegraph *fg, const char *const *frames, size_t n, uint64_t count);

uint64_t flamegraph_total(const struct flamegraph *fg);

/* Writes the SVG. Returns 0 or -errno (-EIO on a write error). */
int flamegraph_write(const struct flamegraph *fg, FILE *out);
/* Writes to path with fileio_write_atomic() (mode 0644). Returns 0 or -errno. */
int flamegraph_write_file(const struct flamegraph *fg, const char *path);

#endif
