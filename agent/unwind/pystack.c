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

/* off fits a read of size bytes with a field of width bytes, as a __u16. */
static bool fits(uint32_t off, uint32_t width, uint32_t size, __u16 *ret)
{
	if (off == PYOFF_NONE || off > size || size - off < width)
		return false;
	*ret = (__u16)off;
	return true;
}

int pystack_describe(const struct pyresolve_proc *info, struct ember_py_proc *ret)
{
	const struct pyoffsets *o = &info->off;
	unsigned minor = (o->version_hex >> 16) & 0xff;
	struct ember_py_proc p = {
		.interp_head = info->runtime + o->runtime_interpreters_head,
		.version_hex = o->version_hex,
		.instr_kind = o->instr_kind == PYOFF_INSTR_LASTI ? EMBER_PY_INSTR_LASTI : EMBER_PY_INSTR_PTR,
		.entry_kind = minor == 10 ? EMBER_PY_ENTRY_NONE : minor == 11 ? EMBER_PY_ENTRY_FLAG
			    : minor <= 13 ? EMBER_PY_ENTRY_OWNER : EMBER_PY_ENTRY_OWNER_GE,
		.code_tag_mask = (__u8)o->frame_code_tag_mask,
		.cframe_current_frame = EMBER_PY_NO_OFFSET,
		.code_qualname = EMBER_PY_NO_OFFSET,
		.frame_func = EMBER_PY_NO_OFFSET,
		.tstate_datastack_chunk = EMBER_PY_NO_OFFSET,
	};
	/* The thread-state search reads single fields at any offset below this. */
	const uint32_t anywhere = 65535;

	if (!info->runtime || o->frame_code_tag_mask > 0xff)
		return -ENOTSUP;
	if (!fits(o->interp_next, 8, anywhere, &p.interp_next) ||
	    !fits(o->interp_threads_head, 8, anywhere, &p.interp_threads_head) ||
	    !fits(o->tstate_next, 8, anywhere, &p.tstate_next) ||
	    !fits(o->tstate_thread_id, 8, EMBER_PY_TSTATE_READ, &p.tstate_thread_id) ||
	    !fits(o->tstate_frame, 8, EMBER_PY_TSTATE_READ, &p.tstate_frame) ||
	    !fits(o->frame_previous, 8, 80, &p.frame_previous) ||
	    !fits(o->frame_code, 8, 80, &p.frame_code) ||
	    !fits(o->frame_instr, p.instr_kind == EMBER_PY_INSTR_LASTI ? 4 : 8,
		  p.instr_kind == EMBER_PY_INSTR_LASTI ? EMBER_PY_FRAME_READ : 80, &p.frame_instr) ||
	    !fits(o->code_firstlineno, 4, EMBER_PY_CODE_READ, &p.code_firstlineno) ||
	    !fits(o->code_filename, 8, EMBER_PY_CODE_READ, &p.code_filename) ||
	    !fits(o->code_name, 8, EMBER_PY_CODE_READ, &p.code_name) ||
	    !fits(o->code_linetable, 8, EMBER_PY_CODE_READ, &p.code_linetable))
		return -ENOTSUP;
	if (o->code_qualname != PYOFF_NONE &&
	    !fits(o->code_qualname, 8, EMBER_PY_CODE_READ, &p.code_qualname))
		return -ENOTSUP;
	if (o->cframe_current_frame != PYOFF_NONE &&
	    !fits(o->cframe_current_frame, 8, anywhere, &p.cframe_current_frame))
		return -ENOTSUP;
	if (o->tstate_datastack_chunk != PYOFF_NONE &&
	    !fits(o->tstate_datastack_chunk, 8, EMBER_PY_TSTATE_READ, &p.tstate_datastack_chunk))
		return -ENOTSUP;
	if (o->frame_func != PYOFF_NONE && !fits(o->frame_func, 8, 80, &p.frame_func))
		return -ENOTSUP;
	if (p.entry_kind == EMBER_PY_ENTRY_FLAG && !fits(o->frame_is_entry, 1, 80, &p.frame_entry))
		return -ENOTSUP;
	if (p.entry_kind >= EMBER_PY_ENTRY_OWNER && !fits(o->frame_owner, 1, 80, &p.frame_entry))
		return -ENOTSUP;
	*ret = p;
	return 0;
}
