#include "gpuprof.h"

#include <string.h>

static void synthetic(struct stackagg_frame *f, const char *name)
{
	memset(f, 0, sizeof(*f));
	f->name = name;
}

static size_t user_frames(struct symbolizer *sym, pid_t pid, bool same, const uint64_t *pcs,
			  size_t n, struct stackagg_frame *frames)
{
	for (size_t i = 0; i < n; i++) {
		struct stackagg_frame *f = &frames[i];
		uint64_t pc = pcs[i] ? pcs[i] - 1 : 0;
		struct sym_info si;

		if (!same) {
			synthetic(f, "[unknown]");
			f->address = pc;
			continue;
		}
		(void)symbolizer_user(sym, pid, pc, &si);
		f->name = si.name;
		f->address = pc;
		f->module = si.map_end > si.map_start ? si.module : NULL;
		f->build_id = si.build_id;
		f->map_start = si.map_start;
		f->map_end = si.map_end;
		f->map_pgoff = si.map_pgoff;
	}
	return n;
}

size_t gpuprof_frames(struct symbolizer *sym, const struct gpu_sample *s,
		      struct stackagg_frame *frames)
{
	size_t n = 0, np = s->npcs, nc = s->ncapture;
	uint64_t start = 0;
	bool same = false;

	if (np > EMBER_GPU_MAX_FRAMES)
		np = EMBER_GPU_MAX_FRAMES;
	if (nc > EMBER_GPU_MAX_FRAMES)
		nc = EMBER_GPU_MAX_FRAMES;
	synthetic(&frames[n++], s->leaf);
	if (np || nc) {
		(void)symbolizer_track(sym, s->pid);
		same = symbolizer_start_time(sym, s->pid, &start) == 0 &&
		       (s->start_time == 0 || start == s->start_time);
	}
	if (nc && s->capture_pcs)
		n += user_frames(sym, s->pid, same, s->capture_pcs, nc, &frames[n]);
	if (s->flags & EMBER_GPU_ENTRY_GRAPH)
		synthetic(&frames[n++], "[cuda graph launch]");
	if (s->flags & EMBER_GPU_ENTRY_UNSAMPLED)
		synthetic(&frames[n++], "[unsampled launch]");
	else if ((s->flags & EMBER_GPU_ENTRY_NO_STACK) || !np || !s->pcs)
		synthetic(&frames[n++], "[no launch stack]");
	else
		n += user_frames(sym, s->pid, same, s->pcs, np, &frames[n]);
	return n;
}
