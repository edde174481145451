#include "cpuprof.h"
#include "pystack.h"
#include "symframe.h"

#include <string.h>

size_t cpuprof_frames(struct symbolizer *sym, struct pyresolve *py, const struct cpu_stack *s,
		      struct sym_frame *frames)
{
	struct sym_frame user[EMBER_MAX_UNWIND_DEPTH];
	pid_t pid = (pid_t)s->key->tgid;
	bool same_process, rooted = false;
	size_t n = 0, nu = 0;

	/* For every frame but the leaf the PC is a return address; PC - 1 lies in the call. */
	for (size_t i = 0; i < s->kstack_len; i++) {
		struct sym_info si;
		uint64_t pc = i ? s->kstack[i] - 1 : s->kstack[i];

		(void)symbolizer_kernel(sym, pc, &si);
		symframe_from_sym(&si, pc, &frames[n++]);
	}
	if (s->ustack_len) {
		same_process = symbolizer_holds(sym, pid, s->key->cookie);
		for (size_t i = 0; i < s->ustack_len; i++) {
			struct sym_info si;
			/* The first user frame is the leaf only when the sample hit user mode. */
			uint64_t pc = (i || s->kstack_len) ? s->ustack[i] - 1 : s->ustack[i];

			if (i >= EMBER_MAX_UNWIND_DEPTH)
				break;
			if (!same_process) {
				symframe_synthetic(&user[nu], "[unknown]");
				user[nu++].address = pc;
				continue;
			}
			(void)symbolizer_user(sym, pid, pc, &si);
			symframe_from_sym(&si, pc, &user[nu++]);
		}
		if (py && s->npy && same_process)
			n += pystack_merge(py, pid, user, nu, s->py, s->npy, s->py_status, frames + n,
					   CPUPROF_MAX_FRAMES - 1 - n, &rooted);
		else
			for (size_t i = 0; i < nu; i++)
				frames[n++] = user[i];
	} else if (s->key->user_stack_id != -1) {
		symframe_synthetic(&frames[n++], "[lost user stack]");
	}
	if (s->truncated && s->ustack_len && !rooted)
		symframe_synthetic(&frames[n++], "[truncated]");
	if (n == 0)
		symframe_synthetic(&frames[n++], "[unknown]");
	return n;
}

void cpuprof_unwmode_first_sample(struct unwmode *u, struct cpu_collector *cc, pid_t pid)
{
	(void)cpu_collector_set_dwarf(cc, pid, unwmode_initial_dwarf(u, pid));
}

void cpuprof_unwmode_observe(struct unwmode *u, struct cpu_collector *cc, const struct cpu_stack *s,
			     const struct sym_frame *frames, size_t n)
{
	if (s->dwarf || !s->ustack_len || n == 0)
		return;
	if (unwmode_note_fp_stack(u, (pid_t)s->key->tgid, unwmode_is_root(frames[n - 1].name), s->count))
		(void)cpu_collector_set_dwarf(cc, (pid_t)s->key->tgid, true);
}
