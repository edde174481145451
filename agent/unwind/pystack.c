#include "pystack.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static bool is_eval_frame(const struct sym_frame *f)
{
	static const char eval[] = "_PyEval_EvalFrameDefault";

	/* also its GCC-split part, "_PyEval_EvalFrameDefault.cold" */
	return !strncmp(f->name, eval, sizeof(eval) - 1) &&
	       (f->name[sizeof(eval) - 1] == '\0' || f->name[sizeof(eval) - 1] == '.');
}

/* Native glue between an eval frame and the C code that entered it (3.10 has it at every
 * Python call): nothing a user wrote or could act on, dropped right above a Python run. */
static bool is_eval_glue(const struct sym_frame *f)
{
	return !strcmp(f->name, "_PyEval_Vector") || !strcmp(f->name, "_PyEval_EvalFrame");
}

struct run {
	size_t start, end; /* resolved frames [start, end) */
};

struct resolve_ctx {
	struct pyresolve *r;
	pid_t pid;
};

static int resolve(void *ctx, const struct ember_py_frame *f, struct pyresolve_frame *ret)
{
	const struct resolve_ctx *rc = ctx;

	return pyresolve_frame(rc->r, rc->pid, f, ret);
}

size_t pystack_merge(struct pyresolve *r, pid_t pid, const struct sym_frame *native,
		     size_t nnative, const struct ember_py_frame *py, size_t npy, __u32 status,
		     struct sym_frame *out, size_t max, bool *ret_rooted)
{
	const struct pyresolve_proc *info;
	struct resolve_ctx rc = { r, pid };

	if (!npy || pyresolve_process(r, pid, &info)) {
		size_t n = nnative < max ? nnative : max;

		*ret_rooted = false;
		memcpy(out, native, n * sizeof(*out));
		return n;
	}
	return pystack_merge_with(resolve, &rc, ((info->off.version_hex >> 16) & 0xff) == 10,
				  native, nnative, py, npy, status, out, max, ret_rooted);
}

size_t pystack_merge_with(pystack_resolve_fn fn, void *ctx, bool one_per_eval,
			  const struct sym_frame *native, size_t nnative,
			  const struct ember_py_frame *py, size_t npy, __u32 status,
			  struct sym_frame *out, size_t max, bool *ret_rooted)
{
	struct sym_frame pf[EMBER_PY_MAX_FRAMES];
	struct run runs[EMBER_PY_MAX_FRAMES + 1];
	size_t nf = 0, nruns = 0, k = 0, n = 0, start = 0;

	*ret_rooted = false;
	if (npy > EMBER_PY_MAX_FRAMES)
		npy = EMBER_PY_MAX_FRAMES;
	for (size_t i = 0; i < npy; i++) {
		struct pyresolve_frame rf;
		int err;

		if (py[i].code & EMBER_PYF_MARKER) {
			if (nf > start)
				runs[nruns++] = (struct run){ start, nf };
			start = nf;
			continue;
		}
		err = fn(ctx, &py[i], &rf);
		if (!err && rf.hidden)
			continue;
		if (!err)
			symframe_source(&pf[nf], rf.name, rf.filename, rf.line, rf.start_line);
		else
			symframe_synthetic(&pf[nf], err == -ESTALE ? "[python: stale frame]"
								  : "[python: unreadable frame]");
		nf++;
		if (one_per_eval || (py[i].code & EMBER_PYF_ENTRY)) {
			runs[nruns++] = (struct run){ start, nf };
			start = nf;
		}
	}
	if (nf > start)
		runs[nruns++] = (struct run){ start, nf };

#define PUT(f)                         \
	do {                           \
		if (n < max)           \
			out[n++] = (f); \
	} while (0)
	for (size_t j = 0; j < nnative; j++) {
		if (j && k && is_eval_frame(&native[j - 1]) && is_eval_glue(&native[j]))
			continue;
		if (k < nruns && is_eval_frame(&native[j])) {
			for (size_t i = runs[k].start; i < runs[k].end; i++)
				PUT(pf[i]);
			if (++k == nruns && status == EMBER_PY_TRUNCATED) {
				struct sym_frame t;

				symframe_synthetic(&t, "[python: truncated]");
				PUT(t);
			}
			continue;
		}
		PUT(native[j]);
	}
	if (k < nruns) {
		struct sym_frame m;

		symframe_synthetic(&m, "[python: native frames missing]");
		PUT(m);
		for (; k < nruns; k++)
			for (size_t i = runs[k].start; i < runs[k].end; i++)
				PUT(pf[i]);
		if (status == EMBER_PY_TRUNCATED) {
			symframe_synthetic(&m, "[truncated]");
			PUT(m);
		}
		*ret_rooted = true;
	}
#undef PUT
	return n;
}

int pystack_describe(const struct pyresolve_proc *info, struct ember_py_proc *ret)
{
	return pylayout_describe(&info->off, info->runtime, ret);
}
