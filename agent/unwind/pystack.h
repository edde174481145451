/* pystack: one stack from a sample's native user frames and its Python frames (PYTHON.md
 * section 4). Each native frame of the eval loop (_PyEval_EvalFrameDefault) is replaced, leaf
 * to root, by the next run of Python frames: on 3.10 one frame per eval frame; on 3.11 a run
 * ends at its frame entered from C (is_entry); on 3.12+ at the eval loop's entry frame. Every
 * other native frame stays where it is, so C calling back into Python (map, sorted(key=), C
 * extensions) reads in order, and C extension frames sit above their Python caller. Python
 * runs left when the native frames end (the unwinder could not get through libpython) go
 * below an explicit "[python: native frames missing]" frame, never in a wrong place.
 * Interpreter helper frames are dropped; a frame that cannot be resolved keeps its place as
 * "[python: stale frame]" or "[python: unreadable frame]". Shared by the CPU and allocation
 * frame builders. pystack_describe() turns the resolver's view of an interpreter into what the
 * BPF walk reads. */
#ifndef EMBER_PYSTACK_H
#define EMBER_PYSTACK_H

#include <linux/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "ember.h"
#include "pyresolve.h"
#include "symframe.h"

/* Frames pystack_merge() may add beyond the native ones (Python frames and markers). */
#define PYSTACK_EXTRA (EMBER_PY_MAX_FRAMES + 2)

/* Merges into out[max] (max >= nnative + PYSTACK_EXTRA): native[nnative] (user frames, leaf
 * first, as the symbolizer named them), then py[npy] with the walk's status. *ret_rooted is
 * set when the stack now ends in Python frames that continue where the native unwind
 * stopped (the caller then adds no "[truncated]" of its own). Returns the frame count. */
size_t pystack_merge(struct pyresolve *r, pid_t pid, const struct sym_frame *native,
		     size_t nnative, const struct ember_py_frame *py, size_t npy, __u32 status,
		     struct sym_frame *out, size_t max, bool *ret_rooted);

/* The same over any resolver (tests): fn resolves one frame as pyresolve_frame() does;
 * one_per_eval for 3.10 (every Python frame has its own eval frame). */
typedef int (*pystack_resolve_fn)(void *ctx, const struct ember_py_frame *f,
				  struct pyresolve_frame *ret);
size_t pystack_merge_with(pystack_resolve_fn fn, void *ctx, bool one_per_eval,
			  const struct sym_frame *native, size_t nnative,
			  const struct ember_py_frame *py, size_t npy, __u32 status,
			  struct sym_frame *out, size_t max, bool *ret_rooted);

/* The BPF description of an interpreter (struct ember_py_proc, bpf/ember.h). 0, or -ENOTSUP
 * when an offset does not fit the walk's fixed reads (never sent: the walk would read wrong
 * fields). */
int pystack_describe(const struct pyresolve_proc *info, struct ember_py_proc *ret);

#endif
