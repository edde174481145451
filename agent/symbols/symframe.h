/* symframe: one symbolized frame, the unit every stack is made of from the symbolizer to the
 * aggregator, and the helpers that make one from a symbolizer answer (shared by the CPU,
 * allocation and GPU frame builders: cpuprof, allocprof, gpuprof). A native frame has an
 * address and a mapping; a source frame (Python) has a file and line instead. Header-only. */
#ifndef EMBER_SYMFRAME_H
#define EMBER_SYMFRAME_H

#include <stdint.h>
#include <string.h>

#include "symbolizer.h"

struct sym_frame {
	const char *name;     /* function or "module+0xoff"; never NULL */
	uint64_t address;     /* runtime PC, 0 for synthetic frames */
	const char *module;   /* mapping path, or NULL for no mapping */
	const char *build_id; /* hex, or NULL */
	uint64_t map_start, map_end, map_pgoff;
	const char *filename; /* source file (Python frames), or NULL */
	int64_t line;         /* source line, 0 when unknown */
	int64_t start_line;   /* first line of the function, 0 when unknown */
};

/* A frame for the symbolized pc; the strings stay the symbolizer's. */
static inline void symframe_from_sym(const struct sym_info *si, uint64_t pc, struct sym_frame *f)
{
	f->name = si->name;
	f->address = pc;
	f->module = si->map_end > si->map_start ? si->module : NULL;
	f->build_id = si->build_id;
	f->map_start = si->map_start;
	f->map_end = si->map_end;
	f->map_pgoff = si->map_pgoff;
	f->filename = NULL;
	f->line = 0;
	f->start_line = 0;
}

/* A frame with only a name ("[unknown]", "[truncated]", "[cuda kernel] ..."), no mapping. */
static inline void symframe_synthetic(struct sym_frame *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	f->name = name;
}

/* A frame known by its source (a Python function): no address, no mapping. The strings stay
 * the caller's. */
static inline void symframe_source(struct sym_frame *f, const char *name, const char *filename,
				   int64_t line, int64_t start_line)
{
	memset(f, 0, sizeof(*f));
	f->name = name;
	f->filename = filename;
	f->line = line;
	f->start_line = start_line;
}

#endif
