/* stackagg: symbolized stacks of one profile for one interval, merged, then turned into a pprof
 * (and optionally a flame graph) under the server's limits.
 *
 * Stacks are leaf-first arrays of frames with a value vector (1 value for CPU, 4 for memory,
 * 2 for GPU). Frame names, mapping paths and source files are interned, so callers' strings
 * need only live for the call. Frames that differ only by source line are distinct frames in
 * the pprof; the flame graph shows frames by name. stackagg_build() keeps the hottest stacks (by value 0) that fit within
 * max_samples and max_bytes (uncompressed pprof) and folds the rest into one "[other]" stack,
 * reporting how many were folded. Not thread-safe. */
#ifndef EMBER_STACKAGG_H
#define EMBER_STACKAGG_H

#include <stddef.h>
#include <stdint.h>

#include "flamegraph.h"
#include "pprof.h"
#include "symframe.h"

struct stackagg;

struct stackagg_profile {
	const struct pprof_value_type *types; /* ntypes == the aggregator's nvalues */
	const struct pprof_value_type *period_type;
	int64_t period;
	int64_t time_nanos, duration_nanos;
	size_t max_samples;   /* 0: no limit */
	size_t max_bytes;     /* uncompressed pprof; 0: no limit */
	const char *comment;  /* optional pprof comment */
};

struct stackagg_result {
	uint8_t *pprof_gz;    /* malloc'd gzipped pprof */
	size_t pprof_len;
	size_t pprof_raw_len; /* uncompressed size */
	uint8_t *svg;         /* malloc'd SVG, or NULL without a flame graph view */
	size_t svg_len;
	size_t samples;       /* distinct stacks written, "[other]" included */
	size_t folded;        /* stacks folded into "[other]" */
};

int stackagg_new(size_t nvalues, struct stackagg **ret_agg);
void stackagg_free(struct stackagg *a);

/* Adds values to the stack frames[0..n-1] (leaf first). Returns 0, -EINVAL or -ENOMEM. */
int stackagg_add(struct stackagg *a, const struct sym_frame *frames, size_t n,
		 const int64_t *values);

size_t stackagg_count(const struct stackagg *a);
/* Sum of value idx over every stack. */
int64_t stackagg_total(const struct stackagg *a, size_t idx);

/* Encodes the profile (see above) and, when fg is not NULL, the flame graph of the same stacks
 * ("[other]" included) as that view presents them. Frees nothing: the aggregator can be built
 * again or freed. Returns 0 or -errno; on success the caller owns the result's buffers. */
int stackagg_build(struct stackagg *a, const struct stackagg_profile *p,
		   const struct flamegraph_view *fg, struct stackagg_result *ret);

void stackagg_result_fini(struct stackagg_result *r);

#endif
