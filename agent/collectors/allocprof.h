/* allocprof: the frames of memory profiles (the `memory` family: alloc_objects, alloc_space,
 * inuse_objects, inuse_space; period space/bytes = the sampling interval) from an
 * alloc_collector. allocprof_frames() symbolizes one alloc_stack, leaf first (the allocating
 * call site leads; preload-library frames are dropped). Not thread-safe. */
#ifndef EMBER_ALLOCPROF_H
#define EMBER_ALLOCPROF_H

#include <stddef.h>

#include "alloc_collector.h"
#include "pystack.h"
#include "symframe.h"
#include "symbolizer.h"

#define ALLOCPROF_MAX_FRAMES (EMBER_MAX_STACK_DEPTH + PYSTACK_EXTRA + 1)

/* Fills frames[ALLOCPROF_MAX_FRAMES] and returns how many (at least 1). Strings belong to the
 * symbolizer, as with cpuprof_frames(). */
size_t allocprof_frames(struct symbolizer *sym, struct pyresolve *py, const struct alloc_stack *s,
			struct sym_frame *frames);

/* The memory profile's comment: mode, sampling interval, and whether the live set is complete
 * (what was lost on the way). */
void allocprof_comment(struct alloc_collector *c, char *comment, size_t comment_size);

/* Path of libember_alloc.so: $EMBER_ALLOC_PRELOAD, else next to the running executable.
 * Returns 0 and writes buf, or -ENOENT. */
int allocprof_preload_path(char *buf, size_t size);

#endif
