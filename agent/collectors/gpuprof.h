/* gpuprof: turns one GPU sample (gpu_receiver) into symbolized frames, leaf first:
 *
 *   [cuda kernel] <name>            the GPU operation
 *   <capture stack frames>          graph nodes whose creation stack is known
 *   [cuda graph launch]             every graph-launched record
 *   <launch stack frames>           symbolized with the process's symbolizer (pc - 1: all PCs
 *                                   are return addresses), or one of the markers
 *   [no launch stack] / [unsampled launch]
 *
 * Python frames read at the launch (protocol version 2) are resolved by the process's
 * code-object resolver and merged into the native frames where the eval loop stands, as CPU
 * stacks are (unwind/pystack.h): <module>;train;Model.forward;<torch frames>;[cuda kernel] k.
 *
 * A process whose pid was reused since the sample was sent gets "[unknown]" frames, never
 * another process's names. Shared by `record` and `agent`. */
#ifndef EMBER_GPUPROF_H
#define EMBER_GPUPROF_H

#include <stddef.h>

#include "gpu_receiver.h"
#include "pystack.h"
#include "symframe.h"
#include "symbolizer.h"

/* Room gpuprof_frames() may use. */
#define GPUPROF_MAX_FRAMES (2 * (EMBER_GPU_MAX_FRAMES + PYSTACK_EXTRA) + 3)

/* Fills frames[GPUPROF_MAX_FRAMES] and returns how many (>= 2). py may be NULL (Python frames
 * are then left out). Frame strings belong to the symbolizer, the resolver or the sample;
 * stackagg_add() copies them. */
size_t gpuprof_frames(struct symbolizer *sym, struct pyresolve *py, const struct gpu_sample *s,
		      struct sym_frame *frames);

/* The values for stackagg (2: gpu_time nanoseconds, launches count). */
static inline void gpuprof_values(const struct gpu_sample *s, int64_t values[2])
{
	values[0] = s->gpu_ns;
	values[1] = s->launches;
}

#endif
