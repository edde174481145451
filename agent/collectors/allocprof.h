/* allocprof: memory profiles (the `memory` family: alloc_objects, alloc_space, inuse_objects,
 * inuse_space; period space/bytes = the sampling interval) from an alloc_collector.
 *
 * allocprof_frames() symbolizes one alloc_stack, leaf first (the allocating call site leads;
 * preload-library frames are dropped). An allocprof bundles a collector with one aggregator for
 * single-service use (`record`, `run`): drain per interval, then build the pprof. The agent,
 * which has one aggregator per service, calls alloc_collector_drain() and allocprof_frames()
 * itself and uses allocprof_describe() for the profile header. Not thread-safe. */
#ifndef EMBER_ALLOCPROF_H
#define EMBER_ALLOCPROF_H

#include <stddef.h>

#include "alloc_collector.h"
#include "stackagg.h"
#include "symbolizer.h"

#define ALLOCPROF_MAX_FRAMES (EMBER_MAX_STACK_DEPTH + 1)

/* Fills frames[ALLOCPROF_MAX_FRAMES] and returns how many (at least 1). Strings belong to the
 * symbolizer, as with cpuprof_frames(). */
size_t allocprof_frames(struct symbolizer *sym, const struct alloc_stack *s,
			struct sym_frame *frames);

/* Fills the memory family's value types (4), period type and period (the collector's
 * interval) into p, and a comment saying whether the live set is complete into comment. */
void allocprof_describe(struct alloc_collector *c, struct pprof_value_type types[4],
			struct pprof_value_type *period_type, struct stackagg_profile *p,
			char *comment, size_t comment_size);

/* Path of libember_alloc.so: $EMBER_ALLOC_PRELOAD, else next to the running executable.
 * Returns 0 and writes buf, or -ENOENT. */
int allocprof_preload_path(char *buf, size_t size);

struct allocprof;

int allocprof_new(const struct alloc_collector_opts *opts, struct allocprof **ret_ap);
void allocprof_free(struct allocprof *ap);
struct alloc_collector *allocprof_collector(struct allocprof *ap);

/* Drains the collector (end of an interval) into the aggregator. Returns 0 or -errno. */
int allocprof_drain(struct allocprof *ap, struct symbolizer *sym);
/* Encodes the aggregated interval(s) and empties the aggregator. fg_title NULL: no SVG.
 * Returns 0 or -errno; the caller owns ret's buffers (stackagg_result_fini). */
int allocprof_build(struct allocprof *ap, int64_t time_nanos, int64_t duration_nanos,
		    const char *fg_title, struct stackagg_result *ret);
/* Estimated totals aggregated so far: alloc_objects, alloc_space, inuse_objects, inuse_space. */
void allocprof_totals(struct allocprof *ap, int64_t ret_totals[4]);

#endif
