#include "gpuprof.h"
#include "symframe.h"

#include <string.h>

static size_t user_frames(struct symbolizer *sym, pid_t pid, bool same, const uint64_t *pcs,
			  size_t n, struct sym_frame *frames)
{
	for (size_t i = 0; i < n; i++) {
		struct sym_frame *f = &frames[i];
		uint64_t pc = pcs[i] ? pcs[i] - 1 : 0;
		struct sym_info si;

		if (!same) {
			symframe_synthetic(f, "[unknown]");
			f->address = pc;
			continue;
		}
		(void)symbolizer_user(sym, pid, pc, &si);
		symframe_from_sym(&si, pc, f);
	}
	return n;
}

/* One stack (launch or capture): its native frames, and its Python frames merged in where the
 * eval loop stands. */
static size_t stack_frames(struct symbolizer *sym, struct pyresolve *py, pid_t pid, bool same,
			   const uint64_t *pcs, size_t n, const struct ember_py_frame *pf,
			   size_t npf, uint32_t status, struct sym_frame *out)
{
	struct sym_frame native[EMBER_GPU_MAX_FRAMES];
	bool rooted;

	if (npf > EMBER_GPU_MAX_PY_FRAMES)
		npf = EMBER_GPU_MAX_PY_FRAMES;
	if (!py || !same || !pf || !npf)
		return user_frames(sym, pid, same, pcs, n, out);
	n = user_frames(sym, pid, same, pcs, n, native);
	return pystack_merge(py, pid, native, n, pf, npf, status, out, n + PYSTACK_EXTRA, &rooted);
}

size_t gpuprof_frames(struct symbolizer *sym, struct pyresolve *py, const struct gpu_sample *s,
		      struct sym_frame *frames)
{
	size_t n = 0, np = s->npcs, nc = s->ncapture;
	uint64_t start = 0;
	bool same = false;

	if (np > EMBER_GPU_MAX_FRAMES)
		np = EMBER_GPU_MAX_FRAMES;
	if (nc > EMBER_GPU_MAX_FRAMES)
		nc = EMBER_GPU_MAX_FRAMES;
	symframe_synthetic(&frames[n++], s->leaf);
	if (np || nc) {
		if (s->start_time) {
			same = symbolizer_holds(sym, s->pid, s->start_time);
		} else {
			/* Start time unknown: whatever process holds the pid now. */
			(void)symbolizer_track(sym, s->pid);
			same = symbolizer_start_time(sym, s->pid, &start) == 0;
		}
	}
	if (nc && s->capture_pcs)
		n += stack_frames(sym, py, s->pid, same, s->capture_pcs, nc, s->capture_py,
				  s->ncapture_py, s->capture_py_status, &frames[n]);
	if (s->flags & EMBER_GPU_ENTRY_GRAPH)
		symframe_synthetic(&frames[n++], "[cuda graph launch]");
	if (s->flags & EMBER_GPU_ENTRY_UNSAMPLED)
		symframe_synthetic(&frames[n++], "[unsampled launch]");
	else if ((s->flags & EMBER_GPU_ENTRY_NO_STACK) || !np || !s->pcs)
		symframe_synthetic(&frames[n++], "[no launch stack]");
	else
		n += stack_frames(sym, py, s->pid, same, s->pcs, np, s->py, s->npy, s->py_status,
				  &frames[n]);
	return n;
}
