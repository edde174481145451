/* symframe: aggregation frames from symbolizer answers, shared by the CPU, allocation and GPU
 * frame builders (cpuprof, allocprof, gpuprof). Header-only. */
#ifndef EMBER_SYMFRAME_H
#define EMBER_SYMFRAME_H

#include <stdint.h>
#include <string.h>

#include "stackagg.h"
#include "symbolizer.h"

/* A frame for the symbolized pc; the strings stay the symbolizer's. */
static inline void symframe_from_sym(const struct sym_info *si, uint64_t pc, struct stackagg_frame *f)
{
	f->name = si->name;
	f->address = pc;
	f->module = si->map_end > si->map_start ? si->module : NULL;
	f->build_id = si->build_id;
	f->map_start = si->map_start;
	f->map_end = si->map_end;
	f->map_pgoff = si->map_pgoff;
}

/* A frame with only a name ("[unknown]", "[truncated]", "[cuda kernel] ..."), no mapping. */
static inline void symframe_synthetic(struct stackagg_frame *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	f->name = name;
}

#endif
